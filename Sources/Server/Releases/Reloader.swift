import Foundation
public import Logging
public import Ops
import Serving
import Synchronization

/// Re-reads the configuration file (SIGHUP, POST /admin/reload, or the file changing) and applies it
/// without dropping a request: keys, limits, the log level and the rollout policy at once; a model
/// entry that changed becomes a new version, loaded beside the running one and self-tested before it
/// takes traffic (all at once, or as a canary). An invalid file changes nothing and says why.
public final class Reloader: Sendable {
    /// What a reload did.
    public struct Report: Sendable {
        /// 200 applied; 400 the configuration is invalid (nothing changed); 409 a reload is already running;
        /// 422 a model could not be loaded or failed its self-test (the running version keeps serving).
        public var status: Int = 200
        public var changes: [String] = []
        public var warnings: [String] = []
        public var errors: [String] = []
        public var ok: Bool { status == 200 }
    }

    /// What the reloader needs from the program that serves (the CLI wires these).
    public struct Environment: Sendable {
        /// Reads and validates the configuration file now.
        public var readConfig: @Sendable () -> LoadedConfig
        /// A local model entry's spec, planned from its header (not loaded; its load includes the self-test).
        public var localSpec: @Sendable (AutoGLMConfig.Model, AutoGLMConfig) throws -> LocalModelSpec
        /// Bytes the machine can still give; nil: unknown.
        public var availableMemory: @Sendable () -> Int?
        /// What identifies the configuration file's content now (FileStamp; for rollout.watch_config); nil: none.
        public var configModified: @Sendable () -> String?

        public init(readConfig: @escaping @Sendable () -> LoadedConfig,
                    localSpec: @escaping @Sendable (AutoGLMConfig.Model, AutoGLMConfig) throws -> LocalModelSpec,
                    availableMemory: @escaping @Sendable () -> Int? = LocalModelPool.memAvailable,
                    configModified: @escaping @Sendable () -> String? = { nil }) {
            self.readConfig = readConfig
            self.localSpec = localSpec
            self.availableMemory = availableMemory
            self.configModified = configModified
        }
    }

    let releases: ReleaseController
    let live: LiveSettings
    let environment: Environment
    let logger: Logger
    private let running = Atomic<Bool>(false)
    private let applied: Mutex<(config: AutoGLMConfig, modified: String?)>

    public init(releases: ReleaseController, live: LiveSettings, environment: Environment, current: AutoGLMConfig, logger: Logger) {
        self.releases = releases
        self.live = live
        self.environment = environment
        self.logger = logger
        applied = Mutex((current, environment.configModified()))
    }

    /// rollout.watch_config: reloads when the file changed since the last reload (its inode, size or modification
    /// time, through symbolic links: a Kubernetes ConfigMap volume swaps a link to a new file).
    public func reloadIfChanged() async {
        let now = environment.configModified()
        let changed = applied.withLock { $0.modified != now }
        guard changed, now != nil else { return }
        applied.withLock { $0.modified = now }
        _ = await reload(trigger: "the configuration file changed")
    }

    public func reload(trigger: String) async -> Report {
        guard !running.exchange(true, ordering: .acquiring) else {
            return Report(status: 409, errors: ["a reload is already running; try again when it is done"])
        }
        defer { running.store(false, ordering: .releasing) }
        logger.notice("reloading the configuration", metadata: ["trigger": .string(trigger)])
        let modified = environment.configModified()
        let loaded = environment.readConfig()
        var report = Report()
        report.warnings = loaded.warnings.map(\.description)
        guard loaded.errors.isEmpty else {
            report.status = 400
            report.errors = loaded.errors.map(\.description)
            for e in report.errors { logger.error("reload refused: the configuration is invalid; still serving the previous one", metadata: ["issue": .string(e)]) }
            releases.note(RolloutEvent(model: "*", kind: "reload_failed", version: "", detail: report.errors.joined(separator: "; ")))
            return report
        }
        let config = loaded.config
        let previous = applied.withLock { $0.config }

        // Settings that need no engine.
        live.apply(config)
        LiveLogLevel.level = Logger.Level(rawValue: config.logging.level) ?? .info
        releases.policy = RolloutPolicy(configuration: config.rollout)
        for (changed, what) in [(previous.server.apiKeys != config.server.apiKeys, "server.api_keys"),
                                (previous.server.adminAPIKeys != config.server.adminAPIKeys, "server.admin_api_keys"),
                                (previous.limits.maxConcurrentRequests != config.limits.maxConcurrentRequests, "limits.max_concurrent_requests"),
                                (previous.limits.requestsPerMinute != config.limits.requestsPerMinute, "limits.requests_per_minute"),
                                (previous.logging.level != config.logging.level, "logging.level"),
                                (previous.rollout != config.rollout, "rollout")] where changed {
            report.changes.append("\(what) applied")
        }
        for (changed, what) in [(previous.server.host != config.server.host || previous.server.port != config.server.port, "server.host/port"),
                                (previous.server.tls != config.server.tls, "server.tls"),
                                (previous.upstream != config.upstream, "upstream"),
                                (previous.metrics != config.metrics, "metrics"),
                                (previous.auth != config.auth, "auth (keys in auth.keys_file apply at once; the section itself at a restart)"),
                                (previous.limits.maxBodyBytes != config.limits.maxBodyBytes, "limits.max_body_bytes"),
                                (previous.limits.maxMessages != config.limits.maxMessages
                                    || previous.limits.maxStringLength != config.limits.maxStringLength, "limits.max_messages/max_string_length"),
                                (previous.logging.format != config.logging.format, "logging.format"),
                                (previous.tracing != config.tracing, "tracing"),
                                (previous.limits.maxTokens != config.limits.maxTokens || previous.limits.maxQueue != config.limits.maxQueue
                                    || previous.limits.maxPromptTokens != config.limits.maxPromptTokens, "limits.max_tokens/max_queue/max_prompt_tokens (apply to new versions)")]
            where changed {
            report.warnings.append("\(what) changed: takes effect at the next restart")
        }

        // Models.
        for name in config.models.map(\.name) where !releases.names.contains(name) && !report.warnings.contains(where: { $0.contains("'\(name)'") }) {
            report.warnings.append("model '\(name)' is new: adding a served model takes a restart")
        }
        for name in releases.names {
            let entries = config.models.filter { $0.name == name }
            if entries.isEmpty {
                report.warnings.append("model '\(name)' is no longer configured: it keeps serving until a restart")
                continue
            }
            for entry in entries {
                await apply(entry, config: config, report: &report)
            }
        }
        applied.withLock { $0 = (config, modified) }
        if !report.errors.isEmpty && report.status == 200 { report.status = 422 }
        logger.notice("reload done", metadata: ["changes": .string(report.changes.joined(separator: "; ")),
                                                "errors": .string(report.errors.joined(separator: "; "))])
        return report
    }

