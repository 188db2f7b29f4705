/// A chosen token with its log-probability under the model's unmodified distribution.
public struct SampledToken: Sendable, Equatable {
    public var id: Int
    public var logprob: Float

    public init(id: Int, logprob: Float) {
        self.id = id
        self.logprob = logprob
    }
}
