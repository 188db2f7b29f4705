/// Request bodies as an OpenAI client (autoglm's load generator) sends them. Optional fields are
/// left out when nil. The server reads requests field by field instead (`FieldReader`), to name
/// the offending field and its allowed range in each error, as vLLM's validation does.

public struct StreamOptions: Codable, Sendable, Equatable {
    public var includeUsage: Bool
    public init(includeUsage: Bool) { self.includeUsage = includeUsage }
    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
}

/// The generation fields both routes share (OpenAI's, plus vLLM's `min_tokens` and `ignore_eos`).
public struct GenerationFields: Codable, Sendable, Equatable {
    public var maxTokens: Int?
    public var minTokens: Int?
    public var ignoreEOS: Bool?
    public var temperature: Double?
    public var stream: Bool?
    public var streamOptions: StreamOptions?

    public init(maxTokens: Int? = nil, minTokens: Int? = nil, ignoreEOS: Bool? = nil, temperature: Double? = nil,
                stream: Bool? = nil, streamOptions: StreamOptions? = nil) {
        self.maxTokens = maxTokens
        self.minTokens = minTokens
        self.ignoreEOS = ignoreEOS
        self.temperature = temperature
        self.stream = stream
        self.streamOptions = streamOptions
    }

    enum CodingKeys: String, CodingKey {
        case maxTokens = "max_tokens", minTokens = "min_tokens", ignoreEOS = "ignore_eos", temperature, stream
        case streamOptions = "stream_options"
    }
}

/// `POST /v1/completions`.
public struct CompletionRequest: Codable, Sendable, Equatable {
    public var model: String
    public var prompt: String
    public var fields: GenerationFields

    public init(model: String, prompt: String, fields: GenerationFields = GenerationFields()) {
        self.model = model
        self.prompt = prompt
        self.fields = fields
    }

    enum CodingKeys: String, CodingKey { case model, prompt }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        prompt = try c.decode(String.self, forKey: .prompt)
        fields = try GenerationFields(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(prompt, forKey: .prompt)
        try fields.encode(to: encoder)
    }
}

/// `POST /v1/chat/completions`. Messages are free-form JSON (text, images, tool calls).
public struct ChatCompletionRequest: Codable, Sendable, Equatable {
    public var model: String
    public var messages: [JSONValue]
    public var fields: GenerationFields

    public init(model: String, messages: [JSONValue], fields: GenerationFields = GenerationFields()) {
        self.model = model
        self.messages = messages
        self.fields = fields
    }

    /// A single user turn.
    public static func user(_ text: String) -> JSONValue { .object(["role": .string("user"), "content": .string(text)]) }

    enum CodingKeys: String, CodingKey { case model, messages }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        messages = try c.decode([JSONValue].self, forKey: .messages)
        fields = try GenerationFields(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(messages, forKey: .messages)
        try fields.encode(to: encoder)
    }
}
