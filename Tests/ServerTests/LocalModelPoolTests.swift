import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import InferenceCore
import Logging
import NIOCore
import Prometheus
@testable import Server
import Serving
import Synchronization
import Testing

/// A backend with no model: the pool only looks at its counts and lifecycle.
final class FakeBackend: InferenceBackend {
    struct State { var running = 0; var started = false; var stopped = false }
    let state = Mutex(State())
    var contextLength: Int { 512 }
    var vocabularySize: Int { 100 }
    func renderChat(_ messages: [JinjaValue], extra: [String: JinjaValue], addGenerationPrompt: Bool) throws(ChatTemplateError) -> String { "" }
    func tokens(forRenderedChat text: String) -> [Int] { [1] }
    func encode(_ text: String, addSpecial: Bool) -> [Int] { [1] }
    func decode(_ tokens: [Int]) -> String { "" }
    func piece(of token: Int) -> String? { nil }
    func submit(_ request: GenerationRequest) throws(SchedulerError) -> AsyncStream<GenerationEvent> { AsyncStream { $0.finish() } }
    func cancel(_ id: String) {}
    var isAcceptingRequests: Bool { state.withLock { !$0.stopped } }
    var statistics: SchedulerStatistics {
        var s = SchedulerStatistics()
        s.running = state.withLock { $0.running }
        return s
    }
    func start() { state.withLock { $0.started = true } }
    func beginDraining() {}
    func waitUntilIdle() async {}
    func shutdown() { state.withLock { $0.stopped = true } }
    var busy: Bool {
        get { state.withLock { $0.running > 0 } }
        set { state.withLock { $0.running = newValue ? 1 : 0 } }
    }
}

/// Counts loads; each load makes a fresh fake backend (kept so the test can look at it).
final class FakeLoader: Sendable {
    let backends = Mutex<[String: [FakeBackend]]>([:])
    let failing = Mutex<Set<String>>([])
    let delay: Duration

    init(delay: Duration = .zero) { self.delay = delay }

    func spec(_ name: String, pinned: Bool = false, bytes: Int = 1 << 30) -> LocalModelSpec {
        LocalModelSpec(name: name, pinned: pinned, estimatedBytes: bytes, contextLength: 512) { [self] in
            if delay > .zero { Thread.sleep(forTimeInterval: Double(delay.components.attoseconds) * 1e-18 + Double(delay.components.seconds)) }
            if failing.withLock({ $0.contains(name) }) { throw LocalModelPool.PreloadError(message: "corrupt file for \(name)") }
            let b = FakeBackend()
            backends.withLock { $0[name, default: []].append(b) }
            return ServedModel(name: name, backend: b, maxTokensLimit: 16)
        }
    }

    func loads(_ name: String) -> Int { backends.withLock { $0[name]?.count ?? 0 } }
    func last(_ name: String) -> FakeBackend? { backends.withLock { $0[name]?.last } }
}

@Suite("Local model pool")
struct LocalModelPoolTests {
    static func pool(_ loader: FakeLoader, _ specs: [LocalModelSpec], policy: LocalModelPolicy = LocalModelPolicy(),
                     available: Int? = nil) -> LocalModelPool {
        LocalModelPool(slots: specs.map { LocalModelSlot(spec: $0) }, policy: policy, availableMemory: { available })
    }

    static func state(_ pool: LocalModelPool) -> [String: String] {
        Dictionary(uniqueKeysWithValues: pool.status().map { ($0.name, $0.state) })
    }

    @Test("a model loads on its first request, once, and is started")
    func onDemand() async throws {
        let loader = FakeLoader()
        let p = Self.pool(loader, [loader.spec("a")])
        #expect(Self.state(p) == ["a": "unloaded"])
        let slot = try #require(p.slot(named: "a"))
        try await p.acquire(slot).end()
        try await p.acquire(slot).end()
        #expect(loader.loads("a") == 1)
        #expect(loader.last("a")?.state.withLock { $0.started } == true)
        #expect(Self.state(p) == ["a": "loaded"])
    }

