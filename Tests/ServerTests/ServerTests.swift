import Engine
import Foundation
import GGUF
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import InferenceCore
import Logging
import NIOCore
import Prometheus
import Runtime
import Server
import Serving
import TestSupport
import Testing
import Tokenizer

/// The HTTP API on the default model, through Hummingbird's in-process router tester: shapes of
/// OpenAI's responses and errors, streaming, metrics, request ids, overload and draining.
@Suite("HTTP API on the default model", .serialized, .timeLimit(.minutes(10)))
struct ServerTests {
    static let shared: (any LanguageModel, Tokenizer)? = {
        guard let file = try? GGUFFile(path: Fixtures.defaultModelPath) else { return nil }
        guard let model = try? ArchitectureRegistry.load(file, threads: 1), let tokenizer = try? Tokenizer(gguf: file) else { return nil }
        return (model, tokenizer)
    }()

    struct Harness {
        let model: ServedModel
        let tokenizer: Tokenizer
        let metrics: ServerMetrics
        let registry: PrometheusCollectorRegistry
        let app: any ApplicationProtocol
    }

    static func harness(maxQueue: Int = 16, start: Bool = true, apiKeys: [String] = [], maxTokens: Int = 256,
                        options: ServerOptions = ServerOptions()) throws -> Harness {
        let (engine, tokenizer) = try #require(shared, "the default model is missing: run scripts/setup-model.sh")
        let registry = PrometheusCollectorRegistry()
        let metrics = ServerMetrics(registry: registry, model: "smol")
        let scheduler = Scheduler(model: engine, tokenizer: tokenizer,
                                  configuration: SchedulerConfiguration(maxSequences: 4, maxQueue: maxQueue, cacheTokens: 2048),
                                  contextLength: 512, observer: metrics)
        if start { scheduler.start() }
        let served = ServedModel(name: "smol", backend: LocalBackend(scheduler: scheduler), maxTokensLimit: maxTokens)
        var logger = Logger(label: "test")
        logger.logLevel = .error
        var serverOptions = options
        if !apiKeys.isEmpty { serverOptions.apiKeys = apiKeys }
        let app = try AutoGLMServer.application(models: [served], metrics: ["smol": metrics], registry: registry,
                                            options: serverOptions, logger: logger)
        return Harness(model: served, tokenizer: tokenizer, metrics: metrics, registry: registry, app: app)
    }

