public import Foundation

/// What any OpenAI-compatible server's streamed event carries, read leniently (vLLM, SGLang,
/// llama-server and autoglm differ in the fields they add): chat deltas or completion text, usage,
/// or an error sent inside the stream (`data: {"error": ...}`).
public struct StreamEvent: Decodable, Sendable, Equatable {
    public struct Choice: Decodable, Sendable, Equatable {
        public var index: Int?
        public var text: String?
        public var delta: ChatCompletionChunk.Delta?
        public var finishReason: String?
        enum CodingKeys: String, CodingKey { case index, text, delta, finishReason = "finish_reason" }
    }

    /// An error reported inside the stream; servers disagree on its fields (llama-server's `code` is
    /// a number), so only the message is read.
    public struct InStreamError: Decodable, Sendable, Equatable {
        public var message: String?
    }

    public var choices: [Choice]?
    public var usage: Usage?
    public var error: InStreamError?

    /// Whether the event has a non-empty `choices` array (vLLM's condition for TTFT and ITL).
    public var hasChoices: Bool { !(choices ?? []).isEmpty }

    /// Whether the event carries generated text.
    public var hasContent: Bool {
        (choices ?? []).contains { choice in
            !(choice.text ?? "").isEmpty || !(choice.delta?.content ?? "").isEmpty
                || !(choice.delta?.reasoningContent ?? "").isEmpty
        }
    }

    public var isError: Bool { error != nil }

    /// The event in one `data:` payload, or nil when it is not a JSON object of this shape.
    public static func decode(_ payload: String) -> StreamEvent? {
        try? JSONDecoder().decode(StreamEvent.self, from: Data(payload.utf8))
    }
}

/// The encoder for API bodies: keys sorted (stable output), slashes unescaped.
public enum OpenAIJSON {
    /// One encoder for every body (a streamed chunk per token): its options never change after this,
    /// and encoding with it from several threads at once is safe.
    public static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// `value` as JSON text. The API types hold only strings, numbers (finite) and booleans, so
    /// encoding cannot fail; should it ever, the failure is described in an error body.
    public static func text(_ value: some Encodable) -> String {
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            return #"{"error":{"message":"response encoding failed","type":"server_error","param":null,"code":null}}"#
        }
    }
}
