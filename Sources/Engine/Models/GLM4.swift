public import GGUF
import Kernels

/// The GLM-4-0414 decoder (Hugging Face `Glm4ForCausalLM`, GGUF architecture `glm4`) on the fast kernels.
///
/// Per layer (transformers `Glm4DecoderLayer`, llama.cpp `llm_build_glm4`):
///
///     h = Wo·attention(rope(Wq·n + bq), rope(Wk·n + bk), Wv·n + bv)   with n = attn_norm(x)
///     x = x + post_attention_norm(h)
///     h = Wdown·(silu(gate) * up)   with [gate; up] = ffn_up·ffn_norm(x)   (fused, gate first)
///     x = x + post_ffw_norm(h)
///
/// Rotary embedding is partial (`rope.dimension_count`, head_dim x partial_rotary_factor) on
/// adjacent pairs (ggml rope type NORM; HF's interleaved `rotate_half`); the remaining dimensions
/// of each head pass through. Q/K/V may be three tensors (what convert_hf_to_gguf.py writes) or one
/// fused `attn_qkv` with rows [Q; K; V] (llama.cpp's loader accepts both); biases are optional
/// (GLM-4-9B has them). Attention is GQA with scale 1/sqrt(head_dim); the output projection has
/// no bias. GGUFs converted from GLM-4.1V carry `rope.dimension_sections`: M-RoPE over three position axes
/// (the batch entries' `ropePositions`), on NeoX pairs; image tokens enter as given embeddings. Files with
/// NextN/MTP layers (`nextn_predict_layers`) are refused. With `architecture: "chatglm"` the same class
/// runs glm-4-9b-chat(-hf) GGUFs: no post norms, x += h after each sublayer.
public final class GLM4Model: LanguageModel, @unchecked Sendable {
    public static let architectureName = "glm4"
    /// glm-4-9b-chat(-hf) (HF `GlmForCausalLM` / remote-code ChatGLM; llama.cpp `llm_build_chatglm`): the same
    /// layer without the two post norms (plain pre-norm residuals).
    public static let chatGLMArchitectureName = "chatglm"

    struct Layer {
        let attentionNorm: FloatBuffer       // attn_norm [embeddingWidth]
        let query, key, value: WeightMatrix  // [embeddingWidth] -> [queryWidth], [kvWidth], [kvWidth]
        let queryBias, keyBias, valueBias: FloatBuffer?
        let output: WeightMatrix             // [queryWidth] -> [embeddingWidth]
        let postAttentionNorm: FloatBuffer?  // post_attention_norm (HF post_self_attn_layernorm); nil for chatglm
        let feedForwardNorm: FloatBuffer     // ffn_norm (HF post_attention_layernorm: the pre-MLP norm)
        let gate, up: WeightMatrix           // the two halves of ffn_up [embeddingWidth] -> [feedForwardWidth]
        let down: WeightMatrix               // [feedForwardWidth] -> [embeddingWidth]
        let postFeedForwardNorm: FloatBuffer? // post_ffw_norm (HF post_mlp_layernorm); nil for chatglm
    }

    public let configuration: ModelConfiguration
    public let file: GGUFFile
    /// GLM-4.1V's M-RoPE sections (`rope.dimension_sections`, in rotary pairs: temporal, height, width, unused);
    /// nil for plain GLM-4. With them, Q/K's rotary rows are in NeoX order (llama.cpp's converter permutes them).
    public let ropeSections: [Int]?
    let tokenEmbedding: WeightMatrix
    let outputNorm: FloatBuffer
    let outputHead: WeightMatrix
    let layers: [Layer]
    let pool: WorkerPool
    private var workspace: LlamaModel.Workspace

