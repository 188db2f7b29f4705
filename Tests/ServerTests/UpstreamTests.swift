import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOHTTP1
import Prometheus
import Server
import Serving
import Synchronization
import Testing

/// The circuit breaker's policy, on a made-up clock.
@Suite("Circuit breaker policy")
struct CircuitBreakerTests {
    @Test("consecutive failures open it; a success in between resets the count")
    func opensAfterThreshold() {
        var b = CircuitBreaker(settings: .init(failureThreshold: 3, openSeconds: 10))
        b.recordFailure(now: 0)
        b.recordFailure(now: 0)
        b.recordSuccess(now: 0)
        b.recordFailure(now: 0)
        b.recordFailure(now: 0)
        #expect(b.state == .closed)
        b.recordFailure(now: 1)
        #expect(b.state == .open)
        do { let allowed = b.allowRequest(now: 5); #expect(!allowed) }
        #expect(b.secondsUntilProbe(now: 5) == 6)
    }

    @Test("after the open time one probe at a time goes through; its success closes, its failure reopens")
    func halfOpen() {
        var b = CircuitBreaker(settings: .init(failureThreshold: 1, openSeconds: 10, successThreshold: 2))
        b.recordFailure(now: 0)
        do { let allowed = b.allowRequest(now: 10); #expect(allowed) }
        #expect(b.state == .halfOpen)
        do { let allowed = b.allowRequest(now: 10); #expect(!allowed, "a second request while the probe is out") }
        b.recordSuccess(now: 11)
        #expect(b.state == .halfOpen, "two successes needed")
        do { let allowed = b.allowRequest(now: 11); #expect(allowed) }
        b.recordSuccess(now: 12)
        #expect(b.state == .closed)
        b.recordFailure(now: 13)
        do { let allowed = b.allowRequest(now: 23); #expect(allowed) }
        b.recordFailure(now: 24)
        #expect(b.state == .open)
        do { let allowed = b.allowRequest(now: 30); #expect(!allowed) }
    }

    @Test("a probe that ends without a verdict (4xx, client gone) frees the slot and changes nothing")
    func release() {
        var b = CircuitBreaker(settings: .init(failureThreshold: 1, openSeconds: 0))
        b.recordFailure(now: 0)
        do { let allowed = b.allowRequest(now: 0); #expect(allowed) }
        b.release()
        #expect(b.state == .halfOpen)
        do { let allowed = b.allowRequest(now: 0); #expect(allowed) }
    }
}

/// A fault-injecting OpenAI-compatible upstream on 127.0.0.1: the `model` field picks the behaviour.
final class FaultUpstream: Sendable {
    struct State {
        var requests: [String: Int] = [:]
        /// "flaky" answers 500 while this holds.
        var failing = true
        /// Set when a "long" stream's write failed: the caller went away.
        var callerGone = false
        /// The trace headers of the last request (traceparent, tracestate, the in-memory tracer's).
        var traceHeaders: [String: String] = [:]
    }
    let state = Mutex(State())

    func count(_ mode: String) -> Int { state.withLock { $0.requests[mode] ?? 0 } }

    static func chunk(_ text: String) -> ByteBuffer {
        ByteBuffer(string: "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"model\":\"up\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(text)\"},\"finish_reason\":null}]}\n\n")
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/v1/models") { _, _ in Response(status: .ok, headers: [.contentType: "application/json"],
                                                    body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"object":"list","data":[]}"#))) }
        router.post("/tokenize") { _, _ in Response(status: .ok, headers: [.contentType: "application/json"],
                                                    body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"tokens":[1,2,3],"count":3}"#))) }
        router.post("/v1/chat/completions") { request, context in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            let object = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] ?? [:]
            let mode = object["model"] as? String ?? ""
            let stream = object["stream"] as? Bool ?? false
            var trace: [String: String] = [:]
            for field in request.headers where ["traceparent", "tracestate", "in-memory-trace-id", "in-memory-span-id"].contains(field.name.canonicalName) {
                trace[field.name.canonicalName] = field.value
            }
            let failing = self.state.withLock { s -> Bool in
                s.traceHeaders = trace
                s.requests[mode, default: 0] += 1
                return s.failing
            }
            func json(_ status: HTTPResponse.Status, _ text: String) -> Response {
                Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
            }
            switch mode {
            case "error500":
                return json(.internalServerError, #"{"error":{"message":"CUDA out of memory","type":"server_error"}}"#)
            case "fail20" where self.count("fail20") % 5 == 0:
                // Every fifth request fails: a canary with a 20% error rate.
                return json(.internalServerError, #"{"error":{"message":"CUDA error: an illegal memory access","type":"server_error"}}"#)
            case "flaky" where failing:
                return json(.internalServerError, #"{"error":{"message":"CUDA out of memory","type":"server_error"}}"#)
            case "error400":
                return json(.badRequest, #"{"error":{"message":"max_tokens is too large","type":"invalid_request_error","code":"bad"}}"#)
            case "hang":
                try await Task.sleep(for: .seconds(3))  // longer than the test's first_byte_timeout
                return json(.ok, "{}")
            case "reset":
                return Response(status: .ok, headers: [.contentType: "text/event-stream"], body: ResponseBody { writer in
                    try await writer.write(Self.chunk("one"))
                    try await writer.write(Self.chunk("two"))
                    try await Task.sleep(for: .milliseconds(50))
                    throw CancellationError()  // the connection closes without the stream's end
                })
            case "long":
                return Response(status: .ok, headers: [.contentType: "text/event-stream"], body: ResponseBody { writer in
                    do {
                        for i in 0 ..< 3000 {
                            try await writer.write(Self.chunk("t\(i)"))
                            try await Task.sleep(for: .milliseconds(10))
                        }
                        try await writer.finish(nil)
                    } catch {
                        self.state.withLock { $0.callerGone = true }
                        throw error
                    }
                })
            default:
                if stream {
                    return Response(status: .ok, headers: [.contentType: "text/event-stream"], body: ResponseBody { writer in
                        for word in ["hello", " from", " upstream"] { try await writer.write(Self.chunk(word)) }
                        try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                        try await writer.finish(nil)
                    })
                }
                return json(.ok, #"{"id":"up-1","object":"chat.completion","model":"\#(mode)","choices":[{"index":0,"message":{"role":"assistant","content":"hello from upstream"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}"#)
            }
        }
        return router
    }
}

@Suite("Upstream engines: routing, retries, circuit breakers, streaming", .serialized, .timeLimit(.minutes(5)))
struct UpstreamTests {
    /// A port with nothing listening (bound, then closed).
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound)
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func metric(_ registry: PrometheusCollectorRegistry, _ prefix: String) -> Double? {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where line.hasPrefix(prefix) {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    /// Runs `body` against an autoglm server (live, 127.0.0.1) whose models are `models`, backed by the
    /// fault upstream at `faultPort`.
    static func withGateway(
        _ models: [UpstreamModel], settings: UpstreamSettings,
        _ body: @Sendable (any TestClientProtocol, UpstreamGateway, PrometheusCollectorRegistry) async throws -> Void
    ) async throws {
        let registry = PrometheusCollectorRegistry()
        let gateway = UpstreamGateway(models: models, settings: settings, registry: registry)
        var logger = Logger(label: "upstream-test")
        logger.logLevel = .critical
        let app = try AutoGLMServer.application(models: [], upstreams: gateway, metrics: [:], registry: registry,
                                                options: ServerOptions(port: 0), logger: logger)
        try await app.test(.live) { client in try await body(client, gateway, registry) }
        await gateway.shutdown()
    }

    static func withFault(_ body: @Sendable (FaultUpstream, String) async throws -> Void) async throws {
        let fault = FaultUpstream()
        let app = Application(router: fault.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            try await body(fault, "http://127.0.0.1:\(try #require(client.port))/v1")
        }
    }

    static func chat(_ client: some TestClientProtocol, model: String, stream: Bool = false) async throws -> TestResponse {
        try await client.execute(uri: "/v1/chat/completions", method: .post, headers: [.contentType: "application/json"],
                                 body: ByteBuffer(string: #"{"model":"\#(model)","messages":[{"role":"user","content":"hi"}],"stream":\#(stream)}"#))
    }

    static func error(_ response: TestResponse) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
        return try #require(object?["error"] as? [String: Any], "no error object in \(String(buffer: response.body))")
    }

    static let quick = UpstreamSettings(connectSeconds: 2, firstByteSeconds: 30, retries: 2, backoffSeconds: 0.01,
                                        breaker: .init(failureThreshold: 2, openSeconds: 3600), healthIntervalSeconds: 0)

    @Test("one-shot and streamed responses pass through; the model is renamed for the upstream; /v1/models and /tokenize")
    func passThrough() async throws {
        try await Self.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "ok", endpoints: [.init(baseURL: url)], contextLength: 8192)
            try await Self.withGateway([model], settings: Self.quick) { client, _, _ in
                let one = try await Self.chat(client, model: "glm")
                #expect(one.status == .ok)
                #expect(String(buffer: one.body).contains("hello from upstream"))
                #expect(String(buffer: one.body).contains(#""model":"ok""#), "the upstream saw its own model name")
                let streamed = try await Self.chat(client, model: "glm", stream: true)
                #expect(streamed.status == .ok && streamed.headers[.contentType] == "text/event-stream")
                let text = String(buffer: streamed.body)
                #expect(text.components(separatedBy: "data: ").count == 5 && text.hasSuffix("data: [DONE]\n\n"))
                let models = String(buffer: try await client.execute(uri: "/v1/models", method: .get).body)
                #expect(models.contains(#""id":"glm""#) && models.contains(#""owned_by":"upstream""#) && models.contains("8192"))
                let tokens = try await client.execute(uri: "/tokenize", method: .post, headers: [.contentType: "application/json"],
                                                      body: ByteBuffer(string: #"{"model":"glm","prompt":"hi"}"#))
                #expect(String(buffer: tokens.body).contains(#""count":3"#))
                let unknown = try await Self.chat(client, model: "nope")
                #expect(unknown.status == .notFound && String(buffer: unknown.body).contains("glm"))
            }
            #expect(fault.count("ok") == 2)
        }
    }

    static func session(_ client: some TestClientProtocol, _ id: String) async throws -> HTTPResponse.Status {
        try await client.execute(uri: "/v1/chat/completions", method: .post,
                                 headers: [.contentType: "application/json", HTTPField.Name("X-Session-Id")!: id],
                                 body: ByteBuffer(string: #"{"model":"glm","messages":[{"role":"user","content":"hi"}]}"#)).status
    }

    @Test("through the server: consistent_hash keeps a session (X-Session-Id, or the body's user) on one endpoint; round_robin alternates")
    func balancingThroughTheServer() async throws {
        try await Self.withFault { first, url1 in
            try await Self.withFault { second, url2 in
                let model = UpstreamModel(name: "glm", upstreamName: "ok", endpoints: [.init(baseURL: url1), .init(baseURL: url2)])
                var hashing = Self.quick
                hashing.balance = .consistentHash
                try await Self.withGateway([model], settings: hashing) { client, _, _ in
                    for _ in 0 ..< 5 {
                        let status = try await Self.session(client, "conversation-1")
                        #expect(status == .ok)
                    }
                    #expect([first.count("ok"), second.count("ok")].sorted() == [0, 5], "one session, one endpoint")
                    for _ in 0 ..< 4 {
                        let r = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: [.contentType: "application/json"],
                                                         body: ByteBuffer(string: #"{"model":"glm","user":"u-7","messages":[{"role":"user","content":"hi"}]}"#))
                        #expect(r.status == .ok)
                    }
                    #expect([first.count("ok"), second.count("ok")].contains { $0 == 9 || $0 == 4 } && first.count("ok") + second.count("ok") == 9)
                }
                let before = (first.count("ok"), second.count("ok"))
                var turns = Self.quick
                turns.balance = .roundRobin
                try await Self.withGateway([model], settings: turns) { client, _, _ in
                    for _ in 0 ..< 4 {
                        let status = try await Self.chat(client, model: "glm").status
                        #expect(status == .ok)
                    }
                }
                #expect(first.count("ok") - before.0 == 2 && second.count("ok") - before.1 == 2)
            }
        }
    }

    @Test("a refused endpoint is retried on the next one, and its breaker opens after the threshold")
    func refusedEndpointFailsOver() async throws {
        let dead = "http://127.0.0.1:\(try Self.closedPort())/v1"
        try await Self.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "ok", endpoints: [.init(baseURL: dead), .init(baseURL: url)])
            try await Self.withGateway([model], settings: Self.quick) { client, _, registry in
                for _ in 0 ..< 6 {
                    let status = try await Self.chat(client, model: "glm").status
                    #expect(status == .ok)
                }
                let state = Self.metric(registry, "autoglm_upstream_circuit_state{model_name=\"glm\",endpoint=\"\(dead)\"}")
                #expect(state == 2, "the dead endpoint's circuit is open")
                let refused = Self.metric(registry, "autoglm_upstream_requests_total{model_name=\"glm\",endpoint=\"\(dead)\",outcome=\"connect_error\"}")
                #expect(refused == 2, "no attempt after the circuit opened")
            }
            #expect(fault.count("ok") == 6)
        }
    }

    @Test("5xx: retried, then 502 naming the endpoint; once open, 503 with Retry-After and nothing sent")
    func serverErrorsOpenTheBreaker() async throws {
        try await Self.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "error500", endpoints: [.init(baseURL: url)])
            var settings = Self.quick
            settings.retries = 1
            try await Self.withGateway([model], settings: settings) { client, _, _ in
                let first = try await Self.chat(client, model: "glm")
                #expect(first.status == .badGateway)
                let error = try Self.error(first)
                #expect((error["message"] as? String)?.contains(url) == true && (error["message"] as? String)?.contains("CUDA out of memory") == true)
                #expect(error["code"] as? String == "upstream_500")
                #expect(fault.count("error500") == 2, "one retry")
                let second = try await Self.chat(client, model: "glm")
                #expect(second.status == .serviceUnavailable)
                #expect(try Self.error(second)["code"] as? String == "upstream_unavailable")
                #expect(Int(second.headers[.retryAfter] ?? "") ?? 0 >= 1)
                #expect(fault.count("error500") == 2, "an open circuit sends nothing")
                let ready = try await client.execute(uri: "/ready", method: .get)
                #expect(ready.status == .serviceUnavailable)
            }
        }
    }

    @Test("4xx passes through unchanged and never opens the breaker")
    func clientErrorsPassThrough() async throws {
        try await Self.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "error400", endpoints: [.init(baseURL: url)])
            var settings = Self.quick
            settings.breaker = .init(failureThreshold: 1, openSeconds: 3600)
            try await Self.withGateway([model], settings: settings) { client, _, registry in
                for _ in 0 ..< 3 {
                    let r = try await Self.chat(client, model: "glm")
                    #expect(r.status == .badRequest)
                    #expect(try Self.error(r)["message"] as? String == "max_tokens is too large")
                }
                #expect(Self.metric(registry, "autoglm_upstream_circuit_state{model_name=\"glm\"") == 0)
            }
            #expect(fault.count("error400") == 3, "no retries of a 4xx")
        }
    }

    @Test("no response head within first_byte_timeout: 504")
    func hangingUpstreamTimesOut() async throws {
        try await Self.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "hang", endpoints: [.init(baseURL: url)])
            var settings = Self.quick
            settings.firstByteSeconds = 0.5
            settings.retries = 0
            try await Self.withGateway([model], settings: settings) { client, _, _ in
                let r = try await Self.chat(client, model: "glm")
                #expect(r.status == .gatewayTimeout)
                #expect(try Self.error(r)["code"] as? String == "upstream_timeout")
            }
            #expect(fault.count("hang") == 1)
        }
    }

    @Test("a stream that breaks mid-way ends with an error event and is never replayed")
    func brokenStreamIsNotRetried() async throws {
        try await Self.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "reset", endpoints: [.init(baseURL: url)])
            try await Self.withGateway([model], settings: Self.quick) { client, _, _ in
                let r = try await Self.chat(client, model: "glm", stream: true)
                #expect(r.status == .ok)
                let text = String(buffer: r.body)
                #expect(text.contains("one") && text.contains("two"))
                #expect(text.contains("upstream_stream_broken"))
                #expect(!text.contains("[DONE]"))
            }
            #expect(fault.count("reset") == 1)
        }
    }

    @Test("an open breaker lets a probe through after its open time and closes when the endpoint recovers")
    func recovery() async throws {
        try await Self.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "flaky", endpoints: [.init(baseURL: url)])
            var settings = Self.quick
            settings.retries = 0
            settings.breaker = .init(failureThreshold: 1, openSeconds: 0.2)
            try await Self.withGateway([model], settings: settings) { client, _, registry in
                #expect(try await Self.chat(client, model: "glm").status == .badGateway)
                #expect(Self.metric(registry, "autoglm_upstream_circuit_state{model_name=\"glm\"") == 2)
                fault.state.withLock { $0.failing = false }
                var status = HTTPResponse.Status.serviceUnavailable
                let deadline = ContinuousClock.now + .seconds(60)
                while status != .ok && ContinuousClock.now < deadline {
                    status = try await Self.chat(client, model: "glm").status
                    if status != .ok { try await Task.sleep(for: .milliseconds(50)) }
                }
                #expect(status == .ok)
                #expect(Self.metric(registry, "autoglm_upstream_circuit_state{model_name=\"glm\"") == 0)
            }
        }
    }

    @Test("when no endpoint of a model can take a request, its fallback model does")
    func fallback() async throws {
        let dead = "http://127.0.0.1:\(try Self.closedPort())/v1"
        try await Self.withFault { fault, url in
            let primary = UpstreamModel(name: "big", upstreamName: "ok", endpoints: [.init(baseURL: dead)], fallback: "small")
            let small = UpstreamModel(name: "small", upstreamName: "ok", endpoints: [.init(baseURL: url)])
            var settings = Self.quick
            settings.retries = 0
            try await Self.withGateway([primary, small], settings: settings) { client, _, _ in
                let r = try await Self.chat(client, model: "big")
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains("hello from upstream"))
            }
            #expect(fault.count("ok") == 1)
        }
    }

    @Test("a client that disconnects mid-stream closes the upstream stream")
    func disconnectCancelsUpstream() async throws {
        try await Self.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "long", endpoints: [.init(baseURL: url)])
            try await Self.withGateway([model], settings: Self.quick) { client, gateway, _ in
                let port = try #require(client.port)
                let http = HTTPClient(eventLoopGroupProvider: .singleton)
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/chat/completions")
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: #"{"model":"glm","messages":[{"role":"user","content":"hi"}],"stream":true}"#))
                let reader = Task {
                    let response = try await http.execute(request, timeout: .seconds(60))
                    var seen = 0
                    for try await chunk in response.body {
                        seen += String(buffer: chunk).components(separatedBy: "data: ").count - 1
                        if seen >= 3 { return seen }
                    }
                    return seen
                }
                #expect(try await reader.value >= 3)
                // Leaving the loop above dropped the body: the connection to autoglm closes.
                let start = ContinuousClock.now
                try await ServerTests.waitUntil("the upstream stream is closed", seconds: 30) {
                    fault.state.withLock { $0.callerGone } && gateway.requestsInFlight == 0
                }
                print("upstream stream closed \(ContinuousClock.now - start) after the client went away")
                try await http.shutdown()
            }
            #expect(fault.count("long") == 1)
        }
    }
}
