public import GGUF
import Kernels

/// The Llama decoder (Llama 2/3, SmolLM2, Mistral-style GQA) on the fast kernels.
///
/// Per layer: x += Wo·attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x));
/// x += Wdown·(silu(Wgate·norm(x)) * Wup·norm(x)). GGUF stores Q and K permuted so that RoPE
/// rotates adjacent pairs (ggml rope type NORM). The readable scalar version is `ReferenceLlama`.
public final class LlamaModel: LanguageModel, @unchecked Sendable {
    public static let architectureName = "llama"

    struct Layer {
        let attentionNorm: FloatBuffer   // [embeddingWidth]
        let query: WeightMatrix           // [embeddingWidth] -> [queryWidth]
        let key: WeightMatrix             // [embeddingWidth] -> [kvWidth]
        let value: WeightMatrix           // [embeddingWidth] -> [kvWidth]
        let output: WeightMatrix          // [queryWidth] -> [embeddingWidth]
        let feedForwardNorm: FloatBuffer  // [embeddingWidth]
        let gate: WeightMatrix            // [embeddingWidth] -> [feedForwardWidth]
        let up: WeightMatrix              // [embeddingWidth] -> [feedForwardWidth]
        let down: WeightMatrix            // [feedForwardWidth] -> [embeddingWidth]
    }

    public let configuration: ModelConfiguration
    public let file: GGUFFile
    let tokenEmbedding: WeightMatrix      // [embeddingWidth] x vocabularySize rows
    let outputNorm: FloatBuffer
    let outputHead: WeightMatrix          // tied to tokenEmbedding when the file has no output.weight
    let layers: [Layer]
    let pool: WorkerPool
    private var workspace: Workspace

    public init(file: GGUFFile, threads: Int) throws(EngineError) {
        let c = try ModelConfiguration(file: file, architecture: Self.architectureName)
        let w = WeightLoader(file: file, architecture: Self.architectureName)
        configuration = c
        self.file = file
        tokenEmbedding = try w.matrix("token_embd.weight", columns: c.embeddingWidth, rows: c.vocabularySize, packed: false)
        outputNorm = try w.vector("output_norm.weight", count: c.embeddingWidth)
        outputHead = w.has("output.weight")
            ? try w.matrix("output.weight", columns: c.embeddingWidth, rows: c.vocabularySize)
            : tokenEmbedding.packedForBatching()
        var layers: [Layer] = []
        for i in 0 ..< c.layerCount {
            let p = "blk.\(i)."
            layers.append(Layer(
                attentionNorm: try w.vector(p + "attn_norm.weight", count: c.embeddingWidth),
                query: try w.matrix(p + "attn_q.weight", columns: c.embeddingWidth, rows: c.queryWidth),
                key: try w.matrix(p + "attn_k.weight", columns: c.embeddingWidth, rows: c.kvWidth),
                value: try w.matrix(p + "attn_v.weight", columns: c.embeddingWidth, rows: c.kvWidth),
                output: try w.matrix(p + "attn_output.weight", columns: c.queryWidth, rows: c.embeddingWidth),
                feedForwardNorm: try w.vector(p + "ffn_norm.weight", count: c.embeddingWidth),
                gate: try w.matrix(p + "ffn_gate.weight", columns: c.embeddingWidth, rows: c.feedForwardWidth),
                up: try w.matrix(p + "ffn_up.weight", columns: c.embeddingWidth, rows: c.feedForwardWidth),
                down: try w.matrix(p + "ffn_down.weight", columns: c.feedForwardWidth, rows: c.embeddingWidth)))
        }
        self.layers = layers
        pool = WorkerPool(threads: threads)
        workspace = Workspace(configuration: c, tokens: 1, logitRows: 1)
    }

    public var threads: Int { pool.threads }

    /// Activation buffers for up to `tokens` tokens per forward pass; grown on demand.
    struct Workspace {
        let tokens: Int
        let logitRows: Int
        let x, normed, query, key, value, attention, projected, gate, up, hidden, logits: FloatBuffer
        let scratch = ScratchBuffer()