    /// One configuration entry of a served model: nothing when its version runs, else a new version.
    private func apply(_ entry: AutoGLMConfig.Model, config: AutoGLMConfig, report: inout Report) async {
        let name = entry.name
        let (id, fingerprint) = ModelVersion.identity(of: entry)
        let running = releases.versions(of: name)
        if let same = running.first(where: { $0.id == id }) {
            if same.fingerprint != fingerprint {
                report.errors.append("models entry '\(name)' version '\(id)' changed its settings: give the changed entry a new version label (models[].version)")
            }
            return
        }
        let policy = releases.policy
        do {
            let version = try await prepare(entry, id: id, fingerprint: fingerprint, config: config)
            try releases.add(version)
            let old = releases.stable(name)?.id ?? "?"
            if let percent = entry.canaryPercent ?? (policy.onReload == .canary ? policy.steps.first : nil) {
                try releases.startCanary(name, version: id, percent: Double(percent))
                report.changes.append("\(name): version \(id) loaded and self-tested; canary at \(percent)% beside \(old)")
            } else {
                try releases.switchTo(name, version: id, reason: "reload")
                report.changes.append("\(name): version \(id) loaded and self-tested; serves all traffic, \(old) leaves service after its in-flight requests")
            }
        } catch {
            let message = "\(name): version \(id) not taken into service: \(error)"
            report.errors.append(message)
            let kind = error is SelfTestRefusal ? "self_test_failed" : "load_failed"
            releases.note(RolloutEvent(model: name, kind: kind, version: id, detail: "\(error)"))
        }
    }

    struct PrepareError: Error, CustomStringConvertible {
        let description: String
    }

    /// Loads (local) or connects (upstream) a new version and runs its self-test; nothing serves from it yet.
    private func prepare(_ entry: AutoGLMConfig.Model, id: String, fingerprint: String, config: AutoGLMConfig) async throws -> ModelVersion {
        let test = SelfTest(configuration: entry.selfTest)
        let running = releases.versions(of: entry.name)
        if entry.path != nil {
            guard running.allSatisfy({ if case .local = $0.target { return true } else { return false } }) else {
                throw PrepareError(description: "'\(entry.name)' is served by an upstream; a local version of it takes a restart")
            }
            let spec = try environment.localSpec(entry, config).guarded(by: test)
            if let available = environment.availableMemory(), spec.estimatedBytes > available {
                throw PrepareError(description: "it is planned at \(ByteFormat.gib(spec.estimatedBytes)) and \(ByteFormat.gib(available)) is available beside the running version; free memory, or lower its context_length or max_sequences")
            }
            let model = try await LocalModelPool.runBlocking(spec.load)
            model.backend.start()
            let slot = LocalModelSlot(spec: spec, key: "\(entry.name)@\(id)")
            releases.locals.add(slot, loaded: model)
            return ModelVersion(model: entry.name, id: id, fingerprint: fingerprint, target: .local(slot), selfTest: test)
        }
        guard let gateway = releases.upstreams else {
            throw PrepareError(description: "this server started without upstream models; an upstream version takes a restart")
        }
        guard running.allSatisfy({ if case .upstream = $0.target { return true } else { return false } }) else {
            throw PrepareError(description: "'\(entry.name)' is served by the local engine; an upstream version of it takes a restart")
        }
        let model = UpstreamModel(configuration: entry)
        do throws(SelfTest.Failure) {
            try await test.run(on: model, client: gateway.client)
        } catch {
            throw SelfTestRefusal(model: entry.name, failure: error)
        }
        return ModelVersion(model: entry.name, id: id, fingerprint: fingerprint, target: .upstream(gateway.add(model)), selfTest: test)
    }
}
