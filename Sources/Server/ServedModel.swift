public import Engine
import Foundation
import InferenceCore
public import Runtime
public import Tokenizer

/// A model the server answers for: its engine behind a scheduler, its tokenizer and chat template.
public final class ServedModel: Sendable {
    public let name: String
    public let scheduler: Scheduler
    public let tokenizer: Tokenizer
    public let formatter: ChatPromptFormatter
    /// Most tokens one request may generate (limits.max_tokens).
    public let maxTokensLimit: Int
    /// Longest prompt accepted (limits.max_prompt_tokens, else the context).
    public let maxPromptTokens: Int
    public let created: Int

    public init(name: String, scheduler: Scheduler, maxTokensLimit: Int, maxPromptTokens: Int? = nil) {
        self.name = name
        self.scheduler = scheduler
        tokenizer = scheduler.tokenizer
        formatter = ChatPromptFormatter(tokenizer: scheduler.tokenizer)
        self.maxTokensLimit = max(1, maxTokensLimit)
        self.maxPromptTokens = min(maxPromptTokens ?? scheduler.contextLength, scheduler.contextLength)
        created = Int(Date().timeIntervalSince1970)
    }

    public var contextLength: Int { scheduler.contextLength }

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
    func tokenText(_ id: Int) -> String { tokenizer.decode([id]) }
}
