import AsyncHTTPClient
import Foundation
import InferenceCore
import NIOCore
import NIOHTTP1
import OpenAIAPI
public import Serving

/// Golden prompts a new version must answer before it takes any traffic (models[].self_test): each
/// is generated greedily and checked against the expected text, token ids or regular expression, and
/// against a latency bound.
public struct SelfTest: Sendable, Equatable {
    public struct Case: Sendable, Equatable {
        public var prompt: String
        /// The prompt is a user message rendered by the model's chat template (else raw text).
        public var chat: Bool
        /// The generated text, exactly.
        public var expect: String?
        /// A regular expression the generated text must match (anywhere).
        public var expectRegex: String?
        /// The generated token ids (local versions).
        public var expectTokens: [Int]?
        public var maxTokens: Int
        public var maxLatencySeconds: Double

        public init(prompt: String, chat: Bool = false, expect: String? = nil, expectRegex: String? = nil, expectTokens: [Int]? = nil,
                    maxTokens: Int = 16, maxLatencySeconds: Double = 60) {
            self.prompt = prompt
            self.chat = chat
            self.expect = expect
            self.expectRegex = expectRegex
            self.expectTokens = expectTokens
            self.maxTokens = maxTokens
            self.maxLatencySeconds = maxLatencySeconds
        }
    }

    public var cases: [Case]

    public init(cases: [Case] = []) { self.cases = cases }

    /// Why a version failed its self-test.
    public struct Failure: Error, CustomStringConvertible {
        public let index: Int
        public let reason: String
        public var description: String { "self-test prompt \(index + 1): \(reason)" }
    }

    /// What one prompt produced.
    struct Answer {
        var text: String
        var tokens: [Int]?
        var seconds: Double
    }

    /// Checks one answer against its case.
    static func check(_ c: Case, _ a: Answer, index: Int) throws(Failure) {
        if a.seconds > c.maxLatencySeconds {
            throw Failure(index: index, reason: String(format: "took %.2f s, above its bound of %.2f s", a.seconds, c.maxLatencySeconds))
        }
        if let expect = c.expect, a.text != expect {
            throw Failure(index: index, reason: "expected \(Self.quote(expect)), got \(Self.quote(a.text))")
        }
        if let pattern = c.expectRegex {
            guard let regex = try? NSRegularExpression(pattern: pattern) else {
                throw Failure(index: index, reason: "expect_regex \(Self.quote(pattern)) is not a regular expression")
            }
            let range = NSRange(a.text.startIndex..., in: a.text)
            if regex.firstMatch(in: a.text, range: range) == nil {
                throw Failure(index: index, reason: "\(Self.quote(a.text)) does not match \(Self.quote(pattern))")
            }
        }
        if let expected = c.expectTokens {
            guard let tokens = a.tokens else {
                throw Failure(index: index, reason: "expect_tokens needs a local version (an upstream returns text)")
            }
            if tokens != expected { throw Failure(index: index, reason: "expected tokens \(expected), got \(tokens)") }
        }
    }

    static func quote(_ s: String) -> String {
        let short = s.count > 120 ? String(s.prefix(120)) + "…" : s
        return "\"" + short.replacingOccurrences(of: "\n", with: "\\n") + "\""
    }

    /// Runs every prompt against a loaded local model (started); the first failure is thrown.
    public func run(on model: ServedModel) async throws(Failure) {
        for (i, c) in cases.enumerated() {
            let answer = try await Self.generate(c, model: model, index: i)
            try Self.check(c, answer, index: i)
        }
    }

