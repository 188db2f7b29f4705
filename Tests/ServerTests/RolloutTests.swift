import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import InferenceCore
import Logging
import NIOCore
import Ops
import Prometheus
@testable import Server
import Serving
import Synchronization
import Testing

/// A backend that answers every request with `answer` ("ok" by default), one token per word, or fails
/// each request with an engine error while `failing` is set: a local version that errors.
final class ScriptedBackend: InferenceBackend {
    struct State {
        var failing = false
        var answer = "ok"
        var requests = 0
        var stopped = false
        var running = 0
    }
    let state = Mutex(State())
    var contextLength: Int { 512 }
    var vocabularySize: Int { 100 }
    func renderChat(_ messages: [JinjaValue], extra: [String: JinjaValue], addGenerationPrompt: Bool) throws(ChatTemplateError) -> String { "chat" }
    func tokens(forRenderedChat text: String) -> [Int] { [1, 2] }
    func encode(_ text: String, addSpecial: Bool) -> [Int] { [1, 2] }
    func decode(_ tokens: [Int]) -> String { tokens.map(String.init).joined(separator: " ") }
    func piece(of token: Int) -> String? { "t" }
    func submit(_ request: GenerationRequest) throws(SchedulerError) -> AsyncStream<GenerationEvent> {
        let (failing, answer) = state.withLock { s -> (Bool, String) in
            s.requests += 1
            return (s.failing, s.answer)
        }
        if state.withLock({ $0.stopped }) { throw .draining }
        return AsyncStream { continuation in
            if failing {
                continuation.yield(.failed(.engine("the engine failed (injected)")))
            } else {
                let words = answer.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
                for (i, w) in words.enumerated() { continuation.yield(.token(GeneratedToken(id: 10 + i, text: i == 0 ? w : " " + w))) }
                continuation.yield(.finished(GenerationOutcome(finishReason: .stop, promptTokens: 2, completionTokens: words.count)))
            }
            continuation.finish()
        }
    }
    func cancel(_ id: String) {}
    var isAcceptingRequests: Bool { state.withLock { !$0.stopped } }
    var statistics: SchedulerStatistics { SchedulerStatistics() }
    func start() {}
    func beginDraining() {}
    func waitUntilIdle() async {}
    func shutdown() { state.withLock { $0.stopped = true } }
    var requests: Int { state.withLock { $0.requests } }
}

@Suite("Releases: versions, canary split, self-test, rollback, reload", .serialized, .timeLimit(.minutes(5)))
struct RolloutTests {
    /// A local version over a scripted backend, already loaded in `pool`.
    static func version(_ model: String, _ id: String, pool: LocalModelPool, backend: ScriptedBackend, first: Bool = false) -> ModelVersion {
        let served = ServedModel(name: model, backend: backend, maxTokensLimit: 16)
        let slot = LocalModelSlot(spec: LocalModelSpec(name: model, pinned: true, estimatedBytes: 0, contextLength: 512, load: { served }),
                                  key: first ? nil : "\(model)@\(id)")
        pool.add(slot, loaded: served)
        return ModelVersion(model: model, id: id, target: .local(slot))
    }

    static func logger() -> Logger {
        var logger = Logger(label: "rollout-test")
        logger.logLevel = .critical
        return logger
    }

