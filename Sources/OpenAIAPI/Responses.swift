/// OpenAI's response bodies as autoglm writes them and clients read them. Fields OpenAI sends as
/// `null` (`logprobs`, `finish_reason`) are written as `null`, not left out.

public struct Usage: Codable, Sendable, Equatable {
    public struct PromptTokensDetails: Codable, Sendable, Equatable {
        public var cachedTokens: Int
        public init(cachedTokens: Int) { self.cachedTokens = cachedTokens }
        enum CodingKeys: String, CodingKey { case cachedTokens = "cached_tokens" }
    }

    public var promptTokens: Int?
    public var completionTokens: Int?
    public var totalTokens: Int?
    public var promptTokensDetails: PromptTokensDetails?

    public init(promptTokens: Int, completionTokens: Int, cachedTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        totalTokens = promptTokens + completionTokens
        promptTokensDetails = cachedTokens.map(PromptTokensDetails.init)
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
        case promptTokensDetails = "prompt_tokens_details"
    }
}

/// Log-probabilities are finite on the wire: -infinity becomes -9999 (as vLLM writes it).
@inline(__always)
func wire(_ logprob: Float) -> Float { logprob.isFinite ? logprob : (logprob.isNaN ? -9999 : max(-9999, min(9999, logprob))) }

/// Chat completions' `logprobs`: one entry per generated token.
public struct ChatLogprobs: Codable, Sendable, Equatable {
    public struct Alternative: Codable, Sendable, Equatable {
        public var token: String
        public var logprob: Float
        public var bytes: [UInt8]?
        /// `bytes`: the token's own bytes (part of a UTF-8 character for some tokens); default the text's.
        public init(token: String, logprob: Float, bytes: [UInt8]? = nil) {
            self.token = token
            self.logprob = wire(logprob)
            self.bytes = bytes ?? Array(token.utf8)
        }
    }

    public struct Entry: Codable, Sendable, Equatable {
        public var token: String
        public var logprob: Float
        public var bytes: [UInt8]?
        public var topLogprobs: [Alternative]
        public init(token: String, logprob: Float, bytes: [UInt8]? = nil, topLogprobs: [Alternative]) {
            self.token = token
            self.logprob = wire(logprob)
            self.bytes = bytes ?? Array(token.utf8)
            self.topLogprobs = topLogprobs
        }
        enum CodingKeys: String, CodingKey { case token, logprob, bytes, topLogprobs = "top_logprobs" }
    }

    public var content: [Entry]
    public init(content: [Entry]) { self.content = content }
}

/// Legacy completions' `logprobs`: parallel arrays. The first echoed prompt token has no
/// log-probability (`null`), as in OpenAI's API.
public struct CompletionLogprobs: Codable, Sendable, Equatable {
    public var tokens: [String] = []
    public var tokenLogprobs: [Float?] = []
    public var topLogprobs: [[String: Float]?] = []
    public var textOffset: [Int] = []

    public init() {}

    public mutating func append(token: String, logprob: Float?, top: [(String, Float)]?, offset: Int) {
        tokens.append(token)
        tokenLogprobs.append(logprob.map(wire))
        topLogprobs.append(top.map { pairs in Dictionary(pairs.map { ($0.0, wire($0.1)) }, uniquingKeysWith: { a, _ in a }) })
        textOffset.append(offset)
    }

    enum CodingKeys: String, CodingKey {
        case tokens, tokenLogprobs = "token_logprobs", topLogprobs = "top_logprobs", textOffset = "text_offset"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(tokens, forKey: .tokens)
        try c.encode(tokenLogprobs, forKey: .tokenLogprobs)  // nil elements as null
        try c.encode(topLogprobs, forKey: .topLogprobs)
        try c.encode(textOffset, forKey: .textOffset)
    }
}

/// `POST /v1/chat/completions`, not streamed.
public struct ChatCompletion: Codable, Sendable, Equatable {
    public struct Message: Codable, Sendable, Equatable {
        public var role: String
        public var content: String?
        public init(role: String = "assistant", content: String?) {
            self.role = role
            self.content = content
        }
    }

