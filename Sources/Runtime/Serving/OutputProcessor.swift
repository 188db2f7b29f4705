import Engine
public import InferenceCore
public import Serving
public import Tokenizer

/// Turns one request's logits into its output, one position at a time: the seeded draw with the
/// request's penalties, the end-of-generation and stop-token checks, stop strings, incremental
/// detokenization (whole characters only) and log-probabilities. The server's scheduler and the
/// CLI's generation session both use it, so a request ends the same way on either path.
public struct OutputProcessor: Sendable {
    /// The outcome of one sampled position.
    public enum Step: Sendable {
        /// A token for the client; `finish` is set when it is also the last one.
        case token(GeneratedToken, finish: FinishReason?)
        /// Generation ended on an end-of-generation or stop token, which is not shown.
        case end(FinishReason)
    }

    public let stop: StopCondition
    public let topLogprobs: Int
    public let wantsLogprobs: Bool
    /// Tokens generated so far (including an end token that stopped generation).
    public private(set) var generated: [Int] = []

    private let prompt: [Int]
    /// Most tokens the sequence may still take (context room after the prompt).
    private let room: Int
    private let endIDs: Set<Int>
    private var sampler: Sampler
    private var detokenizer: IncrementalDetokenizer
    private var stopMatcher: StopStringMatcher

    /// - Parameters:
    ///   - prompt: the tokens the penalties count as the prompt.
    ///   - room: how many tokens fit after the prompt in the sequence (its context or cache limit).
    public init(tokenizer: Tokenizer, sampling: SamplingParameters, stop: StopCondition, prompt: [Int], room: Int,
                wantsLogprobs: Bool = false, topLogprobs: Int = 0, renderSpecial: Bool = false) {
        self.stop = stop
        self.prompt = prompt
        self.room = room
        self.wantsLogprobs = wantsLogprobs
        self.topLogprobs = topLogprobs
        endIDs = tokenizer.endOfGenerationIDs.union(stop.stopTokens)
        sampler = Sampler(sampling)
        detokenizer = IncrementalDetokenizer(tokenizer: tokenizer, renderSpecial: renderSpecial)
        stopMatcher = StopStringMatcher(stop.stopStrings)
    }

    /// Samples the next token from the logits of the sequence's last position.
    public mutating func next(_ logits: ArraySlice<Float>) -> Step {
        let sampled = sampler.sample(logits, prompt: prompt, generated: generated)
        generated.append(sampled.id)
        let mayStop = generated.count > stop.minTokens
        if endIDs.contains(sampled.id) && !stop.ignoreEOS && mayStop {
            return .end(.stop)
        }
        let text = stopMatcher.feed(detokenizer.append(sampled.id))
        let token = GeneratedToken(
            id: sampled.id, text: text, logprob: wantsLogprobs || topLogprobs > 0 ? sampled.logprob : nil,
            topLogprobs: topLogprobs > 0 ? Sampler.topLogprobs(logits, count: topLogprobs) : [])
        if stopMatcher.isStopped && mayStop { return .token(token, finish: .stop) }
        if generated.count >= min(stop.maxTokens, room) { return .token(token, finish: .length) }
        return .token(token, finish: nil)
    }

    /// The text held back until the end: an incomplete character's bytes, and what a stop string
    /// could still have claimed. Nothing when the request was cancelled.
    public mutating func finish(_ reason: FinishReason) -> String {
        guard reason != .cancelled else { return "" }
        return stopMatcher.feed(detokenizer.finish()) + stopMatcher.flush()
    }
}