    @Test("requests arriving while a model loads wait for that one load")
    func concurrentLoadsOnce() async throws {
        let loader = FakeLoader(delay: .milliseconds(100))
        let p = Self.pool(loader, [loader.spec("a")])
        let slot = try #require(p.slot(named: "a"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0 ..< 5 { group.addTask { try await p.acquire(slot).end() } }
            try await group.waitForAll()
        }
        #expect(loader.loads("a") == 1)
    }

    @Test("at max_loaded_models, the least recently used idle model is unloaded; a busy or pinned one never is")
    func leastRecentlyUsed() async throws {
        let loader = FakeLoader()
        let p = Self.pool(loader, [loader.spec("pin", pinned: true), loader.spec("a"), loader.spec("b"), loader.spec("c")],
                          policy: LocalModelPolicy(maxLoadedModels: 3))
        try await p.preloadPinned()
        for name in ["a", "b"] { try await p.acquire(p.slot(named: name)!).end() }
        // a was used before b: loading c unloads a (pin is pinned).
        try await p.acquire(p.slot(named: "c")!).end()
        #expect(Self.state(p) == ["pin": "loaded", "a": "unloaded", "b": "loaded", "c": "loaded"])
        #expect(loader.last("a")?.state.withLock { $0.stopped } == true)

        // b is busy (a request running): loading a again unloads c, the idle one, though b is older.
        loader.last("b")!.busy = true
        try await p.acquire(p.slot(named: "a")!).end()
        #expect(Self.state(p) == ["pin": "loaded", "a": "loaded", "b": "loaded", "c": "unloaded"])
        #expect(loader.loads("a") == 2)

        // Everything busy: a load is refused with 503 and Retry-After, and nothing is unloaded.
        loader.last("a")!.busy = true
        do {
            _ = try await p.acquire(p.slot(named: "c")!)
            Issue.record("expected a refusal")
        } catch {
            #expect(error.status == .serviceUnavailable && error.retryAfter != nil)
            #expect(error.message.contains("max_loaded_models"))
        }
        #expect(Self.state(p) == ["pin": "loaded", "a": "loaded", "b": "loaded", "c": "unloaded"])
    }

    @Test("a lease keeps a model from being unloaded until the request is queued")
    func leaseProtects() async throws {
        let loader = FakeLoader()
        let p = Self.pool(loader, [loader.spec("a"), loader.spec("b")], policy: LocalModelPolicy(maxLoadedModels: 1))
        let lease = try await p.acquire(p.slot(named: "a")!)
        await #expect(throws: APIError.self) { _ = try await p.acquire(p.slot(named: "b")!) }
        lease.end()
        try await p.acquire(p.slot(named: "b")!).end()
        #expect(Self.state(p) == ["a": "unloaded", "b": "loaded"])
    }

    @Test("memory: a model that does not fit what is available unloads idle models first, else is refused")
    func memoryCheck() async throws {
        let loader = FakeLoader()
        let gib = 1 << 30
        // 3 GiB available now; each model is planned at 2 GiB.
        let p = Self.pool(loader, [loader.spec("a", bytes: 2 * gib), loader.spec("b", bytes: 2 * gib), loader.spec("big", bytes: 8 * gib)],
                          available: 3 * gib)
        try await p.acquire(p.slot(named: "a")!).end()
        try await p.acquire(p.slot(named: "b")!).end()  // fits: 2 <= 3 (what a uses is already out of "available")
        #expect(Self.state(p) == ["a": "loaded", "b": "loaded", "big": "unloaded"])
        // 8 GiB > 3 available + 4 freed by unloading both: refused.
        do {
            _ = try await p.acquire(p.slot(named: "big")!)
            Issue.record("expected a refusal")
        } catch {
            #expect(error.status == .serviceUnavailable)
            #expect(error.message.contains("memory"))
        }
        // Nothing was unloaded for a load that could not happen.
        #expect(Self.state(p) == ["a": "loaded", "b": "loaded", "big": "unloaded"])
        #expect(loader.last("a")?.state.withLock { $0.stopped } == false)
    }

    @Test("the memory budget bounds the loaded models' planned bytes together")
    func memoryBudget() async throws {
        let loader = FakeLoader()
        let gib = 1 << 30
        let p = Self.pool(loader, [loader.spec("a", bytes: 2 * gib), loader.spec("b", bytes: 2 * gib)],
                          policy: LocalModelPolicy(memoryBudgetBytes: 3 * gib))
        try await p.acquire(p.slot(named: "a")!).end()
        try await p.acquire(p.slot(named: "b")!).end()
        #expect(Self.state(p) == ["a": "unloaded", "b": "loaded"])
    }

    @Test("keep_alive unloads idle unpinned models; busy ones stay")
    func keepAlive() async throws {
        let loader = FakeLoader()
        let p = Self.pool(loader, [loader.spec("pin", pinned: true), loader.spec("a"), loader.spec("b")],
                          policy: LocalModelPolicy(keepAliveSeconds: 0.01))
        try await p.preloadPinned()
        for name in ["a", "b"] { try await p.acquire(p.slot(named: name)!).end() }
        loader.last("b")!.busy = true
        try await Task.sleep(for: .milliseconds(50))
        #expect(p.sweep() == ["a"])
        #expect(Self.state(p) == ["pin": "loaded", "a": "unloaded", "b": "loaded"])
    }

    @Test("a failed load is reported (to the client without paths, to the admin with the reason) and retried next time")
    func loadFailure() async throws {
        let loader = FakeLoader()
        let p = Self.pool(loader, [loader.spec("a")])
        _ = loader.failing.withLock { $0.insert("a") }
        do {
            _ = try await p.acquire(p.slot(named: "a")!)
            Issue.record("expected a failure")
        } catch {
            #expect(error.status == .internalServerError && !error.message.contains("corrupt"))
        }
        #expect(p.status().first?.lastError == "corrupt file for a")
        #expect(Self.state(p) == ["a": "unloaded"])
        loader.failing.withLock { $0.removeAll() }
        try await p.acquire(p.slot(named: "a")!).end()
        #expect(Self.state(p) == ["a": "loaded"] && p.status().first?.lastError == nil)
    }

    @Test("an admin unload is refused while requests run; draining refuses new loads")
    func unloadAndDrain() async throws {
        let loader = FakeLoader()
        let p = Self.pool(loader, [loader.spec("a"), loader.spec("b")])
        try await p.acquire(p.slot(named: "a")!).end()
        loader.last("a")!.busy = true
        #expect(throws: APIError.self) { try p.unload(p.slot(named: "a")!) }
        loader.last("a")!.busy = false
        try p.unload(p.slot(named: "a")!)
        #expect(Self.state(p)["a"] == "unloaded")
        p.beginDraining()
        do {
            _ = try await p.acquire(p.slot(named: "b")!)
            Issue.record("expected a refusal")
        } catch {
            #expect(error.status == .serviceUnavailable && error.message.contains("shutting down"))
        }
    }

    @Test("a pinned model planned above the available memory stops the start with the numbers")
    func preloadMemory() async throws {
        let loader = FakeLoader()
        let p = Self.pool(loader, [loader.spec("a", pinned: true, bytes: 5 << 30)], available: 2 << 30)
        await #expect(throws: LocalModelPool.PreloadError.self) { try await p.preloadPinned() }
        #expect(loader.loads("a") == 0)
    }

    @Test("admin routes: off without admin keys, admin keys only, list, load and unload")
    func adminRoutes() async throws {
        let loader = FakeLoader()
        let registry = PrometheusCollectorRegistry()
        var logger = Logger(label: "test")
        logger.logLevel = .error
        for (keys, expected) in [([String](), HTTPResponse.Status.notFound), (["admin"], .forbidden)] {
            var options = ServerOptions(apiKeys: ["user"])
            options.adminAPIKeys = keys
            let app = try AutoGLMServer.application(locals: Self.pool(loader, [loader.spec("a")]), metrics: [:], registry: registry,
                                                    options: options, logger: logger)
            try await app.test(.router) { client in
                let r = try await client.execute(uri: "/admin/models", method: .get, headers: [.authorization: "Bearer user"])
                #expect(r.status == expected)
            }
        }
        var options = ServerOptions(apiKeys: ["user"])
        options.adminAPIKeys = ["admin"]
        let p = Self.pool(loader, [loader.spec("a"), loader.spec("b")])
        let app = try AutoGLMServer.application(locals: p, metrics: [:], registry: registry, options: options, logger: logger)
        try await app.test(.router) { client in
            let admin: HTTPFields = [.authorization: "Bearer admin"]
            let list = try await client.execute(uri: "/admin/models", method: .get, headers: admin)
            #expect(list.status == .ok)
            #expect(String(buffer: list.body).contains(#""state":"unloaded""#))
            let load = try await client.execute(uri: "/admin/models/b/load", method: .post, headers: admin)
            #expect(load.status == .ok && String(buffer: load.body).contains(#""state":"loaded""#))
            #expect(Self.state(p)["b"] == "loaded")
            let unload = try await client.execute(uri: "/admin/models/b/unload", method: .post, headers: admin)
            #expect(unload.status == .ok && Self.state(p)["b"] == "unloaded")
            let missing = try await client.execute(uri: "/admin/models/zzz/load", method: .post, headers: admin)
            #expect(missing.status == .notFound)
            // The model list shows every local model, loaded or not; an admin key works on the API too.
            let models = try await client.execute(uri: "/v1/models", method: .get, headers: admin)
            #expect(models.status == .ok && String(buffer: models.body).contains(#""id":"b""#))
        }
    }
}
