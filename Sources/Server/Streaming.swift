import Foundation
import HTTPTypes
import Hummingbird
import InferenceCore
import NIOCore
import Serving

extension CompletionsAPI {
    /// The response body of a streamed job: server-sent events in OpenAI's chunk shapes, ending in
    /// `data: [DONE]`. A client that goes away (a failed write) cancels every choice, which frees
    /// their KV blocks at the next engine step.
    func stream(_ job: Job, choices: [Choice]) -> Response {
        var headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        let body = ResponseBody { writer in
            let merged = Self.merge(choices)
            var completionTokens = 0
            var promptTokens = 0
            var cached = 0
            var finishedPrompts = Set<Int>()
            // echo + logprobs: a choice's echoed prompt waits for its first token, which brings the
            // prompt's log-probabilities; plain echo goes first.
            let echoWithLogprobs = job.kind == .completion && job.echo && job.logprobs
            var echoed = Set<Int>()
            func echo(_ choice: Choice, _ promptLogprobs: [PromptTokenLogprob]) -> JSON {
                .object(header(job) + [("choices", .array([.object([
                    ("index", .int(choice.index)), ("text", .string(choice.prompt.text)),
                    ("logprobs", completionLogprobs([], model: job.model, offset: 0, prompt: (choice.prompt.tokens, promptLogprobs))),
                    ("finish_reason", .null),
                ])]))])
            }
            do {
                // Opening chunks: the assistant role (chat) or the echoed prompt (completions).
                for choice in choices {
                    if job.kind == .chat {
                        try await writer.write(Self.event(chunk(job, choice: choice.index, delta: .object([("role", .string("assistant")), ("content", .string(""))]))))
                    } else if job.kind == .completion && job.echo && !echoWithLogprobs {
                        try await writer.write(Self.event(chunk(job, choice: choice.index, text: choice.prompt.text)))
                    }
                }
                for await (slot, event) in merged {
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
                let usage = Self.usage(prompt: promptTokens, completion: completionTokens, cached: cached)
                if job.kind == .native {
                    try await writer.write(Self.event(.object([("id", .string(job.id)), ("usage", usage)])))
                } else if job.parameters.includeUsage {
                    try await writer.write(Self.event(.object(header(job) + [("choices", .array([])), ("usage", usage)])))
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

    static func event(_ json: JSON) -> ByteBuffer {
        ByteBuffer(string: "data: " + json.text + "\n\n")
    }

    func header(_ job: Job) -> [(String, JSON)] {
        let object = job.kind == .chat ? "chat.completion.chunk" : "text_completion"
        return [("id", .string(job.id)), ("object", .string(object)), ("created", .int(job.created)), ("model", .string(job.model.name))]
    }

    /// A chunk for one choice: new text (or none), its token's logprobs, or the finish reason.
    func chunk(_ job: Job, choice: Int, text: String?, token: GeneratedToken? = nil, finish: FinishReason? = nil) -> JSON {
        let finishJSON: JSON = finish.map { .string(Self.finishReason($0)) } ?? .null
        switch job.kind {
        case .chat:
            let delta: JSON = text.map { .object([("content", .string($0))]) } ?? .object([])
            var logprobs: JSON = .null
            if job.logprobs, let token { logprobs = chatLogprobs([token], model: job.model) }
            return chunk(job, choice: choice, delta: delta, logprobs: logprobs, finish: finishJSON)
        case .completion:
            var logprobs: JSON = .null
            if job.logprobs, let token { logprobs = completionLogprobs([token], model: job.model, offset: 0) }
            return .object(header(job) + [("choices", .array([.object([
                ("index", .int(choice)), ("text", .string(text ?? "")), ("logprobs", logprobs), ("finish_reason", finishJSON),
            ])]))])
        case .native:
            return .object([("index", .int(choice)), ("text", .string(text ?? "")), ("finish_reason", finishJSON)])
        }
    }

    func chunk(_ job: Job, choice: Int, delta: JSON, logprobs: JSON = .null, finish: JSON = .null) -> JSON {
        .object(header(job) + [("choices", .array([.object([
            ("index", .int(choice)), ("delta", delta), ("logprobs", logprobs), ("finish_reason", finish),
        ])]))])
    }

    /// The events of all choices as one sequence, tagged with the choice's position.
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
