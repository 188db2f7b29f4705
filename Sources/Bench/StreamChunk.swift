import Foundation

/// The fields of one OpenAI streaming chunk that the benchmark needs; works for both
/// `chat.completion.chunk` (`choices[].delta.content`) and `text_completion` (`choices[].text`).
public struct StreamChunk: Decodable, Sendable, Equatable {
    public struct Usage: Decodable, Sendable, Equatable {
        public var promptTokens: Int?
        public var completionTokens: Int?

        public init(promptTokens: Int?, completionTokens: Int?) {
            self.promptTokens = promptTokens
            self.completionTokens = completionTokens
        }

        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens"
            case completionTokens = "completion_tokens"
        }
    }

    struct Choice: Decodable, Sendable, Equatable {
        struct Delta: Decodable, Sendable, Equatable {
            var content: String?
            var reasoningContent: String?
            enum CodingKeys: String, CodingKey {
                case content
                case reasoningContent = "reasoning_content"
            }
        }
        var text: String?
        var delta: Delta?
    }

    struct ErrorBody: Decodable, Sendable, Equatable {}

    var choices: [Choice]?
    public var usage: Usage?
    var error: ErrorBody?

    /// Whether the chunk has a non-empty `choices` array (vLLM's condition for TTFT and ITL).
    public var hasChoices: Bool { !(choices ?? []).isEmpty }

    /// Whether the chunk carries generated text (the fallback token count when usage is missing).
    public var hasContent: Bool {
        (choices ?? []).contains { choice in
            !(choice.text ?? "").isEmpty || !(choice.delta?.content ?? "").isEmpty
                || !(choice.delta?.reasoningContent ?? "").isEmpty
        }
    }

    /// Whether the server reported an error inside the stream (`data: {"error": ...}`).
    public var isError: Bool { error != nil }

    public static func decode(_ payload: String) -> StreamChunk? {
        try? JSONDecoder().decode(StreamChunk.self, from: Data(payload.utf8))
    }
}