    /// `architecture` is `glm4` (GLM-4-0414, four norms per layer) or `chatglm` (two norms per layer).
    public init(file: GGUFFile, threads: Int, architecture a: String = GLM4Model.architectureName) throws(EngineError) {
        precondition(a == Self.architectureName || a == Self.chatGLMArchitectureName)
        let postNorms = a == Self.architectureName
        let c = try ModelConfiguration(file: file, architecture: a)
        // llama.cpp falls back to n_rot = head_dim, which is wrong for every GLM-4; the converter always writes it.
        guard file.value("\(a).rope.dimension_count") != nil else { throw .gguf(.missingKey("\(a).rope.dimension_count")) }
        ropeSections = try Self.ropeSections(file: file, architecture: a, rotaryDimensions: c.rotaryDimensions)
        // GLM-OCR-style files append NextN/MTP layers that llama.cpp loads but never runs; refuse rather than run them.
        if let extra = try? file.int("\(a).nextn_predict_layers"), extra > 0 {
            throw .badHyperparameter(key: "\(a).nextn_predict_layers", value: "\(extra)",
                                     reason: "NextN/MTP layers are not supported yet")
        }
        let w = WeightLoader(file: file, architecture: a)
        configuration = c
        self.file = file
        tokenEmbedding = try w.matrix("token_embd.weight", columns: c.embeddingWidth, rows: c.vocabularySize, packed: false)
        outputNorm = try w.vector("output_norm.weight", count: c.embeddingWidth)
        outputHead = w.has("output.weight")
            ? try w.matrix("output.weight", columns: c.embeddingWidth, rows: c.vocabularySize)
            : tokenEmbedding.packedForBatching()
        func optionalVector(_ name: String, count: Int) throws(EngineError) -> FloatBuffer? {
            w.has(name) ? try w.vector(name, count: count) : nil
        }
        var layers: [Layer] = []
        for i in 0 ..< c.layerCount {
            let p = "blk.\(i)."
            let d = c.embeddingWidth, q = c.queryWidth, kv = c.kvWidth, ff = c.feedForwardWidth
            let query, key, value: WeightMatrix
            let queryBias, keyBias, valueBias: FloatBuffer?
            if w.has(p + "attn_qkv.weight") {
                let qkv = try w.matrix(p + "attn_qkv.weight", columns: d, rows: q + 2 * kv)
                query = qkv.rowSlice(0, count: q)
                key = qkv.rowSlice(q, count: kv)
                value = qkv.rowSlice(q + kv, count: kv)
                if let bias = try optionalVector(p + "attn_qkv.bias", count: q + 2 * kv) {
                    queryBias = FloatBuffer(bias.slice(0, q))
                    keyBias = FloatBuffer(bias.slice(q, kv))
                    valueBias = FloatBuffer(bias.slice(q + kv, kv))
                } else {
                    (queryBias, keyBias, valueBias) = (nil, nil, nil)
                }
            } else {
                query = try w.matrix(p + "attn_q.weight", columns: d, rows: q)
                key = try w.matrix(p + "attn_k.weight", columns: d, rows: kv)
                value = try w.matrix(p + "attn_v.weight", columns: d, rows: kv)
                queryBias = try optionalVector(p + "attn_q.bias", count: q)
                keyBias = try optionalVector(p + "attn_k.bias", count: kv)
                valueBias = try optionalVector(p + "attn_v.bias", count: kv)
            }
            let gateUp = try w.matrix(p + "ffn_up.weight", columns: d, rows: 2 * ff)
            layers.append(Layer(
                attentionNorm: try w.vector(p + "attn_norm.weight", count: d),
                query: query, key: key, value: value,
                queryBias: queryBias, keyBias: keyBias, valueBias: valueBias,
                output: try w.matrix(p + "attn_output.weight", columns: q, rows: d),
                postAttentionNorm: postNorms ? try w.vector(p + "post_attention_norm.weight", count: d) : nil,
                feedForwardNorm: try w.vector(p + "ffn_norm.weight", count: d),
                gate: gateUp.rowSlice(0, count: ff),
                up: gateUp.rowSlice(ff, count: ff),
                down: try w.matrix(p + "ffn_down.weight", columns: ff, rows: d),
                postFeedForwardNorm: postNorms ? try w.vector(p + "post_ffw_norm.weight", count: d) : nil))
        }
        self.layers = layers
        pool = WorkerPool(threads: threads)
        workspace = LlamaModel.Workspace(configuration: c, tokens: 1, logitRows: 1)
    }

    public var threads: Int { pool.threads }

    static func ropeSections(file: GGUFFile, architecture a: String, rotaryDimensions: Int) throws(EngineError) -> [Int]? {
        let key = "\(a).rope.dimension_sections"
        guard file.value(key) != nil else { return nil }
        let sections: [Int]
        do { sections = try file.intArray(key) } catch { throw .gguf(error) }
        let padded = Array((sections + [0, 0, 0, 0]).prefix(4))
        guard sections.count <= 4, padded.allSatisfy({ $0 >= 0 }), padded[0] > 0, padded[1] > 0,
              padded.reduce(0, +) <= rotaryDimensions / 2 else {
            throw .badHyperparameter(key: key, value: "\(sections)",
                                     reason: "must be up to four non-negative pair counts (the first two positive) within the \(rotaryDimensions / 2) rotary pairs")
        }
        return padded
    }

