import Foundation
public import Serving

/// A model the server answers for: a name, a backend (autoglm's engine) and the server's limits.
public final class ServedModel: Sendable {
    public let name: String
    public let backend: any InferenceBackend
    /// Most tokens one request may generate (limits.max_tokens).
    public let maxTokensLimit: Int
    /// Longest prompt accepted (limits.max_prompt_tokens, else the context).
    public let maxPromptTokens: Int
    public let created: Int

    public init(name: String, backend: any InferenceBackend, maxTokensLimit: Int, maxPromptTokens: Int? = nil) {
        self.name = name
        self.backend = backend
        self.maxTokensLimit = max(1, maxTokensLimit)
        self.maxPromptTokens = min(maxPromptTokens ?? backend.contextLength, backend.contextLength)
        created = Int(Date().timeIntervalSince1970)
    }

    public var contextLength: Int { backend.contextLength }

    /// max_tokens for a request: what the client asked for (checked against the context, with the
    /// numbers in the error), else as much as the context leaves, capped by the server's limit.
    func resolveMaxTokens(requested: Int?, promptTokens: Int, param: String) throws(APIError) -> Int {
        guard promptTokens <= maxPromptTokens else {
            throw .contextOverflow(
                "The prompt has \(promptTokens) tokens; this server accepts at most \(maxPromptTokens) prompt tokens for '\(name)' (context length \(contextLength)). Shorten the prompt.")
        }
        if let requested {
            guard requested <= maxTokensLimit else {
                throw .invalidRequest("'\(param)' is \(requested), above this server's limit of \(maxTokensLimit) (limits.max_tokens).", param: param)
            }
            guard promptTokens + requested <= contextLength else {
                throw .contextOverflow(
                    "This model's maximum context length is \(contextLength) tokens. However, you requested \(promptTokens + requested) tokens (\(promptTokens) in the messages, \(requested) in the completion). Please reduce the length of the messages or completion.")
            }
            return requested
        }
        let room = contextLength - promptTokens
        guard room >= 1 else {
            throw .contextOverflow(
                "This model's maximum context length is \(contextLength) tokens, and the prompt alone has \(promptTokens) tokens. Please reduce the length of the messages.")
        }
        return min(room, maxTokensLimit)
    }

    /// Token text for logprobs: the piece as the client will see it.
    func tokenText(_ id: Int) -> String { backend.decode([id]) }
}
