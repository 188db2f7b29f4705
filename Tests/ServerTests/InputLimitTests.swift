import Engine
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import InferenceCore
import NIOCore
import OpenAIAPI
import Prometheus
@testable import Server
import Serving
import Testing
import Tokenizer
#if canImport(Glibc)
import Glibc
#endif

/// Bodies over the limit, `Expect: 100-continue`, and fields OpenAI refuses that were once accepted.
@Suite("Input limits: body size, 100-continue, logit_bias, tools, logprob bytes", .serialized, .timeLimit(.minutes(5)))
struct InputLimitTests {
    static func app(maxBodyBytes: Int = 1 << 20, shape: InputShape = InputShape(), audit: AuditLog? = nil) throws -> some ApplicationProtocol {
        let pool = LocalModelPool(loaded: [])
        let registry = PrometheusCollectorRegistry()
        let releases = ReleaseController(versions: [(RolloutTests.version("m", "v1", pool: pool, backend: ScriptedBackend(), first: true), nil)],
                                         locals: pool, upstreams: nil, policy: RolloutPolicy(), prometheus: registry)
        var options = ServerOptions()
        options.maxBodyBytes = maxBodyBytes
        options.inputShape = shape
        options.access = AccessSetup(audit: audit)
        return try AutoGLMServer.application(locals: pool, metrics: [:], registry: registry, options: options,
                                             logger: RolloutTests.logger(), releases: releases)
    }

