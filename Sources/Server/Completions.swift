import Foundation
import Imaging
import InferenceCore
import OpenAIAPI
import Serving

/// The generation endpoints: chat completions, completions and the native /generate, each in
/// one-shot JSON or as server-sent events.
struct CompletionsAPI: Sendable {
    enum Kind { case chat, completion, native }

    let models: ModelRegistry
    let requestTimeout: Double?
    /// server.timeouts.first_token: a choice still queued (not started) by then is cancelled.
    var firstTokenTimeout: Double? = nil
    /// Images in chat messages: limits and sources.
    var images = ImagePolicy()
    /// Seconds of silence after which a stream gets an SSE comment (a keep-alive).
    var heartbeatSeconds: Double = 10

    /// One prompt's worth of work: its tokens and rendered text.
    struct Prompt {
        var tokens: [Int]
        var text: String
    }

    /// Everything read from a request body before any work is queued.
    struct Job {
        var kind: Kind
        var model: ServedModel
        var prompts: [Prompt]
        var parameters: GenerationParameters
        var maxTokens: Int
        var logprobs = false
        var topLogprobs = 0
        var echo = false
        var id: String
        var created: Int
        /// The images of a chat request, placed in its (single) prompt.
        var multimodal: MultimodalPrompt? = nil
        /// Where the request's usage goes (token budgets, audit log).
        var note: RequestNote? = nil
    }

    // MARK: reading requests

    func chatJob(_ body: JSON, model: ServedModel, fetched: [String: [UInt8]] = [:]) throws(APIError) -> Job {
        let r = try FieldReader(body)
        var parameters = try GenerationParameters(r)
        try parameters.checkVocabulary(model.backend.vocabularySize)
        guard let messagesValue = r.value("messages") else {
            throw .invalidRequest("'messages' is required: a list of {\"role\", \"content\"} objects.", param: "messages")
        }
        guard case .array(let list) = messagesValue, !list.isEmpty else {
            throw .invalidRequest("'messages' must be a non-empty list of {\"role\", \"content\"} objects.", param: "messages")
        }
        var messages: [JinjaValue] = []
        var imageInput = ChatImages(policy: images, fetched: fetched, acceptsImages: model.backend.acceptsImages, model: model.name)
        for (i, message) in list.enumerated() {
            messages.append(try Self.chatMessage(message, index: i, images: &imageInput))
        }
        var extra: [String: JinjaValue] = [:]
        if let tools = r.value("tools"), tools != .null {
            try Self.checkTools(tools)
            extra["tools"] = tools.jinja
        }
        if let choice = r.value("tool_choice"), choice != .null { try Self.checkToolChoice(choice) }
        if let kwargs = r.value("chat_template_kwargs") {
            guard case .object(let pairs) = kwargs else {
                throw .invalidRequest("'chat_template_kwargs' must be an object.", param: "chat_template_kwargs")
            }
            for (k, v) in pairs { extra[k] = v.jinja }
        }
        let addGenerationPrompt = try r.bool("add_generation_prompt") ?? true
        let text: String
        do {
            text = try model.backend.renderChat(messages, extra: extra, addGenerationPrompt: addGenerationPrompt)
        } catch {
            throw .invalidRequest("The chat template of '\(model.name)' rejected these messages: \(error)", param: "messages")
        }
        var tokens = model.backend.tokens(forRenderedChat: text)
        var multimodal: MultimodalPrompt?
        if !imageInput.images.isEmpty {
            let options = try imageOptions(r)
            do {
                (tokens, multimodal) = try model.backend.placeImages(in: tokens, images: imageInput.images, options: options)
            } catch {
                let param = error.imageIndex.map { imageInput.params[$0] } ?? "messages"
                throw .invalidRequest("\(param): \(error.message)", param: param)
            }
        }
        let logprobs = try r.bool("logprobs") ?? false
        let top = try r.integer("top_logprobs", in: 0 ... 20) ?? 0
        if top > 0 && !logprobs { throw .invalidRequest("'top_logprobs' needs 'logprobs': true.", param: "top_logprobs") }
        let maxTokens = try model.resolveMaxTokens(requested: parameters.maxTokens, promptTokens: tokens.count,
                                                   param: r.value("max_completion_tokens") != nil ? "max_completion_tokens" : "max_tokens")
        parameters.maxTokens = maxTokens
        return Job(kind: .chat, model: model, prompts: [Prompt(tokens: tokens, text: text)], parameters: parameters,
                   maxTokens: maxTokens, logprobs: logprobs, topLogprobs: top, id: "chatcmpl-" + Self.newID(),
                   created: Self.now(), multimodal: multimodal)
    }

