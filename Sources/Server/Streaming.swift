import Foundation
import HTTPTypes
import Hummingbird
import InferenceCore
import NIOCore
import OpenAIAPI
import Serving

extension CompletionsAPI {
    /// The response body of a streamed job: server-sent events in OpenAI's chunk shapes, ending in
    /// `data: [DONE]`. A client that goes away (a failed write) cancels every choice, which frees
    /// their KV blocks at the next engine step.
    func stream(_ job: Job, choices: [Choice]) -> Response {
        var headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        let heartbeat = heartbeatSeconds
        let body = ResponseBody { writer in
            let merged = Self.withHeartbeats(Self.merge(choices), every: heartbeat)
            var lastWrite = ContinuousClock.now
            var completionTokens = 0
            var promptTokens = 0
            var cached = 0
            var finishedPrompts = Set<Int>()
            // echo + logprobs: a choice's echoed prompt waits for its first token, which brings the
            // prompt's log-probabilities; plain echo goes first.
            let echoWithLogprobs = job.kind == .completion && job.echo && job.logprobs
            var echoed = Set<Int>()
            func echo(_ choice: Choice, _ promptLogprobs: [PromptTokenLogprob]) -> OpenAIAPI.Completion {
                OpenAIAPI.Completion(id: job.id, created: job.created, model: job.model.name, choices: [.init(
                    index: choice.index, text: choice.prompt.text,
                    logprobs: completionLogprobs([], model: job.model, offset: 0, prompt: (choice.prompt.tokens, promptLogprobs)))])
            }
            do {
                // Opening chunks: the assistant role (chat) or the echoed prompt (completions).
                for choice in choices {
                    if job.kind == .chat {
                        try await writer.write(Self.event(chatChunk(job, choice: choice.index, delta: .init(role: "assistant", content: ""))))
                    } else if job.kind == .completion && job.echo && !echoWithLogprobs {
                        try await writer.write(Self.event(chunk(job, choice: choice.index, text: choice.prompt.text)))
                    }
                }
                for await item in merged {
                    guard case .event(let slot, let event) = item else {
                        // Silence (a long prefill, images being encoded): an SSE comment keeps clients and proxies waiting.
                        if ContinuousClock.now - lastWrite >= .milliseconds(Int64(heartbeat * 900)) {
                            try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                            lastWrite = .now
                        }
                        continue
                    }
                    lastWrite = .now
                    let choice = choices[slot]
                    if echoWithLogprobs, !echoed.contains(slot) {
                        switch event {
                        case .token(let token):
                            echoed.insert(slot)
                            try await writer.write(Self.event(echo(choice, token.promptLogprobs ?? [])))
                        case .finished(let outcome):
                            echoed.insert(slot)
                            try await writer.write(Self.event(echo(choice, outcome.promptLogprobs)))
                        case .failed:
                            break
                        }
                    }
                    switch event {
                    case .token(let token):
                        guard !token.text.isEmpty || job.logprobs else { continue }
                        try await writer.write(Self.event(chunk(job, choice: choice.index, text: token.text, token: token)))
                    case .finished(let outcome):
                        RequestTracing.recordPhases(outcome, parent: job.note?.traceContext, model: job.model.name, choice: choice.index)
                        if !outcome.trailingText.isEmpty {
                            try await writer.write(Self.event(chunk(job, choice: choice.index, text: outcome.trailingText)))
                        }
                        completionTokens += outcome.completionTokens
                        if finishedPrompts.insert(choice.index / job.parameters.n).inserted {
                            promptTokens += outcome.promptTokens
                            cached += outcome.cachedPromptTokens
                        }
                        try await writer.write(Self.event(chunk(job, choice: choice.index, text: nil, finish: outcome.finishReason)))
                    case .failed(let error):
                        try await writer.write(Self.event(Self.apiError(error).body))
                    }
                }
                let usage = Usage(promptTokens: promptTokens, completionTokens: completionTokens, cachedTokens: cached)
                job.note?.recordUsage(prompt: promptTokens, completion: completionTokens)
                switch job.kind {
                case .native:
                    try await writer.write(Self.event(NativeUsage(id: job.id, usage: usage)))
                case .chat where job.parameters.includeUsage:
                    try await writer.write(Self.event(ChatCompletionChunk(id: job.id, created: job.created, model: job.model.name,
                                                                          choices: [], usage: usage)))
                case .completion where job.parameters.includeUsage:
                    try await writer.write(Self.event(OpenAIAPI.Completion(id: job.id, created: job.created, model: job.model.name,
                                                                           choices: [], usage: usage)))
                default:
                    break
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                for c in choices { job.model.backend.cancel(c.requestID) }
                throw error
            }
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    static func event(_ value: some Encodable) -> ByteBuffer {
        ByteBuffer(string: "data: " + OpenAIJSON.text(value) + "\n\n")
    }

    /// A chunk for one choice: new text (or none), its token's logprobs, or the finish reason.
    func chunk(_ job: Job, choice: Int, text: String?, token: GeneratedToken? = nil, finish: FinishReason? = nil) -> any Encodable & Sendable {
        let finishReason = finish.map(Self.finishReason)
        switch job.kind {
        case .chat:
            var logprobs: ChatLogprobs?
            if job.logprobs, let token { logprobs = chatLogprobs([token], model: job.model) }
            return chatChunk(job, choice: choice, delta: .init(content: text), logprobs: logprobs, finish: finishReason)
        case .completion:
            var logprobs: CompletionLogprobs?
            if job.logprobs, let token { logprobs = completionLogprobs([token], model: job.model, offset: 0) }
            return OpenAIAPI.Completion(id: job.id, created: job.created, model: job.model.name, choices: [.init(
                index: choice, text: text ?? "", logprobs: logprobs, finishReason: finishReason)])
        case .native:
            return NativeChunk(index: choice, text: text ?? "", finishReason: finishReason)
        }
    }

    func chatChunk(_ job: Job, choice: Int, delta: ChatCompletionChunk.Delta, logprobs: ChatLogprobs? = nil,
                   finish: String? = nil) -> ChatCompletionChunk {
        ChatCompletionChunk(id: job.id, created: job.created, model: job.model.name, choices: [.init(
            index: choice, delta: delta, logprobs: logprobs, finishReason: finish)])
    }

    /// The events of all choices as one sequence, tagged with the choice's position.
    enum StreamItem: Sendable {
        case event(Int, GenerationEvent)
        case heartbeat
    }

    /// The events, with a `heartbeat` every `seconds` in between.
    static func withHeartbeats(_ events: AsyncStream<(Int, GenerationEvent)>, every seconds: Double) -> AsyncStream<StreamItem> {
        AsyncStream { continuation in
            let pump = Task {
                for await (slot, event) in events { continuation.yield(.event(slot, event)) }
                continuation.finish()
            }
            let ticker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                    if Task.isCancelled { break }
                    continuation.yield(.heartbeat)
                }
            }
            continuation.onTermination = { _ in
                pump.cancel()
                ticker.cancel()
            }
        }
    }

    static func merge(_ choices: [Choice]) -> AsyncStream<(Int, GenerationEvent)> {
        if choices.count == 1 {
            let events = choices[0].events
            return AsyncStream { continuation in
                let task = Task {
                    for await e in events { continuation.yield((0, e)) }
                    continuation.finish()
                }
                continuation.onTermination = { _ in task.cancel() }
            }
        }
        return AsyncStream { continuation in
            let task = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (slot, choice) in choices.enumerated() {
                        group.addTask {
                            for await e in choice.events { continuation.yield((slot, e)) }
                        }
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// A streamed event of the native `/generate`: one choice's new text, or its finish reason.
struct NativeChunk: Encodable, Sendable {
    var index: Int
    var text: String
    var finishReason: String?
    enum CodingKeys: String, CodingKey { case index, text, finishReason = "finish_reason" }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        try c.encode(finishReason, forKey: .finishReason)
    }
}

/// The last event of a streamed `/generate`: the request's usage.
struct NativeUsage: Encodable, Sendable {
    var id: String
    var usage: Usage
}