    static func generate(_ c: Case, model: ServedModel, index: Int) async throws(Failure) -> Answer {
        let backend = model.backend
        let prompt: [Int]
        if c.chat {
            let message = JinjaValue.object([("role", .string("user")), ("content", .string(c.prompt))])
            do {
                prompt = backend.tokens(forRenderedChat: try backend.renderChat([message], extra: [:], addGenerationPrompt: true))
            } catch {
                throw Failure(index: index, reason: "the chat template failed: \(error)")
            }
        } else {
            prompt = backend.encode(c.prompt, addSpecial: true)
        }
        let start = ContinuousClock.now
        let request = GenerationRequest(id: "self-test-\(UUID().uuidString.prefix(8))-\(index)", promptTokens: prompt, sampling: .greedy,
                                        stop: StopCondition(maxTokens: c.maxTokens),
                                        deadline: start + .milliseconds(Int64(c.maxLatencySeconds * 1000)))
        let events: AsyncStream<GenerationEvent>
        do {
            events = try backend.submit(request)
        } catch {
            throw Failure(index: index, reason: "the engine refused the prompt: \(error)")
        }
        var text = "", tokens: [Int] = []
        for await event in events {
            switch event {
            case .token(let t):
                text += t.text
                tokens.append(t.id)
            case .finished(let outcome):
                text += outcome.trailingText
            case .failed(let error):
                throw Failure(index: index, reason: "the engine failed: \(error)")
            }
        }
        return Answer(text: text, tokens: tokens, seconds: ServedVersion.seconds(ContinuousClock.now - start))
    }

    /// Runs every prompt against each endpoint of an upstream model (/completions, or /chat/completions
    /// for chat prompts, temperature 0): every endpoint must pass.
    public func run(on model: UpstreamModel, client: HTTPClient) async throws(Failure) {
        for endpoint in model.endpoints {
            for (i, c) in cases.enumerated() {
                let answer = try await Self.ask(c, endpoint: endpoint, model: model.upstreamName ?? model.name, client: client, index: i)
                do {
                    try Self.check(c, answer, index: i)
                } catch {
                    throw Failure(index: i, reason: "\(UpstreamModel.redacted(endpoint.baseURL)): \(error.reason)")
                }
            }
        }
    }

    static func ask(_ c: Case, endpoint: UpstreamModel.Endpoint, model: String, client: HTTPClient, index: Int) async throws(Failure) -> Answer {
        let base = endpoint.baseURL.hasSuffix("/") ? String(endpoint.baseURL.dropLast()) : endpoint.baseURL
        var fields: [(String, JSON)] = [("model", .string(model)), ("max_tokens", .int(c.maxTokens)), ("temperature", .int(0))]
        if c.chat {
            fields.append(("messages", .array([.object([("role", .string("user")), ("content", .string(c.prompt))])])))
        } else {
            fields.append(("prompt", .string(c.prompt)))
        }
        var request = HTTPClientRequest(url: base + (c.chat ? "/chat/completions" : "/completions"))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key = endpoint.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(ByteBuffer(string: JSON.object(fields).text))
        let start = ContinuousClock.now
        let where_ = UpstreamModel.redacted(endpoint.baseURL)
        do {
            let response = try await client.execute(request, timeout: .milliseconds(Int64(c.maxLatencySeconds * 1000)))
            let body = try await response.body.collect(upTo: 4 << 20)
            guard response.status.code == 200 else {
                throw Failure(index: index, reason: "\(where_) answered \(response.status.code): \(String(buffer: body).prefix(200))")
            }
            let json = try JSON.parse(Array(body.readableBytesView))
            let choice = try FieldReader(json).value("choices").flatMap { if case .array(let a) = $0 { return a.first } else { return nil } }
            let reader = try choice.map { try FieldReader($0) }
            var text: String?
            if c.chat, let message = reader?.value("message") { text = try FieldReader(message).string("content") } else { text = try reader?.string("text") }
            guard let text else { throw Failure(index: index, reason: "\(where_) answered without a completion text") }
            return Answer(text: text, tokens: nil, seconds: ServedVersion.seconds(ContinuousClock.now - start))
        } catch let f as Failure {
            throw f
        } catch {
            throw Failure(index: index, reason: "\(where_) could not be asked: \(error)")
        }
    }
}
