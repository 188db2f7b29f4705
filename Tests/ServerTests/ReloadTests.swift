import Engine
import Foundation
import GGUF
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Ops
import Prometheus
import Runtime
@testable import Server
import Serving
import Synchronization
import TestSupport
import Testing
import Tokenizer

/// Reloads on the default model: a changed entry becomes a new version (a scheduler of its own over the
/// same weights), self-tested, and takes the traffic while requests and streams are in flight.
@Suite("Reload on the default model", .serialized, .timeLimit(.minutes(10)))
struct ReloadTests {
    /// The configuration a reload reads: the default model as "smol" with this context and self-test.
    final class ConfigFile: Sendable {
        let text = Mutex("")
        func set(context: Int, selfTest: String = "", keys: String = "", extra: String = "") {
            text.withLock {
                $0 = """
                    server:
                      admin_api_keys: [adm]\(keys)
                    models:
                      - name: smol
                        path: \(Fixtures.defaultModelPath)
                        context_length: \(context)
                    \(selfTest)
                    \(extra)
                    """
            }
        }
        func load() -> LoadedConfig {
            ConfigLoader(environment: [:]).load(text: text.withLock { $0 }, path: "reload.yaml")
        }
    }

    final class Backends: Sendable {
        let list = Mutex<[LocalBackend]>([])
        func withLock<T>(_ body: (inout [LocalBackend]) -> T) -> T { list.withLock { body(&$0) } }
    }

    struct Setup {
        let releases: ReleaseController
        let reloader: Reloader
        let pool: LocalModelPool
        let file: ConfigFile
        let app: any ApplicationProtocol
        let backends: Backends
    }

    static func setup() throws -> Setup {
        _ = try #require(ServerTests.shared, "the default model is missing: run scripts/setup-model.sh")
        let backends = Backends()
        let makeSpec: @Sendable (AutoGLMConfig.Model) -> LocalModelSpec = { model in
            LocalModelSpec(name: model.name, pinned: true, estimatedBytes: 1 << 20, contextLength: model.contextLength) {
                // Each version loads its own engine, as serve does (an engine is driven by one scheduler at a time).
                let file = try GGUFFile(path: Fixtures.defaultModelPath)
                let engine = try ArchitectureRegistry.load(file, threads: 1)
                let tokenizer = try Tokenizer(gguf: file)
                let scheduler = Scheduler(model: engine, tokenizer: tokenizer,
                                          configuration: SchedulerConfiguration(maxSequences: 4, maxQueue: 64, cacheTokens: 4096),
                                          contextLength: model.contextLength ?? 512)
                let backend = LocalBackend(scheduler: scheduler)
                backends.withLock { $0.append(backend) }
                return ServedModel(name: model.name, backend: backend, maxTokensLimit: 64)
            }
        }
        let file = ConfigFile()
        file.set(context: 512)
        let first = file.load().config
        let entry = first.models[0]
        let model = try makeSpec(entry).load()
        model.backend.start()
        let pool = LocalModelPool(slots: [], availableMemory: { nil })
        let slot = LocalModelSlot(spec: makeSpec(entry))
        pool.add(slot, loaded: model)
        let (id, fingerprint) = ModelVersion.identity(of: entry)
        let releases = ReleaseController(versions: [(ModelVersion(model: "smol", id: id, fingerprint: fingerprint, target: .local(slot)), nil)],
                                         locals: pool, upstreams: nil)
        var logger = Logger(label: "reload-test")
        logger.logLevel = .critical
        var options = ServerOptions(port: 0)
        options.adminAPIKeys = ["adm"]
        let live = LiveSettings(options: options)
        let reloader = Reloader(releases: releases, live: live, environment: Reloader.Environment(
            readConfig: { file.load() }, localSpec: { model, _ in makeSpec(model) }, availableMemory: { nil }), current: first, logger: logger)
        let app = try AutoGLMServer.application(locals: pool, metrics: [:], registry: PrometheusCollectorRegistry(), options: options,
                                                logger: logger, releases: releases, reloader: reloader, live: live)
        return Setup(releases: releases, reloader: reloader, pool: pool, file: file, app: app, backends: backends)
    }