    /// OpenAI's shape of `tools`: a list of {"type": "function", "function": {"name", "description"?,
    /// "parameters"?, "strict"?}}, names of 1 to 64 letters, digits, '_' or '-'.
    static func checkTools(_ tools: JSON) throws(APIError) {
        guard case .array(let list) = tools else { throw .invalidRequest("'tools' must be a list of tool definitions.", param: "tools") }
        guard list.count <= 128 else { throw .invalidRequest("'tools' has \(list.count) entries; at most 128 are allowed.", param: "tools") }
        for (i, tool) in list.enumerated() {
            let param = "tools[\(i)]"
            guard case .object = tool else { throw .invalidRequest("\(param) must be an object, not \(tool.typeName).", param: param) }
            let t = try FieldReader(tool)
            guard let type = try t.string("type") else { throw .invalidRequest("\(param).type is required (\"function\").", param: "\(param).type") }
            guard type == "function" else { throw .invalidRequest("\(param).type must be \"function\", not '\(type.prefix(40))'.", param: "\(param).type") }
            guard let function = t.value("function") else { throw .invalidRequest("\(param).function is required.", param: "\(param).function") }
            guard case .object = function else {
                throw .invalidRequest("\(param).function must be an object, not \(function.typeName).", param: "\(param).function")
            }
            let f = try FieldReader(function)
            guard let name = try? f.string("name") else {
                throw .invalidRequest("\(param).function.name is required: a string.", param: "\(param).function.name")
            }
            try checkFunctionName(name, param: "\(param).function.name")
            if let d = f.value("description"), d != .null {
                guard case .string = d else {
                    throw .invalidRequest("\(param).function.description must be a string, not \(d.typeName).", param: "\(param).function.description")
                }
            }
            if let p = f.value("parameters"), p != .null {
                guard case .object = p else {
                    throw .invalidRequest("\(param).function.parameters must be a JSON Schema object, not \(p.typeName).", param: "\(param).function.parameters")
                }
            }
            if let s = f.value("strict"), s != .null {
                guard case .bool = s else { throw .invalidRequest("\(param).function.strict must be a boolean.", param: "\(param).function.strict") }
            }
        }
    }

