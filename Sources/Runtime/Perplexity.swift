public import Engine
public import Kernels

/// Perplexity of a token sequence under a model, as ../reference/perplexity.py defines it: one
/// sequence (cut to the context length by the caller, who must say so), every token after the first
/// scored: ppl = exp(-mean(log p(t_i | t_<i))).
public struct PerplexityResult: Sendable {
    public var tokens: Int
    public var scored: Int
    public var meanNegativeLogLikelihood: Double
    public var perplexity: Double { (meanNegativeLogLikelihood).exponential }
}

public enum Perplexity {
    public static func evaluate(model: any LanguageModel, tokens: [Int], chunk: Int = 128,
                                kvType: KVCacheType = .engineDefault) throws(EngineError) -> PerplexityResult {
        guard tokens.count >= 2 else { throw .emptyInput }
        guard tokens.count <= model.configuration.contextLength else {
            throw .contextOverflow(needed: tokens.count, contextLength: model.configuration.contextLength)
        }
        let cache = PagedKVCache(configuration: model.configuration, tokens: tokens.count, blockSize: 16, elementType: kvType)
        var allocator = BlockAllocator(blockCount: cache.blockCount)
        var sequence = SequenceState()
        var nll = 0.0
        var start = 0
        while start < tokens.count - 1 {
            // Positions start..<end predict tokens start+1...end.
            let end = min(start + chunk, tokens.count - 1)
            let piece = Array(tokens[start ..< end])
            try sequence.reserve(piece.count, blockSize: cache.blockSize, allocator: &allocator)
            let out = try model.forward(
                [BatchEntry(tokens: piece, startPosition: sequence.length, blockTable: sequence.blockTable, logits: .all)],
                cache: cache)
            sequence.length += piece.count
            for i in 0 ..< piece.count {
                nll -= Double(Sampler.logSoftmax(out.row(i), at: tokens[start + i + 1]))
            }
            start = end
        }
        let scored = tokens.count - 1
        return PerplexityResult(tokens: tokens.count, scored: scored, meanNegativeLogLikelihood: nll / Double(scored))
    }
}