    static func json(_ response: TestResponse) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))
        return try #require(object as? [String: Any], "not a JSON object: \(String(buffer: response.body))")
    }

    static func post(_ client: some TestClientProtocol, _ uri: String, _ body: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        var h = headers
        h[.contentType] = "application/json"
        return try await client.execute(uri: uri, method: .post, headers: h, body: ByteBuffer(string: body))
    }

    /// `data:` payloads of an SSE body.
    static func events(_ response: TestResponse) -> [String] {
        String(buffer: response.body).components(separatedBy: "\n\n").compactMap { block in
            block.hasPrefix("data: ") ? String(block.dropFirst(6)) : nil
        }
    }

    static func errorBody(_ response: TestResponse) throws -> [String: Any] {
        try json(response).dict("error")
    }

    @Test("health, readiness and the model list")
    func probes() async throws {
        let h = try Self.harness()
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            let health = try await client.execute(uri: "/health", method: .get)
            #expect(health.status == .ok)
            #expect(try Self.json(health).string("status") == "ok")
            let status1 = try await client.execute(uri: "/ready", method: .get).status
            #expect(status1 == .ok)
            let models = try Self.json(try await client.execute(uri: "/v1/models", method: .get))
            #expect(models.string("object") == "list")
            let first = try #require(models.array("data").first as? [String: Any])
            #expect(first.string("id") == "smol")
            #expect(first.string("object") == "model")
            #expect(first.int("max_model_len") == 512)
        }
    }

    @Test("chat completion: OpenAI's shape, usage, greedy output equal to the same request streamed")
    func chat() async throws {
        let h = try Self.harness()
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            let body = #"{"model":"smol","messages":[{"role":"system","content":"You are brief."},{"role":"user","content":"What is the capital of France?"}],"max_tokens":16,"temperature":0}"#
            let response = try await Self.post(client, "/v1/chat/completions", body, headers: [HTTPField.Name("X-Request-Id")!: "abc-123"])
            #expect(response.status == .ok)
            #expect(response.headers[HTTPField.Name("X-Request-Id")!] == "abc-123")
            let j = try Self.json(response)
            #expect(j.string("object") == "chat.completion")
            #expect(j.string("model") == "smol")
            #expect((j.string("id") ?? "").hasPrefix("chatcmpl-"))
            let choice = try #require(j.array("choices").first as? [String: Any])
            #expect(choice.int("index") == 0)
            #expect(choice.dict("message").string("role") == "assistant")
            let content = try #require(choice.dict("message").string("content"))
            #expect(!content.isEmpty)
            #expect(["stop", "length"].contains(choice.string("finish_reason") ?? ""))
            let usage = j.dict("usage")
            let promptTokens = try #require(usage.int("prompt_tokens"))
            #expect(promptTokens > 10)
            #expect(usage.int("total_tokens") == promptTokens + (usage.int("completion_tokens") ?? -1))

            // The same request streamed: role first, content deltas, finish, usage, [DONE].
            let streamBody = body.replacingOccurrences(of: #""temperature":0}"#, with: #""temperature":0,"stream":true,"stream_options":{"include_usage":true}}"#)
            let streamed = try await Self.post(client, "/v1/chat/completions", streamBody)
            #expect(streamed.status == .ok)
            #expect(streamed.headers[.contentType] == "text/event-stream")
            let events = Self.events(streamed)
            #expect(events.last == "[DONE]")
            var text = ""
            var finish: String?
            var sawRole = false
            var streamedUsage: [String: Any] = [:]
            for e in events.dropLast() {
                let chunk = try #require(try JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any])
                #expect(chunk.string("object") == "chat.completion.chunk")
                guard let c = chunk.array("choices").first as? [String: Any] else {
                    streamedUsage = chunk.dict("usage")
                    continue
                }
                if c.dict("delta").string("role") == "assistant" { sawRole = true }
                text += c.dict("delta").string("content") ?? ""
                if let f = c.string("finish_reason") { finish = f }
            }
            #expect(sawRole)
            #expect(text == content)
            #expect(finish == choice.string("finish_reason"))
            #expect(streamedUsage.int("completion_tokens") == usage.int("completion_tokens"))
            #expect(streamedUsage.int("prompt_tokens") == promptTokens)
        }
    }

    @Test("completions: string and token prompts, echo, logprobs, n choices")
    func completions() async throws {
        let h = try Self.harness()
        defer { h.model.backend.shutdown() }
        let tokenizer = h.tokenizer
        try await h.app.test(.router) { client in
            let j = try Self.json(try await Self.post(client, "/v1/completions",
                #"{"prompt":"The capital of France is","max_tokens":8,"temperature":0,"logprobs":3,"echo":true}"#))
            #expect(j.string("object") == "text_completion")
            let choice = try #require(j.array("choices").first as? [String: Any])
            let text = try #require(choice.string("text"))
            #expect(text.hasPrefix("The capital of France is"))
            let logprobs = choice.dict("logprobs")
            // echo: the prompt's tokens lead (the first with null), then the 8 generated ones.
            let promptCount = tokenizer.encode("The capital of France is").count
            #expect(logprobs.array("tokens").count == promptCount + 8)
            #expect(logprobs.doubles("token_logprobs").allSatisfy { $0 <= 0 })
            #expect(logprobs.array("top_logprobs").first is NSNull)
            #expect((logprobs.array("top_logprobs").last as? [String: Any])?.count == 3)
            #expect(choice.string("finish_reason") == "length")

            // Token ids in, the same continuation out.
            let ids = tokenizer.encode("The capital of France is")
            let byIDs = try Self.json(try await Self.post(client, "/v1/completions",
                #"{"prompt":\#(ids),"max_tokens":8,"temperature":0}"#))
            let idText = (byIDs.array("choices").first as? [String: Any])?.string("text")
            #expect(idText.map { "The capital of France is" + $0 } == text)

            // n = 3 with a seed: three choices, indexed.
            let many = try Self.json(try await Self.post(client, "/v1/completions",
                #"{"prompt":"Once upon a time","max_tokens":5,"temperature":1.0,"n":3,"seed":7,"ignore_eos":true}"#))
            let indices = many.array("choices").compactMap { ($0 as? [String: Any])?.int("index") }.sorted()
            #expect(indices == [0, 1, 2])
            #expect(many.dict("usage").int("completion_tokens") == 15)
        }
    }

    @Test("completions echo + logprobs: the prompt's tokens lead, the first with null, then the generated ones")
    func echoPromptLogprobs() async throws {
        let h = try Self.harness()
        defer { h.model.backend.shutdown() }
        let promptText = "The capital of France is"
        let promptTokens = h.tokenizer.encode(promptText)
        try await h.app.test(.router) { client in
            let r = try await Self.post(client, "/v1/completions",
                                        #"{"prompt":"The capital of France is","max_tokens":2,"echo":true,"logprobs":2,"temperature":0}"#)
            #expect(r.status == .ok)
            let choice = try #require((try Self.json(r)["choices"] as? [[String: Any]])?.first)
            #expect((choice["text"] as? String)?.hasPrefix(promptText) == true)
            let logprobs = try #require(choice["logprobs"] as? [String: Any])
            let tokens = try #require(logprobs["tokens"] as? [String])
            let values = try #require(logprobs["token_logprobs"] as? [Any])
            let tops = try #require(logprobs["top_logprobs"] as? [Any])
            let offsets = try #require(logprobs["text_offset"] as? [Int])
            #expect(tokens.count == promptTokens.count + 2 && values.count == tokens.count && tops.count == tokens.count)
            #expect(offsets.count == tokens.count && offsets.first == 0 && offsets[promptTokens.count] == promptText.utf8.count)
            #expect(values[0] is NSNull && tops[0] is NSNull)
            for v in values.dropFirst() {
                let x = try #require(v as? Double, "a log-probability is missing: \(v)")
                #expect(x <= 0 && x > -50)
            }
            for t in tops.dropFirst() { #expect((t as? [String: Any])?.count == 2) }
            // Streamed: the echoed prompt comes first with the prompt's log-probabilities, then each token.
            let streamed = try await Self.post(client, "/v1/completions",
                #"{"prompt":"The capital of France is","max_tokens":2,"echo":true,"logprobs":2,"temperature":0,"stream":true}"#)
            let events = Self.events(streamed)
            #expect(events.last == "[DONE]")
            let chunks = try events.dropLast().map { e -> [String: Any] in
                let object = try JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any]
                return try #require((object?["choices"] as? [[String: Any]])?.first)
            }
            let opening = try #require(chunks.first)
            #expect(opening["text"] as? String == promptText)
            let openingLogprobs = try #require(opening["logprobs"] as? [String: Any])
            let streamedValues = try #require(openingLogprobs["token_logprobs"] as? [Any])
            #expect(streamedValues.count == promptTokens.count && streamedValues.first is NSNull)
            // The same numbers as the one-shot response, and the same text in the end.
            #expect(zip(streamedValues.dropFirst(), values.dropFirst()).allSatisfy { ($0 as? Double) == ($1 as? Double) })
            #expect(chunks.compactMap { $0["text"] as? String }.joined() == choice["text"] as? String)

            // Without echo only the generated tokens are listed.
            let plain = try await Self.post(client, "/v1/completions", #"{"prompt":"The capital of France is","max_tokens":2,"logprobs":1,"temperature":0}"#)
            let plainChoice = try #require((try Self.json(plain)["choices"] as? [[String: Any]])?.first)
            #expect(((plainChoice["logprobs"] as? [String: Any])?["tokens"] as? [String])?.count == 2)
        }
    }

    @Test("native /generate, /tokenize and /detokenize")
    func nativeRoutes() async throws {
        let h = try Self.harness()
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            let g = try Self.json(try await Self.post(client, "/generate", #"{"prompt":"1, 2, 3,","max_tokens":6}"#))
            #expect(!(g.string("text") ?? "").isEmpty)
            #expect(g.string("finish_reason") == "length")
            #expect(g.dict("usage").int("completion_tokens") == 6)

            let t = try Self.json(try await Self.post(client, "/tokenize", #"{"prompt":"Hello world"}"#))
            let tokens = t.ints("tokens")
            #expect(tokens == h.tokenizer.encode("Hello world"))
            #expect(t.int("count") == tokens.count)
            let d = try Self.json(try await Self.post(client, "/detokenize", #"{"tokens":\#(tokens)}"#))
            #expect(d.string("prompt") == "Hello world")
        }
    }

    @Test("bad input gets OpenAI-shaped 4xx errors naming the field, never a 500")
    func errors() async throws {
        let h = try Self.harness(maxTokens: 100)
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            func check(_ body: String, _ status: HTTPResponse.Status, param: String?, contains: String, uri: String = "/v1/chat/completions") async throws {
                let r = try await Self.post(client, uri, body)
                #expect(r.status == status, "\(body) -> \(r.status)")
                let e = try Self.errorBody(r)
                #expect((e.string("message") ?? "").contains(contains), "\(e)")
                #expect(e.string("type") != nil)
                if let param { #expect(e.string("param") == param) }
            }
            try await check(#"{"messages": [ {"role":"user","content":"hi"} "#, .badRequest, param: nil, contains: "Malformed JSON")
            try await check(#"[1,2]"#, .badRequest, param: nil, contains: "JSON object")
            try await check(#"{"messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#, .badRequest, param: "temperature", contains: "number")
            try await check(#"{"messages":[{"role":"user","content":"hi"}],"temperature":5}"#, .badRequest, param: "temperature", contains: "between 0 and 2")
            try await check(#"{"messages":[]}"#, .badRequest, param: "messages", contains: "non-empty")
            try await check(#"{"messages":[{"role":"wizard","content":"hi"}]}"#, .badRequest, param: "messages[0].role", contains: "wizard")
            try await check(#"{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}"#, .notFound, param: "model", contains: "gpt-9")
            try await check(#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":500}"#, .badRequest, param: "max_tokens", contains: "limit of 100")
            let long = String(repeating: "word ", count: 600)
            try await check(#"{"messages":[{"role":"user","content":"\#(long)"}]}"#, .badRequest, param: nil, contains: "512")
            try await check(#"{"prompt":"hi","max_tokens":100,"n":0}"#, .badRequest, param: "n", contains: "between 1", uri: "/v1/completions")
            try await check(#"{"max_tokens":10}"#, .badRequest, param: "prompt", contains: "required", uri: "/v1/completions")
            try await check(#"{"prompt":[1, -4]}"#, .badRequest, param: "prompt", contains: "token ids", uri: "/v1/completions")
            let missing = try await client.execute(uri: "/v1/nothing", method: .get)
            #expect(missing.status == .notFound)
            #expect(try Self.errorBody(missing).string("type") == "invalid_request_error")
        }
    }

    @Test("a full queue answers 429 with Retry-After; a draining server 503; both recover or say why")
    func overloadAndDrain() async throws {
        // The scheduler is not started: the queue fills and stays full.
        let h = try Self.harness(maxQueue: 1, start: false)
        let prompt = h.tokenizer.encode("Hello")
        let queued = try h.model.backend.submit(GenerationRequest(id: "direct", promptTokens: prompt, stop: StopCondition(maxTokens: 2)))
        try await h.app.test(.router) { client in
            let r = try await Self.post(client, "/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
            #expect(r.status == .tooManyRequests)
            #expect(Int(r.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(try Self.errorBody(r).string("code") == "queue_full")

            h.model.backend.start()
            var finished = false
            for await event in queued { if case .finished = event { finished = true } }
            #expect(finished)
            let status2 = try await Self.post(client, "/v1/completions", #"{"prompt":"hi","max_tokens":2}"#).status
            #expect(status2 == .ok)

            h.model.backend.beginDraining()
            let draining = try await Self.post(client, "/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
            #expect(draining.status == .serviceUnavailable)
            #expect(draining.headers[.retryAfter] != nil)
            let status3 = try await client.execute(uri: "/ready", method: .get).status
            #expect(status3 == .serviceUnavailable)
            let status4 = try await client.execute(uri: "/health", method: .get).status
            #expect(status4 == .ok)
        }
        h.model.backend.shutdown()
    }

    @Test("metrics: vLLM's names under autoglm_, prefix-cache hits, requests by route and status; valid Prometheus names")
    func metrics() async throws {
        let h = try Self.harness()
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            let system = String(repeating: "You are a helpful assistant who answers in one short sentence. ", count: 4)
            for question in ["Name a color.", "Name a fruit."] {
                let body = #"{"messages":[{"role":"system","content":"\#(system)"},{"role":"user","content":"\#(question)"}],"max_tokens":4,"temperature":0,"ignore_eos":true}"#
                let status5 = try await Self.post(client, "/v1/chat/completions", body).status
                #expect(status5 == .ok)
            }
            _ = try await Self.post(client, "/v1/chat/completions", "{")
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            for name in ["autoglm_num_requests_running", "autoglm_num_requests_waiting", "autoglm_kv_cache_usage_perc",
                         "autoglm_prompt_tokens_total", "autoglm_generation_tokens_total", "autoglm_time_to_first_token_seconds_bucket",
                         "autoglm_inter_token_latency_seconds_bucket", "autoglm_e2e_request_latency_seconds_count",
                         "autoglm_request_queue_time_seconds_bucket", "autoglm_batch_size_bucket", "autoglm_kv_cache_blocks_capacity", "autoglm_iteration_tokens_bucket"] {
                #expect(text.contains(name), "missing \(name)")
            }
            func value(_ prefix: String) -> Double? {
                text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.split(separator: " ").last ?? "") }
            }
            #expect(value(#"autoglm_generation_tokens_total{model_name="smol"}"#) == 8)
            #expect((value(#"autoglm_prefix_cache_hits_total{model_name="smol"}"#) ?? 0) >= 32)
            #expect(value(#"autoglm_request_success_total{model_name="smol",finished_reason="length"}"#) == 2)
            #expect(text.contains(#"autoglm_http_requests_total{route="/v1/chat/completions",model_name="smol",version="v1",status="200"} 2"#))
            #expect(text.contains(#"status="400"} 1"#))
            Self.checkPrometheusNames(text)
            // metrics.names: vllm serves vLLM's exact names.
            let vllm = String(decoding: MetricNames.vllm.exposition(Array(text.utf8)), as: UTF8.self)
            for name in ["vllm:num_requests_running{", "vllm:generation_tokens_total{", "vllm:iteration_tokens_total_bucket{",
                         "# TYPE vllm:time_to_first_token_seconds histogram", "# HELP vllm:kv_cache_usage_perc "] {
                #expect(vllm.contains(name), "missing \(name)")
            }
            #expect(!vllm.contains("autoglm_") && vllm.split(separator: "\n").count == text.split(separator: "\n").count)
        }
    }

    /// The rules `promtool check metrics` applies to names: [a-zA-Z_][a-zA-Z0-9_]* (no colons: they are for recording
    /// rules), counters end in `_total` and nothing else does.
    static func checkPrometheusNames(_ text: String) {
        var types: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            types[String(parts[2])] = String(parts[3])
        }
        #expect(types.count >= 20)
        for (name, type) in types {
            #expect(name.range(of: "^[a-zA-Z_][a-zA-Z0-9_]*$", options: .regularExpression) != nil, "bad name \(name)")
            #expect(name.hasPrefix(ServerMetrics.prefix), "\(name) without the prefix")
            #expect((type == "counter") == name.hasSuffix("_total"), "\(name) is a \(type)")
        }
    }

    @Test("API keys: a missing or wrong key is 401; probes stay open")
    func auth() async throws {
        let h = try Self.harness(apiKeys: ["sk-test"])
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            let status6 = try await client.execute(uri: "/v1/models", method: .get).status
            #expect(status6 == .unauthorized)
            let status7 = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer nope"]).status
            #expect(status7 == .unauthorized)
            let status8 = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer sk-test"]).status
            #expect(status8 == .ok)
            let status9 = try await client.execute(uri: "/health", method: .get).status
            #expect(status9 == .ok)
        }
    }
}
