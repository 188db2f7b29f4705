public import InferenceCore

/// One generation request as the scheduler sees it: tokens in, tokens out.
public struct GenerationRequest: Sendable {
    public var id: String
    public var promptTokens: [Int]
    public var sampling: SamplingParameters
    public var stop: StopCondition
    /// How many alternatives with their log-probabilities to report per generated token (0 = none).
    public var topLogprobs: Int
    /// Whether each generated token's own log-probability is reported.
    public var wantsLogprobs: Bool
    /// The request is cancelled if it has not finished by then.
    public var deadline: ContinuousClock.Instant?
    /// The request is cancelled if it is still waiting in the queue then (the engine never started on it).
    public var firstTokenDeadline: ContinuousClock.Instant?
    /// Log-probabilities of the prompt's tokens, each given the ones before it, with this many
    /// alternatives (OpenAI completions' `echo` + `logprobs`); nil: none. Such a request does not
    /// take keys and values from the prefix cache, since every prompt position must be computed.
    public var promptLogprobs: Int?
    /// Images placed in the prompt (vision-language models); nil for text.
    public var multimodal: MultimodalPrompt?
    /// Special tokens (control tokens such as `<|user|>`) are left out of the text (vLLM's `skip_special_tokens`).
    public var skipSpecialTokens = true

    public init(id: String, promptTokens: [Int], sampling: SamplingParameters = .greedy, stop: StopCondition = StopCondition(),
                wantsLogprobs: Bool = false, topLogprobs: Int = 0, deadline: ContinuousClock.Instant? = nil,
                firstTokenDeadline: ContinuousClock.Instant? = nil) {
        self.firstTokenDeadline = firstTokenDeadline
        self.id = id
        self.promptTokens = promptTokens
        self.sampling = sampling
        self.stop = stop
        self.wantsLogprobs = wantsLogprobs
        self.topLogprobs = topLogprobs
        self.deadline = deadline
    }
}

/// A generated token as it is streamed to the client.
public struct GeneratedToken: Sendable {
    public var id: Int
    /// Text that became final with this token (may be empty: part of a character, or text a stop
    /// string might still claim).
    public var text: String
    /// log P(token) under the model's unmodified distribution, when asked for.
    public var logprob: Float?
    /// The most likely alternatives at this position, best first, when asked for.
    public var topLogprobs: [SampledToken]
    /// On the first generated token of a request with `promptLogprobs`: the prompt's log-probabilities
    /// (so that a stream can send them with the echoed prompt before any generated text).
    public var promptLogprobs: [PromptTokenLogprob]? = nil

    public init(id: Int, text: String, logprob: Float? = nil, topLogprobs: [SampledToken] = [],
                promptLogprobs: [PromptTokenLogprob]? = nil) {
        self.id = id
        self.text = text
        self.logprob = logprob
        self.topLogprobs = topLogprobs
        self.promptLogprobs = promptLogprobs
    }
}

/// A prompt token's log-probability given the tokens before it, under the model's unmodified distribution.
public struct PromptTokenLogprob: Sendable, Equatable {
    public var id: Int
    public var logprob: Float
    /// The most likely tokens at this position, best first (as many as asked for).
    public var topLogprobs: [SampledToken]

    public init(id: Int, logprob: Float, topLogprobs: [SampledToken] = []) {
        self.id = id
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}

/// How a request went, with the timings the metrics and `usage` report.
public struct GenerationOutcome: Sendable {
    public var finishReason: FinishReason
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens whose keys and values came from the prefix cache.
    public var cachedPromptTokens: Int
    /// Text held back until the end (the tail a stop string did not claim).
    public var trailingText: String
    public var queueSeconds: Double
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var totalSeconds: Double
    public var timeToFirstTokenSeconds: Double?
    public var preemptions: Int
    /// For prompt tokens 1..<promptTokens when `GenerationRequest.promptLogprobs` was set (the first
    /// token has nothing before it); empty otherwise.
    public var promptLogprobs: [PromptTokenLogprob] = []