    static func checkFunctionName(_ name: String, param: String) throws(APIError) {
        let ok = !name.isEmpty && name.utf8.count <= 64 && name.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c == 0x2D
        }
        guard ok else {
            throw .invalidRequest("\(param) must be 1 to 64 letters, digits, '_' or '-'.", param: param)
        }
    }

    /// "none", "auto", "required", or {"type": "function", "function": {"name": ...}}.
    static func checkToolChoice(_ choice: JSON) throws(APIError) {
        switch choice {
        case .string(let s) where ["none", "auto", "required"].contains(s): return
        case .object:
            let c = try FieldReader(choice)
            guard try c.string("type") == "function", let function = c.value("function"), case .object = function,
                  let name = try? FieldReader(function).string("name") else {
                throw .invalidRequest("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}.", param: "tool_choice")
            }
            try checkFunctionName(name, param: "tool_choice.function.name")
        default:
            throw .invalidRequest("'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}.", param: "tool_choice")
        }
    }

    /// The images of one chat request as its messages are read.
    struct ChatImages {
        let policy: ImagePolicy
        let fetched: [String: [UInt8]]
        let acceptsImages: Bool
        let model: String
        var images: [RGBImage] = []
        /// Where each image came from (`messages[i].content[j]`), for errors found later.
        var params: [String] = []

        mutating func add(_ part: FieldReader, param: String) throws(APIError) {
            guard acceptsImages else {
                throw .invalidRequest("\(param) is an image, but '\(model)' takes text only.", param: param)
            }
            guard images.count < policy.maxImagesPerRequest else {
                throw .invalidRequest("\(param): at most \(policy.maxImagesPerRequest) images per request (limits.max_images_per_request).", param: param)
            }
            let url = try ImageInputs.url(of: part, param: param)
            images.append(try ImageInputs.image(url: url, param: param, policy: policy, fetched: fetched))
            params.append(param)
        }
    }

    /// The pixel budget of a request's images: `mm_processor_kwargs` (vLLM) or top-level `max_pixels` / `min_pixels`,
    /// within the server's `images.max_pixels`; else the server's, else the model's.
    func imageOptions(_ r: FieldReader) throws(APIError) -> ImageOptions {
        let bound = images.maxPixels ?? 2 * images.decodeLimits.maxPixels
        var options = ImageOptions(minPixels: images.minPixels, maxPixels: images.maxPixels)
        let kwargs = try r.value("mm_processor_kwargs").map { v throws(APIError) in try FieldReader(v) }
        for (reader, prefix) in [(kwargs, "mm_processor_kwargs."), (Optional(r), "")] {
            guard let reader else { continue }
            if let v = try reader.integer("max_pixels", in: 1 ... bound) {
                options.maxPixels = v
            }
            if let v = try reader.integer("min_pixels", in: 1 ... bound) {
                options.minPixels = v
            }
            _ = prefix
        }
        if let lo = options.minPixels, let hi = options.maxPixels, lo > hi {
            throw .invalidRequest("'min_pixels' (\(lo)) must not be over 'max_pixels' (\(hi)).", param: "min_pixels")
        }
        return options
    }

    static func chatMessage(_ message: JSON, index i: Int) throws(APIError) -> JinjaValue {
        var none = ChatImages(policy: ImagePolicy(), fetched: [:], acceptsImages: false, model: "this model")
        return try chatMessage(message, index: i, images: &none)
    }

    static func chatMessage(_ message: JSON, index i: Int, images: inout ChatImages) throws(APIError) -> JinjaValue {
        let param = "messages[\(i)]"
        guard case .object(let pairs) = message else {
            throw .invalidRequest("\(param) must be an object with 'role' and 'content'.", param: param)
        }
        let m = try FieldReader(message)
        guard let role = try m.string("role") else { throw .invalidRequest("\(param).role is required.", param: "\(param).role") }
        guard ["system", "user", "assistant", "tool", "developer", "function", "observation"].contains(role) else {
            throw .invalidRequest("\(param).role must be one of system, user, assistant, tool, developer (got '\(role)').", param: "\(param).role")
        }
        var out: [(String, JinjaValue)] = []
        var sawContent = false
        for (key, value) in pairs {
            if key == "content" {
                sawContent = true
                out.append(("content", try Self.content(value, param: "\(param).content", images: &images)))
            } else {
                out.append((key, value.jinja))
            }
        }
        if !sawContent {
            guard role == "assistant", m.value("tool_calls") != nil else {
                throw .invalidRequest("\(param).content is required.", param: "\(param).content")
            }
            out.append(("content", .string("")))
        }
        return .object(out)
    }

    /// Message content for the chat template: text as a string; with images, a list of `{"type": "image"}` and
    /// `{"type": "text", "text": ...}` items in order (what vision templates such as GLM-4.1V's iterate over).
    static func content(_ value: JSON, param: String, images: inout ChatImages) throws(APIError) -> JinjaValue {
        guard case .array(let parts) = value, parts.contains(where: { part in
            guard let p = try? FieldReader(part), let type = try? p.string("type") else { return false }
            return type == "image_url" || type == "image"
        }) else {
            return .string(try contentText(value, param: param))
        }
        var items: [JinjaValue] = []
        for (j, part) in parts.enumerated() {
            let p = try FieldReader(part)
            let partParam = "\(param)[\(j)]"
            switch try p.string("type") ?? "text" {
            case "text":
                guard let t = try p.string("text") else { throw .invalidRequest("\(partParam).text is required.", param: "\(partParam).text") }
                items.append(.object([("type", .string("text")), ("text", .string(t))]))
            case "image_url":
                try images.add(p, param: partParam)
                items.append(.object([("type", .string("image"))]))
            case let other:
                throw .invalidRequest("\(partParam) has type '\(other)'; this server takes text and image_url parts.", param: partParam)
            }
        }
        return .array(items)
    }

    /// Message content as text: a string, or a list of text parts joined.
    static func contentText(_ value: JSON, param: String) throws(APIError) -> String {
        switch value {
        case .null: return ""
        case .string(let s): return s
        case .array(let parts):
            var text = ""
            for (j, part) in parts.enumerated() {
                let p = try FieldReader(part)
                let type = try p.string("type") ?? "text"
                guard type == "text", let t = try p.string("text") else {
                    throw .invalidRequest("\(param)[\(j)] has type '\(type)'; this model takes text parts only.", param: "\(param)[\(j)]")
                }
                text += t
            }
            return text
        default:
            throw .invalidRequest("\(param) must be a string or a list of text parts, not \(value.typeName).", param: param)
        }
    }

    func completionJob(_ body: JSON, model: ServedModel, native: Bool = false) throws(APIError) -> Job {
        let r = try FieldReader(body)
        var parameters = try GenerationParameters(r, defaultTemperature: native ? 0 : 1)
        try parameters.checkVocabulary(model.backend.vocabularySize)
        guard let promptValue = r.value("prompt") else {
            throw .invalidRequest("'prompt' is required: a string, a list of strings, or token ids.", param: "prompt")
        }
        let addSpecial = try r.bool("add_special_tokens") ?? true
        var prompts: [Prompt] = []
        func ids(_ items: [JSON]) throws(APIError) -> [Int] {
            var out: [Int] = []
            for item in items {
                guard case .number(let d) = item, d == d.rounded(), d >= 0, d < Double(model.backend.vocabularySize) else {
                    throw .invalidRequest("'prompt' token ids must be integers in 0..<\(model.backend.vocabularySize).", param: "prompt")
                }
                out.append(Int(d))
            }
            return out
        }
        switch promptValue {
        case .string(let s):
            prompts = [Prompt(tokens: model.backend.encode(s, addSpecial: addSpecial), text: s)]
        case .array(let items) where items.allSatisfy({ if case .number = $0 { return true } else { return false } }):
            let t = try ids(items)
            prompts = [Prompt(tokens: t, text: model.backend.decode(t))]
        case .array(let items):
            for item in items {
                switch item {
                case .string(let s):
                    prompts.append(Prompt(tokens: model.backend.encode(s, addSpecial: addSpecial), text: s))
                case .array(let inner):
                    let t = try ids(inner)
                    prompts.append(Prompt(tokens: t, text: model.backend.decode(t)))
                default:
                    throw .invalidRequest("'prompt' must be a string, a list of strings, a list of token ids, or a list of such lists.", param: "prompt")
                }
            }
        default:
            throw .invalidRequest("'prompt' must be a string, a list of strings or token ids, not \(promptValue.typeName).", param: "prompt")
        }
        guard !prompts.isEmpty, prompts.count <= 64 else {
            throw .invalidRequest("'prompt' must hold between 1 and 64 prompts (got \(prompts.count)).", param: "prompt")
        }
        if let empty = prompts.firstIndex(where: { $0.tokens.isEmpty }) {
            throw .invalidRequest("Prompt \(empty) is empty: give at least one token.", param: "prompt")
        }
        // /generate returns no log-probabilities: it asks the engine for none.
        let top: Int? = native ? nil : (try r.integer("logprobs", in: 0 ... 20))
        var maxTokens = 0
        for p in prompts {
            maxTokens = max(maxTokens, try model.resolveMaxTokens(requested: parameters.maxTokens, promptTokens: p.tokens.count, param: "max_tokens"))
        }
        if parameters.maxTokens == nil {
            // Without max_tokens, OpenAI's legacy completions default is 16; vLLM fills the context.
            // Follow vLLM, bounded by every prompt's room.
            maxTokens = prompts.map { min(model.contextLength - $0.tokens.count, model.maxTokensLimit) }.min() ?? maxTokens
        }
        parameters.maxTokens = maxTokens
        return Job(kind: native ? .native : .completion, model: model, prompts: prompts, parameters: parameters,
                   maxTokens: maxTokens, logprobs: top != nil, topLogprobs: top ?? 0, echo: try r.bool("echo") ?? false,
                   id: (native ? "gen-" : "cmpl-") + Self.newID(), created: Self.now())
    }

    static func newID() -> String { UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "") }
    static func now() -> Int { Int(Date().timeIntervalSince1970) }

    // MARK: running

    /// One choice's stream of events from the scheduler.
    struct Choice {
        var index: Int
        var prompt: Prompt
        var requestID: String
        var events: AsyncStream<GenerationEvent>
    }

    /// Queues every choice of the job (prompts x n), or none: on a refusal the ones already queued are cancelled.
    func submit(_ job: Job) throws(APIError) -> [Choice] {
        let deadline = requestTimeout.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
        let firstTokenDeadline = firstTokenTimeout.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
        // echo + logprobs: the prompt's own log-probabilities lead the logprobs, as in OpenAI's legacy
        // completions (what lm-evaluation-harness's loglikelihood requests use).
        let promptLogprobs = job.kind == .completion && job.echo && job.logprobs ? job.topLogprobs : nil
        var choices: [Choice] = []
        for (p, prompt) in job.prompts.enumerated() {
            for i in 0 ..< job.parameters.n {
                let index = p * job.parameters.n + i
                let requestID = "\(job.id)-\(index)"
                var request = job.parameters.request(
                    id: requestID, prompt: prompt.tokens, maxTokens: job.maxTokens, logprobs: job.logprobs,
                    topLogprobs: job.topLogprobs, deadline: deadline, firstTokenDeadline: firstTokenDeadline,
                    promptLogprobs: promptLogprobs, choice: index)
                request.multimodal = job.multimodal
                do {
                    let events = try job.model.backend.submit(request)
                    choices.append(Choice(index: index, prompt: prompt, requestID: requestID, events: events))
                } catch {
                    for c in choices { job.model.backend.cancel(c.requestID) }
                    throw Self.apiError(error)
                }
            }
        }
        return choices
    }

    static func apiError(_ error: SchedulerError) -> APIError {
        switch error {
        case .queueFull(_, let retry): return .overloaded(error.description, retryAfter: retry)
        case .draining: return .unavailable(error.description, retryAfter: 5)
        case .contextOverflow, .exceedsCache: return .contextOverflow(error.description)
        case .emptyPrompt: return .invalidRequest(error.description, param: "prompt")
        case .invalidToken: return .invalidRequest(error.description, param: "prompt")
        case .engine: return .internalError(error.description)
        }
    }

    /// What one choice produced, for the one-shot response.
    struct ChoiceResult {
        var text = ""
        var tokens: [GeneratedToken] = []
        var outcome: GenerationOutcome?
        var failure: SchedulerError?
    }

    func collect(_ choice: Choice) async -> ChoiceResult {
        var result = ChoiceResult()
        for await event in choice.events {
            switch event {
            case .token(let t):
                result.text += t.text
                result.tokens.append(t)
            case .finished(let outcome):
                result.text += outcome.trailingText
                result.outcome = outcome
            case .failed(let error):
                result.failure = error
            }
        }
        return result
    }

    /// Runs every choice to the end and builds the one-shot body.
    func complete(_ job: Job, choices: [Choice]) async throws(APIError) -> any Encodable & Sendable {
        let results = await withTaskGroup(of: (Int, ChoiceResult).self) { group in
            for (slot, choice) in choices.enumerated() {
                group.addTask { (slot, await self.collect(choice)) }
            }
            var out = [ChoiceResult](repeating: ChoiceResult(), count: choices.count)
            for await (slot, r) in group { out[slot] = r }
            return out
        }
        for (slot, r) in results.enumerated() {
            if let outcome = r.outcome {
                RequestTracing.recordPhases(outcome, parent: job.note?.traceContext, model: job.model.name, choice: choices[slot].index)
            }
        }
        if let failure = results.compactMap(\.failure).first { throw Self.apiError(failure) }
        var promptTokens = 0
        var completionTokens = 0
        var cached = 0
        var seenPrompts = Set<Int>()
        var chatChoices: [ChatCompletion.Choice] = []
        var textChoices: [OpenAIAPI.Completion.Choice] = []
        for (slot, r) in results.enumerated() {
            let choice = choices[slot]
            let outcome = r.outcome
            let promptIndex = choice.index / job.parameters.n
            if seenPrompts.insert(promptIndex).inserted {
                promptTokens += choice.prompt.tokens.count
                cached += outcome?.cachedPromptTokens ?? 0
            }
            completionTokens += outcome?.completionTokens ?? 0
            let finish = Self.finishReason(outcome?.finishReason ?? .cancelled)
            switch job.kind {
            case .chat:
                chatChoices.append(ChatCompletion.Choice(
                    index: choice.index, message: .init(content: r.text),
                    logprobs: job.logprobs ? chatLogprobs(r.tokens, model: job.model) : nil, finishReason: finish))
            case .completion:
                let text = (job.echo ? choice.prompt.text : "") + r.text
                let logprobs = job.logprobs
                    ? completionLogprobs(r.tokens, model: job.model, offset: job.echo ? choice.prompt.text.utf8.count : 0,
                                         prompt: job.echo ? (choice.prompt.tokens, outcome?.promptLogprobs ?? []) : nil)
                    : nil
                textChoices.append(.init(index: choice.index, text: text, logprobs: logprobs, finishReason: finish))
            case .native:
                textChoices.append(.init(index: choice.index, text: r.text, finishReason: finish))
            }
        }
        let usage = Usage(promptTokens: promptTokens, completionTokens: completionTokens, cachedTokens: cached)
        job.note?.recordUsage(prompt: promptTokens, completion: completionTokens)
        switch job.kind {
        case .native:
            return NativeGeneration(id: job.id, model: job.model.name, text: textChoices.first?.text ?? "",
                                    finishReason: textChoices.first?.finishReason, choices: textChoices, usage: usage)
        case .chat:
            return ChatCompletion(id: job.id, created: job.created, model: job.model.name, choices: chatChoices, usage: usage)
        case .completion:
            return OpenAIAPI.Completion(id: job.id, created: job.created, model: job.model.name, choices: textChoices, usage: usage)
        }
    }

    static func finishReason(_ reason: FinishReason) -> String {
        switch reason {
        case .stop: return "stop"
        case .length: return "length"
        case .cancelled: return "abort"
        }
    }

    func chatLogprobs(_ tokens: [GeneratedToken], model: ServedModel) -> ChatLogprobs {
        ChatLogprobs(content: tokens.map { t in
            ChatLogprobs.Entry(token: model.tokenText(t.id), logprob: t.logprob ?? 0, bytes: model.backend.tokenBytes(t.id),
                               topLogprobs: t.topLogprobs.map {
                                   .init(token: model.tokenText($0.id), logprob: $0.logprob, bytes: model.backend.tokenBytes($0.id))
                               })
        })
    }

    /// OpenAI's completions logprobs. With `prompt` (echo), the prompt's tokens come first: the first
    /// has no log-probability (null), each later one its log-probability given the ones before it.
    func completionLogprobs(_ tokens: [GeneratedToken], model: ServedModel, offset: Int,
                            prompt: (tokens: [Int], logprobs: [PromptTokenLogprob])? = nil) -> CompletionLogprobs {
        var out = CompletionLogprobs()
        func top(_ alternatives: [SampledToken]) -> [(String, Float)] { alternatives.map { (model.tokenText($0.id), $0.logprob) } }
        if let prompt {
            var position = 0
            for (i, id) in prompt.tokens.enumerated() {
                let entry = i > 0 && i - 1 < prompt.logprobs.count ? prompt.logprobs[i - 1] : nil
                let text = model.tokenText(id)
                out.append(token: text, logprob: entry?.logprob, top: entry.map { top($0.topLogprobs) }, offset: position)
                position += text.utf8.count
            }
        }
        var position = offset
        for t in tokens {
            out.append(token: model.tokenText(t.id), logprob: t.logprob ?? 0, top: top(t.topLogprobs), offset: position)
            position += t.text.utf8.count
        }
        return out
    }
}

/// The native `/generate` body: the first choice's text and finish reason at the top, every choice,
/// and usage.
struct NativeGeneration: Encodable, Sendable {
    var id: String
    var model: String
    var text: String
    var finishReason: String?
    var choices: [OpenAIAPI.Completion.Choice]
    var usage: Usage

    enum CodingKeys: String, CodingKey { case id, model, text, finishReason = "finish_reason", choices, usage }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(model, forKey: .model)
        try c.encode(text, forKey: .text)
        try c.encode(finishReason, forKey: .finishReason)
        try c.encode(choices, forKey: .choices)
        try c.encode(usage, forKey: .usage)
    }
}