    static func request(_ client: some TestClientProtocol, stream: Bool) async throws -> TestResponse {
        try await client.execute(uri: "/v1/completions", method: .post, headers: [.contentType: "application/json"],
                                 body: ByteBuffer(string: #"{"model":"smol","prompt":"Once upon a time","max_tokens":24,"stream":\#(stream)}"#))
    }

    @Test("three reloads under four concurrent clients (streams and one-shot): no request fails, no stream is cut, one version is left")
    func underLoad() async throws {
        let s = try Self.setup()
        try await s.app.test(.live) { client in
            final class Tally: Sendable {
                let stop = Atomic<Bool>(false)
                let results = Mutex<(ok: Int, failed: [String], versions: Set<String>)>((0, [], []))
            }
            let tally = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for c in 0 ..< 4 {
                    group.addTask {
                        var i = 0
                        while !tally.stop.load(ordering: .relaxed) || i < 3 {
                            let stream = (c + i) % 2 == 0
                            let r = try await Self.request(client, stream: stream)
                            let body = String(buffer: r.body)
                            let complete = r.status == .ok && (!stream || body.hasSuffix("data: [DONE]\n\n"))
                            let version = r.headers[HTTPField.Name("X-AutoGLM-Version")!] ?? "?"
                            tally.results.withLock {
                                if complete { $0.ok += 1 } else { $0.failed.append("\(r.status.code): \(body.suffix(200))") }
                                $0.versions.insert(version)
                            }
                            i += 1
                        }
                    }
                }
                group.addTask {
                    for context in [640, 768, 896] {
                        try await Task.sleep(for: .milliseconds(700))
                        s.file.set(context: context)
                        let report = await s.reloader.reload(trigger: "test")
                        #expect(report.ok && report.changes.contains { $0.contains("serves all traffic") }, "\(report)")
                    }
                    try await Task.sleep(for: .milliseconds(500))
                    tally.stop.store(true, ordering: .relaxed)
                }
                try await group.waitForAll()
            }
            let r = tally.results.withLock { $0 }
            #expect(r.failed.isEmpty, "\(r.failed.count) failed: \(r.failed.prefix(3))")
            #expect(r.ok >= 12 && r.versions.count >= 2, "\(r.ok) requests over versions \(r.versions)")
        }
        await s.releases.waitForRetirements()
        #expect(s.pool.slots.count == 1 && s.releases.versions.count == 1)
        #expect(s.releases.status()[0].stable == s.releases.versions[0].id)
        let backends = s.backends.withLock { $0 }
        #expect(backends.count == 4)
        #expect(backends.dropLast().allSatisfy { !$0.isAcceptingRequests }, "the old versions were stopped")
        #expect(s.releases.events.filter { $0.kind == "retired" }.count == 3)
    }

    @Test("a new version that fails its self-test never serves: the reload says why (422) and the running version keeps all traffic")
    func failedSelfTest() async throws {
        let s = try Self.setup()
        let before = s.releases.status()[0].stable
        s.file.set(context: 640, selfTest: """
                self_test:
                  - prompt: "The capital of France is"
                    expect: " certainly not this"
                    max_tokens: 4
            """)
        try await s.app.test(.router) { client in
            let reload = try await client.execute(uri: "/admin/reload", method: .post, headers: [.authorization: "Bearer adm"])
            let text = String(buffer: reload.body)
            #expect(reload.status == .unprocessableContent && text.contains("self-test") && text.contains("certainly not this"), "\(text)")
            for _ in 0 ..< 4 {
                let r = try await Self.request(client, stream: false)
                #expect(r.status == .ok && r.headers[HTTPField.Name("X-AutoGLM-Version")!] == before)
            }
        }
        #expect(s.releases.status()[0].stable == before && s.pool.slots.count == 1)
        #expect(s.releases.events.contains { $0.kind == "self_test_failed" })
        let tested = try #require(s.backends.withLock { $0.last })
        #expect(!tested.isAcceptingRequests && tested.scheduler.currentStatistics.running == 0, "the failed version was stopped")
    }

    @Test("an invalid configuration changes nothing and names the key and line; a valid one applies keys and limits without a new version")
    func invalidThenSettings() async throws {
        let s = try Self.setup()
        let before = s.releases.status()[0].stable
        s.file.set(context: 512, extra: "limits:\n  max_tokenz: 5")
        try await s.app.test(.router) { client in
            let bad = try await client.execute(uri: "/admin/reload", method: .post, headers: [.authorization: "Bearer adm"])
            let text = String(buffer: bad.body)
            #expect(bad.status == .badRequest && text.contains("reload.yaml:9:3") && text.contains("limits.max_tokenz") && text.contains("invalid_config"), "\(text)")
            #expect(try await Self.request(client, stream: false).status == .ok)
            // Keys and limits: no new version, the API now needs a key.
            s.file.set(context: 512, keys: "\n  api_keys: [k1]", extra: "limits:\n  requests_per_minute: 100")
            let good = try await client.execute(uri: "/admin/reload", method: .post, headers: [.authorization: "Bearer adm"])
            #expect(good.status == .ok && String(buffer: good.body).contains("server.api_keys applied"), "\(String(buffer: good.body))")
            #expect(try await Self.request(client, stream: false).status == .unauthorized)
            let keyed = try await client.execute(uri: "/v1/completions", method: .post, headers: [.contentType: "application/json", .authorization: "Bearer k1"],
                                                 body: ByteBuffer(string: #"{"model":"smol","prompt":"hi","max_tokens":2}"#))
            #expect(keyed.status == .ok)
        }
        #expect(s.releases.status()[0].stable == before && s.backends.withLock { $0.count } == 1)
    }
}