    static func complete(_ client: some TestClientProtocol, user: String? = nil, version: String? = nil, chat: Bool = false) async throws -> TestResponse {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let version { headers[HTTPField.Name("X-AutoGLM-Version")!] = version }
        let userField = user.map { #","user":"\#($0)""# } ?? ""
        if chat {
            return try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers,
                                            body: ByteBuffer(string: #"{"model":"m","messages":[{"role":"user","content":"hi"}]\#(userField)}"#))
        }
        return try await client.execute(uri: "/v1/completions", method: .post, headers: headers,
                                        body: ByteBuffer(string: #"{"model":"m","prompt":"hi","max_tokens":4\#(userField)}"#))
    }

    @Test("the split: 10% of 10,000 users reach the canary (within 1 point), each user always the same version, and growing the share only moves users to the canary")
    func split() {
        var canary = 0
        for u in 0 ..< 10_000 where CanarySplit.toCanary(model: "m", key: "user:\(u)", percent: 10) { canary += 1 }
        #expect(abs(canary - 1000) <= 100, "\(canary)")
        for u in 0 ..< 200 {
            let first = CanarySplit.toCanary(model: "m", key: "user:\(u)", percent: 10)
            #expect((0 ..< 20).allSatisfy { _ in CanarySplit.toCanary(model: "m", key: "user:\(u)", percent: 10) == first })
            if first { #expect(CanarySplit.toCanary(model: "m", key: "user:\(u)", percent: 25)) }
        }
        #expect(!CanarySplit.toCanary(model: "m", key: "x", percent: 0) && CanarySplit.toCanary(model: "m", key: "x", percent: 100))
        // Another model splits its users independently.
        let a = (0 ..< 1000).filter { CanarySplit.toCanary(model: "a", key: "user:\($0)", percent: 50) }
        let b = (0 ..< 1000).filter { CanarySplit.toCanary(model: "b", key: "user:\($0)", percent: 50) }
        #expect(a != b)
    }

    @Test("the rule: no verdict below the minimum sample; above the error rate it rolls back; old outcomes leave the window")
    func rule() {
        let rule = RollbackRule(errorRate: 0.05, windowSeconds: 60, minRequests: 20)
        var w = HealthWindow()
        for i in 0 ..< 19 { w.record(RequestOutcome(failed: i < 5, seconds: 0.1, streamed: false), at: Double(i), window: 60) }
        #expect(w.verdict(rule) == nil, "19 requests are below the minimum")
        w.record(RequestOutcome(failed: false, seconds: 0.1, streamed: false), at: 19, window: 60)
        #expect(w.verdict(rule)?.contains("5 of the last 20") == true)
        w.prune(now: 70, window: 60)
        #expect(w.count == 10 && w.failures == 0 && w.verdict(rule) == nil)
        var slow = HealthWindow()
        for i in 0 ..< 30 { slow.record(RequestOutcome(failed: false, seconds: i == 29 ? 9 : 0.1, streamed: false), at: 0, window: 60) }
        #expect(slow.verdict(RollbackRule(minRequests: 20, p99LatencySeconds: 2))?.contains("p99 latency") == true)
        #expect(slow.verdict(RollbackRule(minRequests: 20, p99LatencySeconds: 10)) == nil)
        var restarts = HealthWindow()
        for t in 0 ..< 3 { restarts.recordRestart(at: Double(t), window: 60) }
        #expect(restarts.verdict(RollbackRule(maxRestarts: 3))?.contains("3 times") == true)
    }

    @Test("time to first token of a stream: the first event with generated text, not the opening role chunk or a keep-alive")
    func firstTokenMarker() {
        func carries(_ s: String) -> Bool { FirstTokenWriter.carriesText(ByteBuffer(string: s)) }
        #expect(!carries(#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"# + "\n\n"))
        #expect(!carries(": keep-alive\n\n") && !carries(#"data: {"choices":[{"text":"","index":0}]}"#))
        #expect(carries(#"data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#))
        #expect(carries(#"data: {"choices":[{"text":" world","index":0}]}"#))
        #expect(carries(#"{"content":"","x":1} {"content":"y"}"#), "a later event in the same write")
        var w = HealthWindow()
        for i in 0 ..< 25 { w.record(RequestOutcome(failed: false, seconds: i == 24 ? 5 : 0.2, streamed: true), at: 0, window: 60) }
        #expect(w.verdict(RollbackRule(minRequests: 20, p99FirstTokenSeconds: 1))?.contains("time to first token") == true)
        var upstream = HealthWindow()
        for _ in 0 ..< 30 { upstream.record(RequestOutcome(failed: false, seconds: 0.1, streamed: false, timesOnly: true), at: 0, window: 60) }
        #expect(upstream.count == 0 && upstream.verdict(RollbackRule(minRequests: 20)) == nil, "times alone are not requests of the error rate")
    }

    @Test("through the server: 10% of 1,000 users reach the canary (±3%), a user sticks to one version, X-AutoGLM-Version names it and overrides the split")
    func canaryThroughTheServer() async throws {
        let pool = LocalModelPool(slots: [], availableMemory: { nil })
        let stable = ScriptedBackend(), canary = ScriptedBackend()
        canary.state.withLock { $0.answer = "new" }
        let registry = PrometheusCollectorRegistry()
        let releases = ReleaseController(versions: [(Self.version("m", "v1", pool: pool, backend: stable, first: true), nil),
                                                    (Self.version("m", "v2", pool: pool, backend: canary), 10)],
                                         locals: pool, upstreams: nil, prometheus: registry)
        let app = try AutoGLMServer.application(locals: pool, metrics: [:], registry: registry, options: ServerOptions(), logger: Self.logger(),
                                                releases: releases)
        try await app.test(.router) { client in
            var served: [String: String] = [:]
            for u in 0 ..< 1000 {
                let r = try await Self.complete(client, user: "u\(u)")
                #expect(r.status == .ok)
                served["u\(u)"] = r.headers[HTTPField.Name("X-AutoGLM-Version")!]
            }
            let toCanary = served.values.filter { $0 == "v2" }.count
            #expect((70 ... 130).contains(toCanary), "\(toCanary) of 1000 reached the canary")
            #expect(canary.requests == toCanary && stable.requests == 1000 - toCanary)
            for u in 0 ..< 50 {
                let again = try await Self.complete(client, user: "u\(u)")
                #expect(again.headers[HTTPField.Name("X-AutoGLM-Version")!] == served["u\(u)"], "user u\(u) changed version")
            }
            let pinned = try await Self.complete(client, user: "u0", version: "v2")
            #expect(pinned.headers[HTTPField.Name("X-AutoGLM-Version")!] == "v2" && String(buffer: pinned.body).contains("new"))
            let unknown = try await Self.complete(client, version: "v9")
            #expect(unknown.status == .badRequest && String(buffer: unknown.body).contains("v1, v2"))
        }
        var text: [UInt8] = []
        registry.emit(into: &text)
        let metrics = String(decoding: text, as: UTF8.self)
        #expect(metrics.contains(#"version="v2""#) && metrics.contains("autoglm_version_traffic_percent"))
    }

    @Test("a canary that errors is rolled back within its window: all traffic to the last good version, at most the minimum sample of failures seen by clients, the event in the admin API, log and metrics")
    func localCanaryRollsBack() async throws {
        let pool = LocalModelPool(slots: [], availableMemory: { nil })
        let registry = PrometheusCollectorRegistry()
        let stable = ScriptedBackend(), canary = ScriptedBackend()
        canary.state.withLock { $0.failing = true }
        let releases = ReleaseController(versions: [(Self.version("m", "v1", pool: pool, backend: stable, first: true), nil),
                                                    (Self.version("m", "v2", pool: pool, backend: canary), 50)],
                                         locals: pool, upstreams: nil,
                                         policy: RolloutPolicy(rollback: RollbackRule(errorRate: 0.05, windowSeconds: 60, minRequests: 10)),
                                         prometheus: registry)
        var options = ServerOptions()
        options.adminAPIKeys = ["adm"]
        let app = try AutoGLMServer.application(locals: pool, metrics: [:], registry: registry, options: options, logger: Self.logger(),
                                                releases: releases)
        try await app.test(.router) { client in
            var failed = 0
            for u in 0 ..< 400 {
                let r = try await Self.complete(client, user: "u\(u)")
                if r.status != .ok { failed += 1 }
            }
            #expect(failed == 10, "clients saw \(failed) failures; the rule needs 10 to decide")
            #expect(canary.requests == 10)
            let status = try await client.execute(uri: "/admin/rollout", method: .get, headers: [.authorization: "Bearer adm"])
            let text = String(buffer: status.body)
            #expect(text.contains(#""role":"rolled_back""#) && text.contains(#""kind":"rolled_back""#) && text.contains(#""canary":null"#))
            // The bad version stays loaded for inspection: an override still reaches it.
            let inspect = try await Self.complete(client, version: "v2")
            #expect(inspect.status == .internalServerError)
        }
        #expect(releases.status()[0].stable == "v1" && releases.events.contains { $0.kind == "rolled_back" && $0.version == "v2" })
        #expect(UpstreamTests.metric(registry, #"autoglm_rollbacks_total{model_name="m",version="v2"}"#) == 1)
    }

    @Test("an upstream canary failing 20% of its requests is rolled back automatically; client-visible errors stay within the minimum sample")
    func upstreamCanaryRollsBack() async throws {
        try await UpstreamTests.withFault { fault, url in
            let registry = PrometheusCollectorRegistry()
            let settings = UpstreamSettings(connectSeconds: 2, firstByteSeconds: 30, retries: 0, breaker: .init(failureThreshold: 1000, openSeconds: 1),
                                            healthIntervalSeconds: 0)
            let gateway = UpstreamGateway(models: [UpstreamModel(name: "m", upstreamName: "ok", endpoints: [.init(baseURL: url)]),
                                                   UpstreamModel(name: "m", upstreamName: "fail20", endpoints: [.init(baseURL: url)])],
                                          settings: settings, registry: registry)
            let pools = gateway.pools
            let pool = LocalModelPool(slots: [], availableMemory: { nil })
            let releases = ReleaseController(versions: [(ModelVersion(model: "m", id: "stable", target: .upstream(pools[0])), nil),
                                                        (ModelVersion(model: "m", id: "canary", target: .upstream(pools[1])), 30)],
                                             locals: pool, upstreams: gateway,
                                             policy: RolloutPolicy(rollback: RollbackRule(errorRate: 0.05, windowSeconds: 60, minRequests: 20)),
                                             prometheus: registry)
            let app = try AutoGLMServer.application(locals: pool, upstreams: gateway, metrics: [:], registry: registry,
                                                    options: ServerOptions(port: 0), logger: Self.logger(), releases: releases)
            try await app.test(.live) { client in
                var failed = 0
                for u in 0 ..< 300 {
                    let r = try await Self.complete(client, user: "u\(u)", chat: true)
                    if r.status != .ok { failed += 1 }
                }
                #expect(failed >= 1 && failed <= 20, "\(failed) client-visible failures")
                let canaryRequests = fault.count("fail20")
                #expect(canaryRequests >= 20 && canaryRequests < 40, "the canary saw \(canaryRequests) requests before its rollback")
            }
            await gateway.shutdown()
            #expect(releases.status()[0].canary == nil && releases.events.last { $0.kind == "rolled_back" }?.detail.contains("failed") == true)
        }
    }

    @Test("reloading an upstream model: a changed entry becomes a new pool after its self-test through the endpoint; a failing self-test leaves the running pool")
    func upstreamReload() async throws {
        try await UpstreamTests.withFault { fault, url in
            let registry = PrometheusCollectorRegistry()
            let settings = UpstreamSettings(connectSeconds: 2, firstByteSeconds: 30, retries: 0, healthIntervalSeconds: 0)
            func yaml(_ upstreamModel: String, expect: String) -> String {
                """
                models:
                  - name: m
                    url: \(url)
                    upstream_model: \(upstreamModel)
                    self_test:
                      - prompt: hi
                        chat: true
                        expect_regex: "\(expect)"
                """
            }
            let text = Mutex(yaml("ok", expect: "hello"))
            let load: @Sendable () -> LoadedConfig = { ConfigLoader(environment: [:]).load(text: text.withLock { $0 }, path: "up.yaml") }
            let first = load().config
            let gateway = UpstreamGateway(models: [UpstreamModel(configuration: first.models[0])], settings: settings, registry: registry)
            let pool = LocalModelPool(slots: [], availableMemory: { nil })
            let (id, fingerprint) = ModelVersion.identity(of: first.models[0])
            let releases = ReleaseController(versions: [(ModelVersion(model: "m", id: id, fingerprint: fingerprint, target: .upstream(gateway.pools[0])), nil)],
                                             locals: pool, upstreams: gateway)
            let reloader = Reloader(releases: releases, live: LiveSettings(apiKeys: [], adminKeys: [], maxConcurrent: nil, perMinute: 0),
                                    environment: Reloader.Environment(readConfig: load, localSpec: { _, _ in throw CancellationError() }),
                                    current: first, logger: Self.logger())
            // A new upstream model name: self-tested through the endpoint, then it takes the traffic.
            text.withLock { $0 = yaml("second", expect: "hello") }
            let report = await reloader.reload(trigger: "test")
            #expect(report.ok, "\(report)")
            await releases.waitForRetirements()
            #expect(gateway.pools.count == 1 && gateway.pools[0].model.upstreamName == "second" && fault.count("second") == 1)
            // A self-test the upstream fails: nothing changes.
            text.withLock { $0 = yaml("third", expect: "^goodbye") }
            let failed = await reloader.reload(trigger: "test")
            #expect(failed.status == 422 && failed.errors.joined().contains("goodbye"), "\(failed)")
            #expect(gateway.pools.count == 1 && gateway.pools[0].model.upstreamName == "second")
            #expect(releases.events.contains { $0.kind == "self_test_failed" })
            await gateway.shutdown()
        }
    }

    @Test("promotion in steps (5, 25, 50, 100), each after its interval and its minimum of canary requests; then the old version leaves the pool")
    func steps() async throws {
        let pool = LocalModelPool(slots: [], availableMemory: { nil })
        let stable = ScriptedBackend(), canary = ScriptedBackend()
        let v1 = Self.version("m", "v1", pool: pool, backend: stable, first: true)
        let releases = ReleaseController(versions: [(v1, nil), (Self.version("m", "v2", pool: pool, backend: canary), 5)],
                                         locals: pool, upstreams: nil,
                                         policy: RolloutPolicy(steps: [5, 25, 50, 100], stepIntervalSeconds: 10, stepMinRequests: 3))
        let t0 = Date().timeIntervalSince1970
        func feed(_ n: Int) { for _ in 0 ..< n { releases.record(model: "m", version: "v2", outcome: RequestOutcome(failed: false, seconds: 0.1, streamed: false)) } }
        releases.tick(now: t0 + 11)
        #expect(releases.status()[0].canaryPercent == 5, "no step without its minimum of requests")
        feed(3)
        releases.tick(now: t0 + 5)
        #expect(releases.status()[0].canaryPercent == 5, "no step before its interval")
        releases.tick(now: t0 + 11)
        #expect(releases.status()[0].canaryPercent == 25)
        feed(3); releases.tick(now: t0 + 22)
        #expect(releases.status()[0].canaryPercent == 50)
        feed(3); releases.tick(now: t0 + 33)
        let s = releases.status()[0]
        #expect(s.stable == "v2" && s.canary == nil && s.lastGood == "v2" && s.versions.map(\.id) == ["v2"])
        await releases.waitForRetirements()
        #expect(pool.slots.map(\.key) == ["m@v2"] && stable.state.withLock { $0.stopped })
        #expect(releases.events.map(\.kind).suffix(4) == ["weight", "weight", "promoted", "retired"])
    }

    @Test("admin: start, set-weight, promote and abort; the state file keeps stable, canary, weights and rollbacks across a restart")
    func adminAndState() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rollout-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("state.json").path
        let pool = LocalModelPool(slots: [], availableMemory: { nil })
        let backends = (0 ..< 3).map { _ in ScriptedBackend() }
        let versions = [(Self.version("m", "v1", pool: pool, backend: backends[0], first: true), Int?.none),
                        (Self.version("m", "v2", pool: pool, backend: backends[1]), nil),
                        (Self.version("m", "v3", pool: pool, backend: backends[2]), nil)]
        let releases = ReleaseController(versions: versions, locals: pool, upstreams: nil, stateFile: file)
        var options = ServerOptions()
        options.adminAPIKeys = ["adm"]
        let app = try AutoGLMServer.application(locals: pool, metrics: [:], registry: PrometheusCollectorRegistry(), options: options,
                                                logger: Self.logger(), releases: releases)
        try await app.test(.router) { client in
            func post(_ uri: String, _ body: String = "") async throws -> TestResponse {
                try await client.execute(uri: uri, method: .post, headers: [.authorization: "Bearer adm", .contentType: "application/json"],
                                         body: ByteBuffer(string: body))
            }
            #expect(try await post("/admin/rollout/m/start", #"{"version":"v2","percent":20}"#).status == .ok)
            #expect(try await post("/admin/rollout/m/weight", #"{"percent":40}"#).status == .ok)
            #expect(releases.status()[0].canaryPercent == 40)
            #expect(try await post("/admin/rollout/m/weight", #"{"percent":140}"#).status == .badRequest)
            #expect(try await post("/admin/rollout/nope/promote").status == .notFound)
            let noVersion = try await post("/admin/rollout/m/start", #"{"version":"v7"}"#)
            #expect(noVersion.status == .badRequest && String(buffer: noVersion.body).contains("v1, v2, v3"))
            #expect(try await post("/admin/rollout/m/promote").status == .ok)
            #expect(releases.status()[0].stable == "v2")
            #expect(try await post("/admin/rollout/m/abort").status == .conflict, "no canary to abort")
            #expect(try await post("/admin/rollout/m/start", #"{"version":"v3","percent":10}"#).status == .ok)
            // A key that is no credential at all is 401 (403 is for a known caller whose role is too low).
            let unknown = try await client.execute(uri: "/admin/rollout", method: .get, headers: [.authorization: "Bearer user"])
            #expect(unknown.status == .unauthorized)
            let reload = try await post("/admin/reload")
            #expect(reload.status == .conflict && String(buffer: reload.body).contains("configuration file"))
        }
        await releases.waitForRetirements()
        // A restart: the same configured versions, the state file read back.
        let restored = try RolloutState.read(file)
        #expect(restored.models["m"]?.stable == "v2" && restored.models["m"]?.canary == "v3" && restored.models["m"]?.canaryPercent == 10)
        let pool2 = LocalModelPool(slots: [], availableMemory: { nil })
        let again = ReleaseController(versions: [(Self.version("m", "v1", pool: pool2, backend: ScriptedBackend(), first: true), nil),
                                                 (Self.version("m", "v2", pool: pool2, backend: ScriptedBackend()), nil),
                                                 (Self.version("m", "v3", pool: pool2, backend: ScriptedBackend()), nil)],
                                      locals: pool2, upstreams: nil, restored: restored)
        let s = again.status()[0]
        #expect(s.stable == "v2" && s.canary == "v3" && s.canaryPercent == 10 && s.lastGood == "v2")
        // A rolled-back version stays idle after a restart even though the configuration still names it as the canary.
        var rolled = restored
        rolled.models["m"]?.canary = nil
        rolled.models["m"]?.rolledBack = ["v3"]
        let pool3 = LocalModelPool(slots: [], availableMemory: { nil })
        let third = ReleaseController(versions: [(Self.version("m", "v1", pool: pool3, backend: ScriptedBackend(), first: true), nil),
                                                 (Self.version("m", "v3", pool: pool3, backend: ScriptedBackend()), 50)],
                                      locals: pool3, upstreams: nil, restored: rolled)
        #expect(third.status()[0].canary == nil && third.status()[0].versions.last?.role == "rolled_back")
    }

    @Test("a version whose self-test fails never serves: its load fails with the reason, and the prompt's expectation is checked exactly, by regex and by tokens")
    func selfTest() async throws {
        let backend = ScriptedBackend()
        backend.state.withLock { $0.answer = "Paris is nice" }
        let served = ServedModel(name: "m", backend: backend, maxTokensLimit: 16)
        let spec = LocalModelSpec(name: "m", pinned: true, estimatedBytes: 0, load: { served })
        let passing = SelfTest(cases: [.init(prompt: "capital?", expect: "Paris is nice"), .init(prompt: "x", expectRegex: "^Paris"),
                                       .init(prompt: "y", expectTokens: [10, 11, 12])])
        _ = try spec.guarded(by: passing).load()
        #expect(backend.requests == 3)
        for failing in [SelfTest.Case(prompt: "p", expect: "Lyon"), .init(prompt: "p", expectRegex: "^Lyon$"), .init(prompt: "p", expectTokens: [1]),
                        .init(prompt: "p", expectRegex: "(")] {
            let b = ScriptedBackend()
            let model = ServedModel(name: "m", backend: b, maxTokensLimit: 16)
            let guarded = LocalModelSpec(name: "m", pinned: true, estimatedBytes: 0, load: { model }).guarded(by: SelfTest(cases: [failing]))
            #expect(throws: SelfTestRefusal.self) { _ = try guarded.load() }
            #expect(b.state.withLock { $0.stopped }, "a model that failed its self-test is stopped")
        }
        // Through the pool: the load fails, no request reaches the model.
        let b = ScriptedBackend()
        b.state.withLock { $0.failing = true }
        let model = ServedModel(name: "m", backend: b, maxTokensLimit: 16)
        let pool = LocalModelPool(slots: [LocalModelSlot(spec: LocalModelSpec(name: "m", pinned: false, estimatedBytes: 0, load: { model })
                .guarded(by: SelfTest(cases: [.init(prompt: "p", expectRegex: ".")])))], availableMemory: { nil })
        let app = try AutoGLMServer.application(locals: pool, metrics: [:], registry: PrometheusCollectorRegistry(), options: ServerOptions(),
                                                logger: Self.logger())
        try await app.test(.router) { client in
            let r = try await Self.complete(client)
            #expect(r.status == .internalServerError && String(buffer: r.body).contains("could not be loaded"))
        }
        #expect(b.requests == 1, "only the self-test's prompt reached it")
        #expect(pool.status()[0].lastError?.contains("self-test") == true)
    }
}
