/// How the next token is chosen. Defaults are greedy decoding with no penalties.
///
/// The order the sampler applies these in is llama.cpp's and vLLM's: penalties, then top-k, top-p
/// and min-p filtering, then temperature, then a draw from a generator seeded by `seed`.
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// 0 means greedy (argmax).
    public var temperature: Float = 0
    /// Keep only the k most likely tokens; 0 disables.
    public var topK: Int = 0
    /// Keep the smallest set of tokens whose probability sums to at least topP; 1 disables.
    public var topP: Float = 1
    /// Drop tokens whose probability is below minP times the most likely one's; 0 disables.
    public var minP: Float = 0
    /// Divides positive logits (multiplies negative ones) of tokens already seen; 1 disables.
    public var repetitionPenalty: Float = 1
    /// Subtracted once from the logit of every token already generated; 0 disables.
    public var presencePenalty: Float = 0
    /// Subtracted from a token's logit for each time it was generated; 0 disables.
    public var frequencyPenalty: Float = 0
    /// How many of the most recent tokens the penalties look at; 0 means all.
    public var penaltyWindow: Int = 64
    /// Seed of the random generator; nil draws one.
    public var seed: UInt64?
    /// Added to a token's logit after the penalties (OpenAI's logit_bias: -100 bans, 100 forces); nil: none.
    public var logitBias: [Int: Float]?

    public init(
        temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0,
        repetitionPenalty: Float = 1, presencePenalty: Float = 0, frequencyPenalty: Float = 0,
        penaltyWindow: Int = 64, seed: UInt64? = nil, logitBias: [Int: Float]? = nil
    ) {
        self.logitBias = logitBias
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.penaltyWindow = penaltyWindow
        self.seed = seed
    }

    public static let greedy = SamplingParameters()
}

/// When generation stops, besides the context running out.
public struct StopCondition: Sendable, Equatable, Codable {
    public var maxTokens: Int
    /// Generation ends before any of these strings would appear; the text does not include it.
    public var stopStrings: [String]
    /// Generation ends after emitting one of these ids (the model's end-of-generation tokens are added by the engine).
    public var stopTokens: [Int]
    /// Keep going past end-of-generation tokens (benchmarks).
    public var ignoreEOS: Bool
    /// Do not stop on EOS or stop strings before this many tokens.
    public var minTokens: Int

    public init(maxTokens: Int = 256, stopStrings: [String] = [], stopTokens: [Int] = [], ignoreEOS: Bool = false, minTokens: Int = 0) {
        self.maxTokens = maxTokens
        self.stopStrings = stopStrings
        self.stopTokens = stopTokens
        self.ignoreEOS = ignoreEOS
        self.minTokens = minTokens
    }
}

/// Why a sequence ended (OpenAI's finish_reason values).
public enum FinishReason: String, Sendable, Codable, Equatable {
    /// An end-of-generation token or a stop string.
    case stop
    /// max_tokens or the context length.
    case length
    case cancelled
}