    /// A blocking TCP exchange with 127.0.0.1:port: sends `head`, reads what arrives within `wait` seconds,
    /// then sends `body` (if any) and reads the rest until the server closes or `wait` passes.
    static func exchange(port: Int, head: String, body: [UInt8]? = nil, wait: Double = 5) -> (first: String, rest: String, sendFailed: Bool) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return ("connect failed", "", true) }
        var timeout = timeval(tv_sec: Int(wait), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        func sendAll(_ bytes: [UInt8]) -> Bool {
            var sent = 0
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return false }
                sent += n
            }
            return true
        }
        func readSome() -> String {
            var buffer = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &buffer, buffer.count, 0)
            return n > 0 ? String(decoding: buffer[0 ..< n], as: UTF8.self) : ""
        }
        func readToEnd() -> String {
            var out = ""
            while true {
                let chunk = readSome()
                if chunk.isEmpty { return out }
                out += chunk
            }
        }
        _ = sendAll(Array(head.utf8))
        let first = readSome()
        var failed = false
        if let body { failed = !sendAll(body) }
        return (first, readToEnd(), failed)
    }

    @Test("a Content-Length over the limit: 413 in OpenAI's shape at once, before the body is sent, and the server serves on; the audit log has it")
    func oversizedDeclared() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("autoglm-413-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let auditPath = directory.appendingPathComponent("audit.jsonl").path
        try await Self.app(audit: try AuditLog(path: auditPath)).test(.live) { client in
            let port = try #require(client.port)
            let head = "POST /v1/chat/completions?x=secret HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(64 << 20)\r\n\r\n"
            let started = ContinuousClock.now
            let (first, rest, _) = Self.exchange(port: port, head: head, wait: 10)
            let answer = first + rest
            #expect(answer.hasPrefix("HTTP/1.1 413"), "\(answer.prefix(200))")
            #expect(answer.lowercased().contains("connection: close"))
            #expect(answer.contains(#""code":"request_too_large""#) && answer.contains(#""type":"invalid_request_error""#))
            #expect(ContinuousClock.now - started < .seconds(10))
            let after = try await client.execute(uri: "/health", method: .get)
            #expect(after.status == .ok)
        }
        // The refusal never reached the router; the handler wrote its line (no principal, no query), chained.
        let contents = [UInt8](try #require(FileManager.default.contents(atPath: auditPath)))
        #expect(AuditLog.verify(contents: contents).broken == nil)
        let lines = String(decoding: contents, as: UTF8.self).split(separator: "\n")
        let refused = try #require(lines.first { $0.contains(#""decision":"body_too_large""#) })
        #expect(refused.contains(#""status":413"#) && refused.contains(#""route":"/v1/chat/completions""#) && !refused.contains("secret"),
                "\(refused)")
        #expect(!refused.contains(#""principal""#))
    }

    @Test("a body that is sent anyway (no Expect) gets its 413 answer, not a reset")
    func oversizedSent() async throws {
        try await Self.app(maxBodyBytes: 1 << 16).test(.live) { client in
            let port = try #require(client.port)
            let body = [UInt8](repeating: UInt8(ascii: "a"), count: 4 << 20)
            let head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n\r\n"
            let (first, rest, _) = Self.exchange(port: port, head: head + String(repeating: "a", count: 1000), body: Array(body.dropFirst(1000)), wait: 10)
            #expect((first + rest).hasPrefix("HTTP/1.1 413"), "\((first + rest).prefix(200))")
        }
    }

    @Test("a chunked body that grows past the limit gets 413 from the handler and the connection closes")
    func oversizedChunked() async throws {
        try await Self.app(maxBodyBytes: 1 << 16).test(.live) { client in
            let port = try #require(client.port)
            let chunk = String(repeating: "a", count: 32 << 10)
            let chunked = (0 ..< 4).map { _ in String(32 << 10, radix: 16) + "\r\n" + chunk + "\r\n" }.joined() + "0\r\n\r\n"
            let head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            let (first, rest, _) = Self.exchange(port: port, head: head + chunked, wait: 10)
            let answer = first + rest
            #expect(answer.contains("HTTP/1.1 413"), "\(answer.prefix(200))")
            #expect(answer.contains(#""code":"request_too_large""#))
        }
    }

    @Test("Expect: 100-continue gets 100 Continue at once; the request then completes")
    func expectContinue() async throws {
        try await Self.app().test(.live) { client in
            let port = try #require(client.port)
            let body = Array(#"{"model":"m","prompt":"hi","max_tokens":2}"#.utf8)
            let head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
            let (first, rest, _) = Self.exchange(port: port, head: head, body: body, wait: 5)
            #expect(first.hasPrefix("HTTP/1.1 100 Continue"), "\(first.prefix(100))")
            #expect((first + rest).contains("HTTP/1.1 200 OK") && (first + rest).contains(#""object":"text_completion""#))
        }
    }

    @Test("logit_bias: keys must be token ids in the vocabulary, values -100...100; tools and tool_choice as OpenAI's shape")
    func fieldShapes() async throws {
        try await Self.app().test(.router) { client in
            func post(_ path: String, _ body: String) async throws -> (Int, String?) {
                let r = try await ServerTests.post(client, path, body)
                return (Int(r.status.code), r.status == .ok ? nil : try ServerTests.errorBody(r)["param"] as? String)
            }
            let chat = #""model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2"#
            for (bias, ok) in [(#"{"abc": 1000}"#, false), (#"{"5": 101}"#, false), (#"{"5": "x"}"#, false), (#"{"-1": 5}"#, false),
                               (#"{"100": 5}"#, false), (#"{"05": 5}"#, false), (#"[1]"#, false), (#"{"5": -100, "7": 100}"#, true), ("null", true)] {
                let (status, param) = try await post("/v1/completions", #"{"model":"m","prompt":"hi","max_tokens":2,"logit_bias":\#(bias)}"#)
                #expect(ok ? status == 200 : (status == 400 && param == "logit_bias"), "logit_bias \(bias): \(status)")
            }
            let tools: [(String, Bool, String?)] = [
                (#"[{"type":"function","function":123}]"#, false, "tools[0].function"),
                (#"[{"type":"function"}]"#, false, "tools[0].function"),
                (#"[{"type":"retrieval","function":{"name":"f"}}]"#, false, "tools[0].type"),
                (#"[{"type":"function","function":{"name":"has space"}}]"#, false, "tools[0].function.name"),
                (#"[{"type":"function","function":{"name":"f","parameters":"x"}}]"#, false, "tools[0].function.parameters"),
                (#"[{"type":"function","function":{"name":"f","description":3}}]"#, false, "tools[0].function.description"),
                (#"[5]"#, false, "tools[0]"),
                (#"{"a":1}"#, false, "tools"),
                (#"[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object"},"strict":true}}]"#, true, nil),
            ]
            for (value, ok, expected) in tools {
                let (status, param) = try await post("/v1/chat/completions", "{\(chat),\"tools\":\(value)}")
                #expect(ok ? status == 200 : (status == 400 && param == expected), "tools \(value): \(status) \(param ?? "")")
            }
            for (choice, ok) in [(#""auto""#, true), (#""sometimes""#, false), (#"{"type":"function","function":{"name":"f"}}"#, true),
                                 (#"{"type":"function"}"#, false), ("7", false)] {
                let (status, param) = try await post("/v1/chat/completions", "{\(chat),\"tool_choice\":\(choice)}")
                #expect(ok ? status == 200 : (status == 400 && param == "tool_choice"), "tool_choice \(choice): \(status)")
            }
        }
    }

    @Test("messages past limits.max_messages and strings past limits.max_string_length: 400 naming the field, OpenAI's codes")
    func messageAndStringLimits() async throws {
        try await Self.app(shape: InputShape(maxMessages: 4, maxStringLength: 50)).test(.router) { client in
            func post(_ path: String, _ body: String) async throws -> (Int, String?, String?) {
                let r = try await ServerTests.post(client, path, body)
                guard r.status != .ok else { return (200, nil, nil) }
                let error = try ServerTests.errorBody(r)
                return (Int(r.status.code), error["param"] as? String, error["code"] as? String)
            }
            let message = #"{"role":"user","content":"hi"}"#
            func chat(_ messages: [String], extra: String = "") -> String {
                #"{"model":"m","max_tokens":2,"messages":[\#(messages.joined(separator: ","))]\#(extra)}"#
            }
            // At the limit: served. One more: refused, the field and the limit named.
            #expect(try await post("/v1/chat/completions", chat(Array(repeating: message, count: 4))).0 == 200)
            let five = try await ServerTests.post(client, "/v1/chat/completions", chat(Array(repeating: message, count: 5)))
            #expect(five.status == .badRequest)
            let error = try ServerTests.errorBody(five)
            #expect(error["param"] as? String == "messages" && error["code"] as? String == "array_above_max_length")
            #expect((error["message"] as? String)?.contains("maximum length 4, but got an array with length 5") == true)
            // A list prompt is held to the same count; /tokenize's messages too.
            let prompts = "[" + Array(repeating: #""a""#, count: 5).joined(separator: ",") + "]"
            #expect(try await post("/v1/completions", #"{"model":"m","max_tokens":1,"prompt":\#(prompts)}"#) == (400, "prompt", "array_above_max_length"))
            #expect(try await post("/tokenize", #"{"model":"m","messages":[\#(Array(repeating: message, count: 5).joined(separator: ","))]}"#).1 == "messages")
            // Strings: 50 characters (not bytes: 50 'é' are 100 bytes) pass; 51 are refused by their path.
            let fifty = String(repeating: "é", count: 50), fiftyOne = String(repeating: "x", count: 51)
            #expect(try await post("/v1/chat/completions", chat([#"{"role":"user","content":"\#(fifty)"}"#])).0 == 200)
            #expect(try await post("/v1/chat/completions", chat([message, #"{"role":"user","content":"\#(fiftyOne)"}"#]))
                == (400, "messages[1].content", "string_above_max_length"))
            #expect(try await post("/v1/chat/completions", chat([#"{"role":"user","content":[{"type":"text","text":"\#(fiftyOne)"}]}"#]))
                == (400, "messages[0].content[0].text", "string_above_max_length"))
            #expect(try await post("/v1/completions", #"{"model":"m","max_tokens":1,"prompt":"\#(fiftyOne)"}"#) == (400, "prompt", "string_above_max_length"))
            #expect(try await post("/v1/completions", #"{"model":"m","max_tokens":1,"prompt":"hi","stop":["\#(fiftyOne)"]}"#)
                == (400, "stop[0]", "string_above_max_length"))
            #expect(try await post("/v1/chat/completions", chat([message], extra: #","user":"\#(fiftyOne)""#)) == (400, "user", "string_above_max_length"))
            // A prompt of token ids is one prompt, not a list of prompts.
            #expect(try await post("/v1/completions", #"{"model":"m","max_tokens":1,"prompt":[1,2,3,4,5,6]}"#).0 == 200)
            // Content parts are counted like messages; keys are strings too.
            let parts = "[" + Array(repeating: #"{"type":"text","text":"a"}"#, count: 5).joined(separator: ",") + "]"
            #expect(try await post("/v1/chat/completions", chat([#"{"role":"user","content":\#(parts)}"#]))
                == (400, "messages[0].content", "array_above_max_length"))
            let longKey = String(repeating: "k", count: 51)
            let keyed = try await post("/v1/chat/completions", chat([message], extra: #","chat_template_kwargs":{"\#(longKey)":1}"#))
            #expect(keyed.0 == 400 && keyed.2 == "string_above_max_length" && (keyed.1?.hasPrefix("chat_template_kwargs.kkk") ?? false), "\(keyed)")
            // "image_url" elsewhere than a message's image part is an ordinary key: its string is counted.
            let smuggled = #","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","image_url":"\#(fiftyOne)"}}}]"#
            #expect(try await post("/v1/chat/completions", chat([message], extra: smuggled))
                == (400, "tools[0].function.parameters.image_url", "string_above_max_length"))
            // An image URL is not a string the limit counts (limits.max_image_bytes bounds it): this text-only model
            // refuses the image itself, not its length.
            let image = #"{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,\#(String(repeating: "A", count: 80))"}}]}"#
            let (status, param, code) = try await post("/v1/chat/completions", chat([image]))
            #expect(status == 400 && code != "string_above_max_length", "\(status) \(param ?? "") \(code ?? "")")
        }
    }

    @Test("the sampler adds logit_bias after the penalties: -100 bans the best token, +100 forces another")
    func samplerBias() {
        let logits: [Float] = [0.5, 3.0, 1.0, 2.9]
        var greedy = Sampler(SamplingParameters())
        #expect(greedy.sample(logits[...]).id == 1)
        var banned = Sampler(SamplingParameters(logitBias: [1: -100]))
        #expect(banned.sample(logits[...]).id == 3)
        var forced = Sampler(SamplingParameters(logitBias: [0: 100]))
        #expect(forced.sample(logits[...]).id == 0)
    }

    @Test("log-probabilities' bytes are a token's own bytes, also when it holds part of a UTF-8 character")
    func logprobBytes() throws {
        let h = try ServerTests.harness(start: false)
        defer { h.model.backend.shutdown() }
        let text = "🙂 é"
        let ids = h.tokenizer.encode(text, addSpecial: false)
        let pieces = ids.map { h.model.backend.tokenBytes($0) }
        #expect(pieces.flatMap { $0 } == Array(text.utf8))
        #expect(pieces.contains { String(validating: $0, as: UTF8.self) == nil }, "no token of \(ids) splits a character; the test needs one that does")
        let api = CompletionsAPI(models: ModelRegistry([h.model]), requestTimeout: nil)
        let logprobs = api.chatLogprobs(ids.map { GeneratedToken(id: $0, text: "", logprob: -0.5, topLogprobs: [SampledToken(id: $0, logprob: -0.5)]) },
                                        model: h.model)
        #expect(logprobs.content.map { $0.bytes ?? [] } == pieces)
        #expect(logprobs.content.map { $0.topLogprobs.first?.bytes ?? [] } == pieces)
    }
}
