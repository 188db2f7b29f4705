import Foundation

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
    public static func make(prompt: BenchPrompt, endpoint: Endpoint, model: String) throws(BenchError) -> [String: JSONValue] {
        var body: [String: JSONValue] = [
            "model": .string(model),
            "stream": .bool(true),
            "stream_options": .object(["include_usage": .bool(true)]),
        ]
        switch (endpoint, prompt.input) {
        case (.chat, .text(let text)):
            body["messages"] = .array([.object(["role": .string("user"), "content": .string(text)])])
        case (.chat, .messages(let messages)):
            body["messages"] = .array(messages)
        case (.completions, .text(let text)):
            body["prompt"] = .string(text)
        case (.completions, .messages):
            throw .messagesNeedChatEndpoint
        }
        if let maxTokens = prompt.maxTokens {
            body["max_tokens"] = .number(Double(maxTokens))
            if prompt.exactLength {
                body["min_tokens"] = .number(Double(maxTokens))
                body["ignore_eos"] = .bool(true)
            }
        }
        return body
    }

    public static func encode(_ body: [String: JSONValue]) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Encoding a tree of strings, numbers and booleans cannot fail.
        return (try? encoder.encode(body)) ?? Data("{}".utf8)
    }
}
