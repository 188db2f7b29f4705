public import GGUF
import Kernels

/// A plain, scalar GLM-4-0414 forward pass in float32 (GGUF architecture `glm4`): the readable
/// specification `GLM4Model` is tested against, written from transformers' `Glm4DecoderLayer`.
///
/// Per layer: n = RMSNorm(x); q,k,v = W·n + b; partial RoPE on adjacent pairs of the first
/// `rotaryDimensions` of each head; causal GQA attention; x += post_attention_norm(Wo·attended);
/// n = ffn_norm(x); [gate; up] = ffn_up·n (gate = first half); x += post_ffw_norm(Wdown·(silu(gate)·up)).
/// Weights are dequantized to float32 once; one sequence, one token per call.
public final class ReferenceGLM4 {
    struct Layer {
        var attentionNorm: [Float]
        var query, key, value: [Float]              // [width][embeddingWidth]
        var queryBias, keyBias, valueBias: [Float]  // zeros when the file has none
        var output: [Float]                         // [embeddingWidth][queryWidth]
        var postAttentionNorm: [Float]
        var feedForwardNorm: [Float]
        var gateUp: [Float]                         // [2 * feedForwardWidth][embeddingWidth], gate rows first
        var down: [Float]                           // [embeddingWidth][feedForwardWidth]
        var postFeedForwardNorm: [Float]
    }

    public let configuration: ModelConfiguration
    let tokenEmbedding: [Float]
    let outputNorm: [Float]
    let outputHead: [Float]
    let layers: [Layer]
    var keyCache: [[Float]]
    var valueCache: [[Float]]
    public private(set) var position = 0

    public init(file: GGUFFile) throws(EngineError) {
        let a = GLM4Model.architectureName
        let c = try ModelConfiguration(file: file, architecture: a)
        guard file.value("\(a).rope.dimension_count") != nil else { throw .gguf(.missingKey("\(a).rope.dimension_count")) }
        guard file.value("\(a).rope.dimension_sections") == nil else {
            throw .badHyperparameter(key: "\(a).rope.dimension_sections", value: "present", reason: "the reference runs text GLM-4 only (no M-RoPE)")
        }
        let w = WeightLoader(file: file, architecture: a)
        configuration = c
        func matrix(_ name: String, _ columns: Int, _ rows: Int) throws(EngineError) -> [Float] {
            try w.matrix(name, columns: columns, rows: rows).dequantized()
        }
        func vector(_ name: String, _ count: Int) throws(EngineError) -> [Float] {
            try w.vector(name, count: count).slice(0, count)
        }
        func bias(_ name: String, _ count: Int) throws(EngineError) -> [Float] {
            w.has(name) ? try vector(name, count) : [Float](repeating: 0, count: count)
        }
        let d = c.embeddingWidth, q = c.queryWidth, kv = c.kvWidth, ff = c.feedForwardWidth
        tokenEmbedding = try matrix("token_embd.weight", d, c.vocabularySize)
        outputNorm = try vector("output_norm.weight", d)
        outputHead = w.has("output.weight") ? try matrix("output.weight", d, c.vocabularySize) : tokenEmbedding
        var layers: [Layer] = []
        for i in 0 ..< c.layerCount {
            let p = "blk.\(i)."
            var query, key, value, queryBias, keyBias, valueBias: [Float]
            if w.has(p + "attn_qkv.weight") {
                let qkv = try matrix(p + "attn_qkv.weight", d, q + 2 * kv)
                query = Array(qkv[0 ..< q * d])
                key = Array(qkv[q * d ..< (q + kv) * d])
                value = Array(qkv[(q + kv) * d ..< (q + 2 * kv) * d])
                let b = try bias(p + "attn_qkv.bias", q + 2 * kv)
                (queryBias, keyBias, valueBias) = (Array(b[0 ..< q]), Array(b[q ..< q + kv]), Array(b[(q + kv)...]))
            } else {
                query = try matrix(p + "attn_q.weight", d, q)
                key = try matrix(p + "attn_k.weight", d, kv)
                value = try matrix(p + "attn_v.weight", d, kv)
                queryBias = try bias(p + "attn_q.bias", q)
                keyBias = try bias(p + "attn_k.bias", kv)
                valueBias = try bias(p + "attn_v.bias", kv)
            }
            layers.append(Layer(
                attentionNorm: try vector(p + "attn_norm.weight", d),
                query: query, key: key, value: value, queryBias: queryBias, keyBias: keyBias, valueBias: valueBias,
                output: try matrix(p + "attn_output.weight", q, d),
                postAttentionNorm: try vector(p + "post_attention_norm.weight", d),
                feedForwardNorm: try vector(p + "ffn_norm.weight", d),
                gateUp: try matrix(p + "ffn_up.weight", d, 2 * ff),
                down: try matrix(p + "ffn_down.weight", ff, d),
                postFeedForwardNorm: try vector(p + "post_ffw_norm.weight", d)))
        }
        self.layers = layers
        keyCache = Array(repeating: [], count: c.layerCount)
        valueCache = Array(repeating: [], count: c.layerCount)
    }

