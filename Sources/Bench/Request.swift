public import Foundation
import OpenAIAPI

/// The two OpenAI-compatible generation routes.
public enum Endpoint: String, Sendable, Codable, CaseIterable {
    case chat, completions

    public var path: String { self == .chat ? "/v1/chat/completions" : "/v1/completions" }
}

/// Where to send requests: the base URL with any trailing `/` or `/v1` removed.
public struct ServerURLs: Sendable, Equatable {
    public let base: String

    public init(baseURL: String) throws(BenchError) {
        var base = baseURL.trimmingCharacters(in: .whitespaces)
        while base.hasSuffix("/") { base.removeLast() }
        if base.hasSuffix("/v1") { base.removeLast(3) }
        guard let url = URL(string: base), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = url.host, !host.isEmpty else {
            throw .invalidBaseURL(baseURL)
        }
        self.base = base
    }

    public func url(for endpoint: Endpoint) -> String { base + endpoint.path }
    public var models: String { base + "/v1/models" }
}

/// Builds the JSON body of one streaming request.
public enum RequestBody {
    public static func make(prompt: BenchPrompt, endpoint: Endpoint, model: String) throws(BenchError) -> Data {
        var fields = GenerationFields(maxTokens: prompt.maxTokens, stream: true, streamOptions: StreamOptions(includeUsage: true))
        if prompt.exactLength, let maxTokens = prompt.maxTokens {
            fields.minTokens = maxTokens
            fields.ignoreEOS = true
        }
        switch (endpoint, prompt.input) {
        case (.chat, .text(let text)):
            return encode(ChatCompletionRequest(model: model, messages: [ChatCompletionRequest.user(text)], fields: fields))
        case (.chat, .messages(let messages)):
            return encode(ChatCompletionRequest(model: model, messages: messages, fields: fields))
        case (.completions, .text(let text)):
            return encode(CompletionRequest(model: model, prompt: text, fields: fields))
        case (.completions, .messages):
            throw .messagesNeedChatEndpoint
        }
    }

    static func encode(_ body: some Encodable) -> Data {
        Data(OpenAIJSON.text(body).utf8)
    }
}