    public func forward(_ batch: [BatchEntry], cache: PagedKVCache) throws(EngineError) -> LogitsBatch {
        let c = configuration
        let plan = try BatchPlan(batch, configuration: c, cache: cache)
        let n = plan.tokens.count
        if workspace.tokens < n || workspace.logitRows < plan.logitRows.count {
            workspace = LlamaModel.Workspace(configuration: c, tokens: max(n, workspace.tokens),
                                             logitRows: max(plan.logitRows.count, workspace.logitRows))
        }
        let ws = workspace
        let d = c.embeddingWidth

        for (t, token) in plan.tokens.enumerated() {
            tokenEmbedding.dequantizeRow(token, into: ws.x, at: t * d)
        }
        for (row, span) in plan.embeddings {
            ws.x.write(span.values, at: row * d)
        }
        for (l, layer) in layers.enumerated() {
            Operations.rmsNorm(ws.x, stride: d, weight: layer.attentionNorm, into: ws.normed, outStride: d,
                               rows: n, width: d, epsilon: c.normEpsilon, pool: pool)
            project(ws.normed, stride: d, rows: n, [
                MatmulTarget(layer.query, output: ws.query),
                MatmulTarget(layer.key, output: ws.key),
                MatmulTarget(layer.value, output: ws.value),
            ], scratch: ws.scratch)
            for (bias, buffer, width) in [(layer.queryBias, ws.query, c.queryWidth), (layer.keyBias, ws.key, c.kvWidth),
                                          (layer.valueBias, ws.value, c.kvWidth)] {
                if let bias { Operations.addBias(bias, to: buffer, stride: width, rows: n, width: width) }
            }
            for buffer in [(ws.query, c.headCount, c.queryWidth), (ws.key, c.kvHeadCount, c.kvWidth)] {
                if let sections = ropeSections {
                    Operations.ropeMulti(buffer.0, stride: buffer.2, rows: n, positions: plan.ropePositions, heads: buffer.1,
                                         headDimension: c.headDimension, rotaryDimensions: c.rotaryDimensions,
                                         sections: sections, base: c.ropeBase)
                } else {
                    Operations.rope(buffer.0, stride: buffer.2, positions: plan.positions, heads: buffer.1,
                                    headDimension: c.headDimension, rotaryDimensions: c.rotaryDimensions,
                                    base: c.ropeBase, layout: .adjacentPairs, pool: pool)
                }
            }
            plan.store(keys: ws.key, values: ws.value, layer: l, cache: cache)
            Operations.attention(
                query: ws.query, queryStride: c.queryWidth, into: ws.attention, outStride: c.queryWidth,
                positions: plan.positions, blockTables: plan.blockTables, tableOffsets: plan.tableOffsets,
                keys: cache.keys[l], values: cache.values[l], blockSize: cache.blockSize, heads: c.headCount,
                kvHeads: c.kvHeadCount, headDimension: c.headDimension,
                scale: 1 / Float(c.headDimension).squareRoot(), pool: pool)
            project(ws.attention, stride: c.queryWidth, rows: n, [MatmulTarget(layer.output, output: ws.projected)],
                    scratch: ws.scratch)
            addResidual(ws.projected, norm: layer.postAttentionNorm, rows: n, workspace: ws)

            Operations.rmsNorm(ws.x, stride: d, weight: layer.feedForwardNorm, into: ws.normed, outStride: d,
                               rows: n, width: d, epsilon: c.normEpsilon, pool: pool)
            project(ws.normed, stride: d, rows: n, [
                MatmulTarget(layer.gate, output: ws.gate),
                MatmulTarget(layer.up, output: ws.up),
            ], scratch: ws.scratch)
            Operations.siluMul(gate: ws.gate, up: ws.up, into: ws.hidden, count: n * c.feedForwardWidth, pool: pool)
            project(ws.hidden, stride: c.feedForwardWidth, rows: n, [MatmulTarget(layer.down, output: ws.projected)],
                    scratch: ws.scratch)
            addResidual(ws.projected, norm: layer.postFeedForwardNorm, rows: n, workspace: ws)
        }
        return SharedLayers.outputLogits(plan: plan, workspace: ws, configuration: configuration,
                                         outputNorm: outputNorm, outputHead: outputHead, pool: pool)
    }

    /// x += norm(h) (GLM-4-0414's post norms), or x += h when the layer has none (chatglm).
    private func addResidual(_ h: FloatBuffer, norm: FloatBuffer?, rows n: Int, workspace ws: LlamaModel.Workspace) {
        let d = configuration.embeddingWidth
        guard let norm else {
            Operations.add(h, into: ws.x, count: n * d)
            return
        }
        Operations.rmsNorm(h, stride: d, weight: norm, into: ws.normed, outStride: d, rows: n, width: d,
                           epsilon: configuration.normEpsilon)
        Operations.add(ws.normed, into: ws.x, count: n * d)
    }

    private func project(_ input: FloatBuffer, stride: Int, rows: Int, _ targets: [MatmulTarget], scratch: ScratchBuffer) {
        SharedLayers.project(input, stride: stride, rows: rows, targets, pool: pool, scratch: scratch)
    }
}