    /// Processes one token at the next position and returns the logits for the position after it.
    public func forward(token: Int) throws(EngineError) -> [Float] {
        let c = configuration
        guard token >= 0 && token < c.vocabularySize else { throw .invalidToken(token, vocabularySize: c.vocabularySize) }
        guard position < c.contextLength else { throw .contextOverflow(needed: position + 1, contextLength: c.contextLength) }
        let d = c.embeddingWidth, ff = c.feedForwardWidth
        var x = Array(tokenEmbedding[token * d ..< (token + 1) * d])

        for (l, layer) in layers.enumerated() {
            let normed = rmsNorm(x, layer.attentionNorm)
            var q = add(matVec(layer.query, normed, rows: c.queryWidth), layer.queryBias)
            var k = add(matVec(layer.key, normed, rows: c.kvWidth), layer.keyBias)
            let v = add(matVec(layer.value, normed, rows: c.kvWidth), layer.valueBias)
            rope(&q, heads: c.headCount)
            rope(&k, heads: c.kvHeadCount)
            keyCache[l].append(contentsOf: k)
            valueCache[l].append(contentsOf: v)

            var attended = [Float](repeating: 0, count: c.queryWidth)
            let group = c.headCount / c.kvHeadCount
            let scale = 1 / Float(c.headDimension).squareRoot()
            for h in 0 ..< c.headCount {
                let kvHead = h / group
                let qOffset = h * c.headDimension
                var scores = [Float](repeating: 0, count: position + 1)
                for p in 0 ... position {
                    let kOffset = p * c.kvWidth + kvHead * c.headDimension
                    var dot: Float = 0
                    for i in 0 ..< c.headDimension { dot += q[qOffset + i] * keyCache[l][kOffset + i] }
                    scores[p] = dot * scale
                }
                ReferenceMath.softmax(&scores)
                for p in 0 ... position {
                    let vOffset = p * c.kvWidth + kvHead * c.headDimension
                    for i in 0 ..< c.headDimension { attended[qOffset + i] += scores[p] * valueCache[l][vOffset + i] }
                }
            }
            let attentionOut = rmsNorm(matVec(layer.output, attended, rows: d), layer.postAttentionNorm)
            for i in 0 ..< d { x[i] += attentionOut[i] }

            let normed2 = rmsNorm(x, layer.feedForwardNorm)
            let gateUp = matVec(layer.gateUp, normed2, rows: 2 * ff)
            var hidden = [Float](repeating: 0, count: ff)
            for i in 0 ..< ff { hidden[i] = gateUp[i] / (1 + (-gateUp[i]).exp) * gateUp[ff + i] }
            let mlpOut = rmsNorm(matVec(layer.down, hidden, rows: d), layer.postFeedForwardNorm)
            for i in 0 ..< d { x[i] += mlpOut[i] }
        }
        position += 1
        return matVec(outputHead, rmsNorm(x, outputNorm), rows: c.vocabularySize)
    }

    func add(_ x: [Float], _ b: [Float]) -> [Float] { zip(x, b).map { $0 + $1 } }

    func matVec(_ w: [Float], _ x: [Float], rows: Int) -> [Float] { ReferenceMath.matVec(w, x, rows: rows) }

    func rmsNorm(_ x: [Float], _ weight: [Float]) -> [Float] {
        ReferenceMath.rmsNorm(x, weight, epsilon: configuration.normEpsilon)
    }

    func rope(_ x: inout [Float], heads: Int) {
        let c = configuration
        ReferenceMath.rope(&x, heads: heads, headDimension: c.headDimension, rotaryDimensions: c.rotaryDimensions,
                           base: c.ropeBase, position: position)
    }
}
