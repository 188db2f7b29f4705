public import Engine
public import Kernels
public import InferenceCore
import Serving
public import Tokenizer

/// What one generation did, with the timings the CLI and benchmarks report.
public struct GenerationSummary: Sendable {
    public var promptTokens = 0
    public var generatedTokens = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var finishReason: FinishReason = .length
    public var generatedIDs: [Int] = []

    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    /// Decode rate over the tokens after the first (the first comes out of prefill).
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 && generatedTokens > 1 ? Double(generatedTokens - 1) / decodeSeconds : 0
    }
}

/// One sequence on one model: a growing token history whose keys and values stay in the cache, so a
/// chat continues without recomputing earlier turns.
///
/// Not thread-safe; one owner drives it (the CLI). The server's scheduler drives the model directly.
public final class GenerationSession {
    public let model: any LanguageModel
    public let tokenizer: Tokenizer
    /// Largest number of tokens the sequence may hold (prompt plus generated).
    public let capacity: Int
    /// Prompt tokens are run through the model this many at a time.
    public var prefillChunk = 256

    private let cache: PagedKVCache
    private var allocator: BlockAllocator
    private var sequence = SequenceState()
    /// Every token of the sequence; the first `sequence.length` are in the cache.
    public private(set) var tokens: [Int] = []

    public init(model: any LanguageModel, tokenizer: Tokenizer, capacity: Int, kvType: KVCacheType = .engineDefault) {
        self.model = model
        self.tokenizer = tokenizer
        self.capacity = min(capacity, model.configuration.contextLength)
        cache = PagedKVCache(configuration: model.configuration, tokens: self.capacity, blockSize: 16, elementType: kvType)
        allocator = BlockAllocator(blockCount: cache.blockCount)
    }

    /// Continues from a whole conversation's tokens: the longest prefix this session already holds is
    /// kept in the cache (a chat re-rendered each turn recomputes only what changed), the rest is run.
    public func generate(
        conversation fullTokens: [Int], sampling: SamplingParameters, stop: StopCondition,
        onText: (String) -> Void
    ) throws(EngineError) -> GenerationSummary {
        var common = 0
        while common < min(tokens.count, sequence.length, fullTokens.count - 1) && tokens[common] == fullTokens[common] {
            common += 1
        }
        // Positions past `common` are simply overwritten; their blocks stay with the sequence.
        sequence.length = common
        tokens.removeSubrange(common...)
        return try generate(appending: Array(fullTokens[common...]), sampling: sampling, stop: stop, onText: onText)
    }

    /// Appends `newTokens` to the sequence and generates a continuation, handing text to `onText` as it
    /// becomes final (whole UTF-8 characters, never part of a stop string).
    public func generate(
        appending newTokens: [Int], sampling: SamplingParameters, stop: StopCondition,
        onText: (String) -> Void
    ) throws(EngineError) -> GenerationSummary {
        var summary = GenerationSummary()
        let pending = Array(tokens[sequence.length...]) + newTokens
        guard !pending.isEmpty else { throw .emptyInput }
        guard sequence.length + pending.count < capacity else {
            throw .contextOverflow(needed: sequence.length + pending.count + 1, contextLength: capacity)
        }
        summary.promptTokens = pending.count
        tokens.append(contentsOf: newTokens)

        let clock = ContinuousClock()
        let prefillStart = clock.now
        var logits = try run(pending)
        summary.prefillSeconds = (clock.now - prefillStart).seconds

        var output = OutputProcessor(tokenizer: tokenizer, sampling: sampling, stop: stop, prompt: tokens,
                                     room: capacity - tokens.count)
        let decodeStart = clock.now
        summary.finishReason = .length
        generation: while stop.maxTokens > 0 {
            switch output.next(logits) {
            case .end(let reason):
                tokens.append(output.generated.last!)
                summary.finishReason = reason
                break generation
            case .token(let token, let finish):
                tokens.append(token.id)
                if !token.text.isEmpty { onText(token.text) }
                if let finish {
                    summary.finishReason = finish
                    break generation
                }
                logits = try run([token.id])
            }
        }
        let tail = output.finish(summary.finishReason)
        if !tail.isEmpty { onText(tail) }
        let generated = output.generated
        summary.decodeSeconds = (clock.now - decodeStart).seconds
        summary.generatedTokens = generated.count
        summary.generatedIDs = generated
        return summary
    }

    /// Runs tokens through the model at the end of the sequence; returns the last position's logits.
    private func run(_ newTokens: [Int]) throws(EngineError) -> ArraySlice<Float> {
        var logits: ArraySlice<Float> = []
        var start = 0
        while start < newTokens.count {
            let chunk = Array(newTokens[start ..< min(start + prefillChunk, newTokens.count)])
            try sequence.reserve(chunk.count, blockSize: cache.blockSize, allocator: &allocator)
            let out = try model.forward(
                [BatchEntry(tokens: chunk, startPosition: sequence.length, blockTable: sequence.blockTable, logits: .last)],
                cache: cache)
            sequence.length += chunk.count
            logits = out.last(of: 0)
            start += chunk.count
        }
        return logits
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