        init(configuration c: ModelConfiguration, tokens: Int, logitRows: Int) {
            self.tokens = tokens
            self.logitRows = logitRows
            x = FloatBuffer(count: tokens * c.embeddingWidth)          // [tokens, embeddingWidth] residual stream
            normed = FloatBuffer(count: tokens * c.embeddingWidth)     // [tokens, embeddingWidth]
            query = FloatBuffer(count: tokens * c.queryWidth)          // [tokens, queryWidth]
            key = FloatBuffer(count: tokens * c.kvWidth)               // [tokens, kvWidth]
            value = FloatBuffer(count: tokens * c.kvWidth)             // [tokens, kvWidth]
            attention = FloatBuffer(count: tokens * c.queryWidth)      // [tokens, queryWidth]
            projected = FloatBuffer(count: tokens * c.embeddingWidth)  // [tokens, embeddingWidth]
            gate = FloatBuffer(count: tokens * c.feedForwardWidth)     // [tokens, feedForwardWidth]
            up = FloatBuffer(count: tokens * c.feedForwardWidth)
            hidden = FloatBuffer(count: tokens * c.feedForwardWidth)
            logits = FloatBuffer(count: logitRows * c.vocabularySize)  // [logitRows, vocabularySize]
        }
    }

    public func forward(_ batch: [BatchEntry], cache: PagedKVCache) throws(EngineError) -> LogitsBatch {
        let c = configuration
        let plan = try BatchPlan(batch, configuration: c, cache: cache)
        let n = plan.tokens.count
        if workspace.tokens < n || workspace.logitRows < plan.logitRows.count {
            workspace = Workspace(configuration: c, tokens: max(n, workspace.tokens),
                                  logitRows: max(plan.logitRows.count, workspace.logitRows))
        }
        let ws = workspace
        let d = c.embeddingWidth

        for (t, token) in plan.tokens.enumerated() {
            tokenEmbedding.dequantizeRow(token, into: ws.x, at: t * d)
        }
        for (l, layer) in layers.enumerated() {
            Operations.rmsNorm(ws.x, stride: d, weight: layer.attentionNorm, into: ws.normed, outStride: d,
                               rows: n, width: d, epsilon: c.normEpsilon, pool: pool)
            project(ws.normed, stride: d, rows: n, [
                MatmulTarget(layer.query, output: ws.query),
                MatmulTarget(layer.key, output: ws.key),
                MatmulTarget(layer.value, output: ws.value),
            ], scratch: ws.scratch)
            for buffer in [(ws.query, c.headCount, c.queryWidth), (ws.key, c.kvHeadCount, c.kvWidth)] {
                Operations.rope(buffer.0, stride: buffer.2, positions: plan.positions, heads: buffer.1,
                                headDimension: c.headDimension, rotaryDimensions: c.rotaryDimensions,
                                base: c.ropeBase, layout: .adjacentPairs, pool: pool)
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
            Operations.add(ws.projected, into: ws.x, count: n * d)

            Operations.rmsNorm(ws.x, stride: d, weight: layer.feedForwardNorm, into: ws.normed, outStride: d,
                               rows: n, width: d, epsilon: c.normEpsilon, pool: pool)
            project(ws.normed, stride: d, rows: n, [
                MatmulTarget(layer.gate, output: ws.gate),
                MatmulTarget(layer.up, output: ws.up),
            ], scratch: ws.scratch)
            Operations.siluMul(gate: ws.gate, up: ws.up, into: ws.hidden, count: n * c.feedForwardWidth, pool: pool)
            project(ws.hidden, stride: c.feedForwardWidth, rows: n, [MatmulTarget(layer.down, output: ws.projected)],
                    scratch: ws.scratch)
            Operations.add(ws.projected, into: ws.x, count: n * d)
        }
        return SharedLayers.outputLogits(plan: plan, workspace: ws, configuration: configuration,
                                         outputNorm: outputNorm, outputHead: outputHead, pool: pool)
    }

    private func project(_ input: FloatBuffer, stride: Int, rows: Int, _ targets: [MatmulTarget], scratch: ScratchBuffer) {
        SharedLayers.project(input, stride: stride, rows: rows, targets, pool: pool, scratch: scratch)
    }
}