    public struct Choice: Codable, Sendable, Equatable {
        public var index: Int
        public var message: Message
        public var logprobs: ChatLogprobs?
        public var finishReason: String?
        public init(index: Int, message: Message, logprobs: ChatLogprobs? = nil, finishReason: String?) {
            self.index = index
            self.message = message
            self.logprobs = logprobs
            self.finishReason = finishReason
        }
        enum CodingKeys: String, CodingKey { case index, message, logprobs, finishReason = "finish_reason" }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(message, forKey: .message)
            try c.encode(logprobs, forKey: .logprobs)
            try c.encode(finishReason, forKey: .finishReason)
        }
    }

    public var id: String
    public var object = "chat.completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?

    public init(id: String, created: Int, model: String, choices: [Choice], usage: Usage?) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }
}

/// One server-sent event of a streamed chat completion.
public struct ChatCompletionChunk: Codable, Sendable, Equatable {
    public struct Delta: Codable, Sendable, Equatable {
        public var role: String?
        public var content: String?
        public var reasoningContent: String?
        public init(role: String? = nil, content: String? = nil) {
            self.role = role
            self.content = content
        }
        enum CodingKeys: String, CodingKey { case role, content, reasoningContent = "reasoning_content" }
    }

    public struct Choice: Codable, Sendable, Equatable {
        public var index: Int
        public var delta: Delta
        public var logprobs: ChatLogprobs?
        public var finishReason: String?
        public init(index: Int, delta: Delta, logprobs: ChatLogprobs? = nil, finishReason: String? = nil) {
            self.index = index
            self.delta = delta
            self.logprobs = logprobs
            self.finishReason = finishReason
        }
        enum CodingKeys: String, CodingKey { case index, delta, logprobs, finishReason = "finish_reason" }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(delta, forKey: .delta)
            try c.encode(logprobs, forKey: .logprobs)
            try c.encode(finishReason, forKey: .finishReason)
        }
    }

    public var id: String
    public var object = "chat.completion.chunk"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?

    public init(id: String, created: Int, model: String, choices: [Choice], usage: Usage? = nil) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }
}

/// `POST /v1/completions`, one-shot body or one streamed event (the same shape, as in OpenAI's API).
public struct Completion: Codable, Sendable, Equatable {
    public struct Choice: Codable, Sendable, Equatable {
        public var index: Int
        public var text: String
        public var logprobs: CompletionLogprobs?
        public var finishReason: String?
        public init(index: Int, text: String, logprobs: CompletionLogprobs? = nil, finishReason: String? = nil) {
            self.index = index
            self.text = text
            self.logprobs = logprobs
            self.finishReason = finishReason
        }
        enum CodingKeys: String, CodingKey { case index, text, logprobs, finishReason = "finish_reason" }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(text, forKey: .text)
            try c.encode(logprobs, forKey: .logprobs)
            try c.encode(finishReason, forKey: .finishReason)
        }
    }

    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?

    public init(id: String, created: Int, model: String, choices: [Choice], usage: Usage? = nil) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }
}

/// `GET /v1/models`.
public struct ModelList: Codable, Sendable, Equatable {
    public struct Model: Codable, Sendable, Equatable {
        public var id: String
        public var object = "model"
        public var created: Int
        public var ownedBy: String
        /// vLLM's extension: the longest sequence the model serves.
        public var maxModelLen: Int?
        public init(id: String, created: Int, ownedBy: String, maxModelLen: Int?) {
            self.id = id
            self.created = created
            self.ownedBy = ownedBy
            self.maxModelLen = maxModelLen
        }
        enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by", maxModelLen = "max_model_len" }
    }

    public var object = "list"
    public var data: [Model]
    public init(data: [Model]) { self.data = data }
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
public struct ErrorResponse: Codable, Sendable, Equatable {
    public struct Detail: Codable, Sendable, Equatable {
        public var message: String
        public var type: String
        public var param: String?
        public var code: String?
        public init(message: String, type: String, param: String?, code: String?) {
            self.message = message
            self.type = type
            self.param = param
            self.code = code
        }
        enum CodingKeys: String, CodingKey { case message, type, param, code }
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(message, forKey: .message)
            try c.encode(type, forKey: .type)
            try c.encode(param, forKey: .param)
            try c.encode(code, forKey: .code)
        }
    }

    public var error: Detail
    public init(message: String, type: String, param: String? = nil, code: String? = nil) {
        error = Detail(message: message, type: type, param: param, code: code)
    }
}