    public init(finishReason: FinishReason, promptTokens: Int, completionTokens: Int, cachedPromptTokens: Int = 0,
                trailingText: String = "", queueSeconds: Double = 0, prefillSeconds: Double = 0, decodeSeconds: Double = 0,
                totalSeconds: Double = 0, timeToFirstTokenSeconds: Double? = nil, preemptions: Int = 0,
                promptLogprobs: [PromptTokenLogprob] = []) {
        self.finishReason = finishReason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cachedPromptTokens = cachedPromptTokens
        self.trailingText = trailingText
        self.queueSeconds = queueSeconds
        self.prefillSeconds = prefillSeconds
        self.decodeSeconds = decodeSeconds
        self.totalSeconds = totalSeconds
        self.timeToFirstTokenSeconds = timeToFirstTokenSeconds
        self.preemptions = preemptions
        self.promptLogprobs = promptLogprobs
    }
}

/// What the scheduler sends back for one request, in order: tokens, then one `finished` or `failed`.
public enum GenerationEvent: Sendable {
    case token(GeneratedToken)
    case finished(GenerationOutcome)
    case failed(SchedulerError)
}

/// Why the scheduler refused or ended a request.
public enum SchedulerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The waiting queue is full; try again after the suggested delay.
    case queueFull(capacity: Int, retryAfterSeconds: Int)
    /// The server is shutting down and takes no new work.
    case draining
    /// The prompt plus the requested tokens do not fit in one sequence.
    case contextOverflow(promptTokens: Int, maxTokens: Int, contextLength: Int)
    /// The prompt alone needs more KV blocks than the whole cache holds.
    case exceedsCache(promptTokens: Int, cacheTokens: Int)
    case emptyPrompt
    case invalidToken(Int, vocabularySize: Int)
    /// The engine failed; the request cannot continue.
    case engine(String)

    public var description: String {
        switch self {
        case .queueFull(let capacity, let retry):
            return "The server is at capacity: \(capacity) requests are already waiting. Retry after \(retry) s, or raise limits.max_queue."
        case .draining:
            return "The server is shutting down and accepts no new requests. Retry against another replica."
        case .contextOverflow(let prompt, let maxTokens, let context):
            return "This model's maximum context length is \(context) tokens. However, you requested \(prompt + maxTokens) tokens (\(prompt) in the prompt, \(maxTokens) for the completion). Shorten the prompt or lower max_tokens."
        case .exceedsCache(let prompt, let cache):
            return "The prompt has \(prompt) tokens but the KV cache holds only \(cache) tokens in all. Shorten the prompt or raise kv_memory_budget."
        case .emptyPrompt:
            return "The prompt is empty: give at least one token."
        case .invalidToken(let id, let size):
            return "Token id \(id) is outside the vocabulary (0..<\(size))."
        case .engine(let message):
            return "The engine failed: \(message)"
        }
    }
}

/// A snapshot of the scheduler for metrics and readiness.
public struct SchedulerStatistics: Sendable {
    public init() {}

    public var running = 0
    public var waiting = 0
    public var kvBlocksUsed = 0
    public var kvBlocksTotal = 0
    public var steps = 0
    public var prefixQueriedTokens = 0
    public var prefixHitTokens = 0
    public var preemptions = 0
    public var promptTokens = 0
    public var generatedTokens = 0
}

/// Receives what the scheduler measures (implemented by the server's metrics). Called on the engine
/// thread: implementations must be quick and thread-safe.
public protocol SchedulerObserver: Sendable {
    /// After each engine step: tokens run, sequences in the batch.
    func stepCompleted(batchTokens: Int, batchSequences: Int, statistics: SchedulerStatistics)
    func prefixCacheLookup(queriedTokens: Int, hitTokens: Int)
    func preempted()
    func firstToken(afterSeconds: Double)
    func interTokenLatency(seconds: Double)
    func requestFinished(_ outcome: GenerationOutcome)
}
