import Foundation
public import Logging
import Prometheus
import Synchronization

/// One version of a served model: a local engine (a slot of the local pool) or an upstream pool,
/// with the configuration it was made from and its golden-prompt self-test.
public final class ModelVersion: Sendable {
    public enum Target: Sendable {
        case local(LocalModelSlot)
        case upstream(UpstreamPool)
    }

    /// The served name (what clients send as `model`).
    public let model: String
    /// models[].version, else a short hash of the entry's settings (stable across restarts).
    public let id: String
    /// What the version was made from (a changed entry is a new version).
    public let fingerprint: String
    public let target: Target
    public let selfTest: SelfTest

    public init(model: String, id: String, fingerprint: String = "", target: Target, selfTest: SelfTest = SelfTest()) {
        self.model = model
        self.id = id
        self.fingerprint = fingerprint.isEmpty ? id : fingerprint
        self.target = target
        self.selfTest = selfTest
    }

    var kind: String {
        switch target {
        case .local: return "local"
        case .upstream: return "upstream"
        }
    }
}

/// The versions of every served model and how requests are split between them: the stable version,
/// at most one canary with its percentage, the last good version; automatic promotion in steps and
/// automatic rollback on the policy's rule. A request takes a `Ticket` (the version's in-flight count)
/// from `pick` until its work is handed to the engine or the upstream; a version leaving service waits
/// for its tickets and then for its engine to go idle, so no request or stream is cut.
public final class ReleaseController: Sendable {
    struct Release {
        var versions: [ModelVersion]
        var stable: String
        var canary: String?
        var percent: Double = 0
        var lastGood: String
        var rolledBack: Set<String> = []
        /// When the canary's current step began, and its request count then.
        var stepStarted: Double = 0
        var stepStartTotal = 0
        var health: [String: HealthWindow] = [:]
        var inFlight: [String: Int] = [:]
        /// Circuit opens of each upstream version already counted.
        var opensSeen: [String: Int] = [:]

        func version(_ id: String) -> ModelVersion? { versions.first { $0.id == id } }
    }

    private struct State {
        var releases: [String: Release] = [:]
        var events: [RolloutEvent] = []
        var policy: RolloutPolicy
    }

    private let state: Mutex<State>
    public let names: [String]
    let locals: LocalModelPool
    let upstreams: UpstreamGateway?
    let stateFile: String?
    let logger: Logger?
    let prometheus: PrometheusCollectorRegistry?
    /// Versions leaving service (tests wait for them).
    private let retiring = Mutex<[Task<Void, Never>]>([])

    /// `versions` in configuration order; for each name the first is stable unless the state file says
    /// otherwise; a later one with `canaryPercent` becomes the canary.
    public init(versions: [(version: ModelVersion, canaryPercent: Int?)], locals: LocalModelPool, upstreams: UpstreamGateway?,
                policy: RolloutPolicy = RolloutPolicy(), stateFile: String? = nil, restored: RolloutState? = nil,
                prometheus: PrometheusCollectorRegistry? = nil, logger: Logger? = nil) {
        var releases: [String: Release] = [:]
        var order: [String] = []
        for (v, canaryPercent) in versions {
            if releases[v.model] == nil {
                order.append(v.model)
                releases[v.model] = Release(versions: [v], stable: v.id, lastGood: v.id)
            } else {
                releases[v.model]!.versions.append(v)
                if let p = canaryPercent, releases[v.model]!.canary == nil {
                    releases[v.model]!.canary = v.id
                    releases[v.model]!.percent = Double(p)
                }
            }
        }
        // The state file wins where its versions are still configured.
        for (name, saved) in restored?.models ?? [:] {
            guard var r = releases[name] else { continue }
            r.rolledBack = Set(saved.rolledBack).intersection(r.versions.map(\.id))
            if r.version(saved.stable) != nil { r.stable = saved.stable }
            if r.version(saved.lastGood) != nil { r.lastGood = saved.lastGood }
            if let c = saved.canary, r.version(c) != nil, c != r.stable, !r.rolledBack.contains(c) {
                r.canary = c
                r.percent = saved.canaryPercent
            } else if r.canary.map({ r.rolledBack.contains($0) || $0 == r.stable }) ?? false {
                r.canary = nil
                r.percent = 0
            }
            releases[name] = r
        }
        let now = Date().timeIntervalSince1970
        for name in order { releases[name]!.stepStarted = now }
        let upstreamVersions = versions.map(\.version)
        state = Mutex(State(releases: releases, events: restored?.events ?? [], policy: policy))
        names = order
        self.locals = locals
        self.upstreams = upstreams
        self.stateFile = stateFile
        self.logger = logger
        self.prometheus = prometheus
        for name in order { publishWeights(releases[name]!) }
        for v in upstreamVersions { watchAttempts(v) }
    }

    /// An upstream version's attempts feed its health window.
    private func watchAttempts(_ v: ModelVersion) {
        guard case .upstream(let pool) = v.target else { return }
        let model = v.model, id = v.id
        pool.observeAttempts { [weak self] failed in
            self?.record(model: model, version: id, outcome: RequestOutcome(failed: failed, seconds: nil, streamed: false))
        }
    }

    /// One version per local slot and upstream pool, "v1" each (a server without versioned configuration, and tests).
    public convenience init(locals: LocalModelPool, upstreams: UpstreamGateway?) {
        let versions = locals.slots.map { (ModelVersion(model: $0.name, id: "v1", target: .local($0)), Int?.none) }
            + (upstreams?.pools.map { (ModelVersion(model: $0.model.name, id: "v1", target: .upstream($0)), Int?.none) } ?? [])
        self.init(versions: versions, locals: locals, upstreams: upstreams)
    }

    public var policy: RolloutPolicy {
        get { state.withLock { $0.policy } }
        set { state.withLock { $0.policy = newValue } }
    }

    /// The served name as the client spelled it, else case-insensitively.
    func canonicalName(_ name: String) -> String? {
        names.contains(name) ? name : names.first { $0.lowercased() == name.lowercased() }
    }

    // MARK: routing

    /// A request's hold on a version: ended when its work is queued or it failed.
    public final class Ticket: Sendable {
        public let version: ModelVersion
        let controller: ReleaseController
        private let ended = Atomic<Bool>(false)

        init(version: ModelVersion, controller: ReleaseController) {
            self.version = version
            self.controller = controller
        }

        public func end() {
            guard !ended.exchange(true, ordering: .relaxed) else { return }
            controller.state.withLock { s in
                s.releases[version.model]?.inFlight[version.id, default: 1] -= 1
            }
        }

        deinit { end() }
    }

    /// The stable version of a model (tokenizer routes, /v1/models).
    public func stable(_ name: String) -> ModelVersion? {
        state.withLock { s in s.releases[name].flatMap { $0.version($0.stable) } }
    }

    /// Picks the version for one request: `override` (the X-AutoGLM-Version header) names one; else
    /// the canary takes its percentage, by `key` (the user or API key) when there is one.
    func pick(_ name: String, key: String?, override: String?) throws(APIError) -> Ticket {
        let result: Result<ModelVersion, APIError> = state.withLock { s in
            guard var r = s.releases[name] else { return .failure(.modelNotFound(name, available: names)) }
            let chosen: ModelVersion
            if let override, !override.isEmpty {
                guard let v = r.version(override) else {
                    return .failure(.invalidRequest(
                        "X-AutoGLM-Version: '\(override)' is not a loaded version of '\(name)' (loaded: \(r.versions.map(\.id).joined(separator: ", "))).",
                        param: "X-AutoGLM-Version"))
                }
                chosen = v
            } else if let c = r.canary, let canary = r.version(c), CanarySplit.toCanary(model: name, key: key, percent: r.percent) {
                chosen = canary
            } else {
                chosen = r.version(r.stable)!
            }
            r.inFlight[chosen.id, default: 0] += 1
            s.releases[name] = r
            return .success(chosen)
        }
        switch result {
        case .success(let v): return Ticket(version: v, controller: self)
        case .failure(let e): throw e
        }
    }

    // MARK: health

    /// A finished request of a version: the rollback rule runs on the canary's window.
    public func record(model: String, version: String, outcome: RequestOutcome, now: Double = Date().timeIntervalSince1970) {
        prometheus?.makeCounter(descriptor: ServerMetrics.descriptor("version_requests_total", "Requests by served model, version and outcome."),
                                labels: [("model_name", model), ("version", version), ("outcome", outcome.failed ? "error" : "ok")]).increment()
        let rolled: RolloutEvent? = state.withLock { s in
            guard var r = s.releases[model], r.version(version) != nil else { return nil }
            let rule = s.policy.rollback
            r.health[version, default: HealthWindow()].record(outcome, at: now, window: rule.windowSeconds)
            var event: RolloutEvent?
            if version == r.canary, let why = r.health[version]!.verdict(rule) {
                event = Self.rollBack(&r, reason: why, now: now)
            }
            s.releases[model] = r
            if let event { s.events.append(event) }
            return event
        }
        if let rolled { announce(rolled) }
    }

    /// Rolls the canary back in `r`: all traffic to the last good version; the canary stays loaded, idle.
    private static func rollBack(_ r: inout Release, reason: String, now: Double) -> RolloutEvent {
        let bad = r.canary!
        r.rolledBack.insert(bad)
        r.canary = nil
        r.percent = 0
        if r.version(r.lastGood) != nil { r.stable = r.lastGood }
        return RolloutEvent(time: now, model: r.version(bad)!.model, kind: "rolled_back", version: bad,
                            detail: "\(reason); all traffic to \(r.stable)")
    }

    /// Promotion steps and the restart rule; the server calls it every second.
    public func tick(now: Double = Date().timeIntervalSince1970) {
        var happened: [RolloutEvent] = []
        var retire: [ModelVersion] = []
        state.withLock { s in
            let policy = s.policy
            for name in names {
                guard var r = s.releases[name], let c = r.canary, let canary = r.version(c) else { continue }
                if case .upstream(let pool) = canary.target {
                    let opens = pool.circuitOpens, seen = r.opensSeen[c] ?? 0
                    for _ in 0 ..< max(0, opens - seen) {
                        r.health[c, default: HealthWindow()].recordRestart(at: now, window: policy.rollback.windowSeconds)
                    }
                    r.opensSeen[c] = opens
                }
                r.health[c, default: HealthWindow()].prune(now: now, window: policy.rollback.windowSeconds)
                if let why = r.health[c]!.verdict(policy.rollback) {
                    happened.append(Self.rollBack(&r, reason: why, now: now))
                } else if policy.autoPromote, !policy.steps.isEmpty,
                          now - r.stepStarted >= policy.stepIntervalSeconds,
                          (r.health[c]?.total ?? 0) - r.stepStartTotal >= policy.stepMinRequests {
                    let next = policy.nextStep(after: r.percent)
                    if next >= 100 {
                        let (event, old) = Self.promote(&r, now: now)
                        happened.append(event)
                        if let old { retire.append(old) }
                    } else {
                        r.percent = next
                        r.stepStarted = now
                        r.stepStartTotal = r.health[c]?.total ?? 0
                        happened.append(RolloutEvent(time: now, model: name, kind: "weight", version: c, detail: "canary at \(Int(next))% (automatic step)"))
                    }
                }
                s.releases[name] = r
            }
            s.events.append(contentsOf: happened)
        }
        for e in happened { announce(e) }
        for v in retire { self.retire(v) }
    }

    /// The canary becomes stable and the last good version; the old stable leaves service.
    private static func promote(_ r: inout Release, now: Double) -> (RolloutEvent, ModelVersion?) {
        let c = r.canary!
        let old = r.stable
        r.stable = c
        r.lastGood = c
        r.canary = nil
        r.percent = 0
        let leaving = old == c ? nil : r.version(old)
        r.versions.removeAll { $0.id == old && old != c }
        return (RolloutEvent(time: now, model: r.version(c)!.model, kind: "promoted", version: c, detail: "all traffic; \(old) leaves service"), leaving)
    }

    // MARK: changes (reload and the admin API)

    public enum ChangeError: Error, CustomStringConvertible {
        case unknownModel(String)
        case unknownVersion(model: String, version: String, loaded: [String])
        case noCanary(String)
        case invalid(String)

        public var description: String {
            switch self {
            case .unknownModel(let m): return "'\(m)' is not a served model."
            case .unknownVersion(let m, let v, let loaded): return "'\(v)' is not a loaded version of '\(m)' (loaded: \(loaded.joined(separator: ", ")))."
            case .noCanary(let m): return "'\(m)' has no canary."
            case .invalid(let why): return why
            }
        }
    }

    /// Adds a version that passed its self-test: loaded, taking no traffic.
    public func add(_ version: ModelVersion) throws(ChangeError) {
        try state.withLock { s throws(ChangeError) in
            guard var r = s.releases[version.model] else { throw .unknownModel(version.model) }
            guard r.version(version.id) == nil else { throw .invalid("'\(version.model)' already has a version '\(version.id)'.") }
            r.versions.append(version)
            r.rolledBack.remove(version.id)
            watchAttempts(version)
            s.releases[version.model] = r
            s.events.append(RolloutEvent(model: version.model, kind: "loaded", version: version.id, detail: "passed its self-test (\(version.selfTest.cases.count) prompts)"))
        }
        persist()
    }

    /// All traffic to `version` at once; the versions not kept (stable before, canary) leave service
    /// after their in-flight requests.
    public func switchTo(_ model: String, version id: String, reason: String) throws(ChangeError) {
        let leaving: [ModelVersion] = try state.withLock { s throws(ChangeError) in
            guard var r = s.releases[model] else { throw .unknownModel(model) }
            guard r.version(id) != nil else { throw .unknownVersion(model: model, version: id, loaded: r.versions.map(\.id)) }
            let gone = r.versions.filter { $0.id != id }
            r.versions = r.versions.filter { $0.id == id }
            r.stable = id
            r.lastGood = id
            r.canary = nil
            r.percent = 0
            r.rolledBack.remove(id)
            s.releases[model] = r
            s.events.append(RolloutEvent(model: model, kind: "switched", version: id, detail: reason))
            return gone
        }
        announce(RolloutEvent(model: model, kind: "switched", version: id, detail: reason))
        for v in leaving { retire(v) }
    }

    /// Starts `version` as the canary at `percent`.
    public func startCanary(_ model: String, version id: String, percent: Double) throws(ChangeError) {
        guard (0 ... 100).contains(percent) else { throw .invalid("The percentage must be in 0...100.") }
        let event: RolloutEvent = try state.withLock { s throws(ChangeError) in
            guard var r = s.releases[model] else { throw .unknownModel(model) }
            guard r.version(id) != nil else { throw .unknownVersion(model: model, version: id, loaded: r.versions.map(\.id)) }
            guard id != r.stable else { throw .invalid("'\(id)' is already the stable version of '\(model)'.") }
            r.canary = id
            r.percent = percent
            r.rolledBack.remove(id)
            r.stepStarted = Date().timeIntervalSince1970
            r.stepStartTotal = r.health[id]?.total ?? 0
            r.health[id] = HealthWindow()
            s.releases[model] = r
            let e = RolloutEvent(model: model, kind: "canary_started", version: id, detail: "\(Self.percent(percent)) of traffic")
            s.events.append(e)
            return e
        }
        announce(event)
    }

    /// Sets the canary's share.
    public func setWeight(_ model: String, percent: Double) throws(ChangeError) {
        guard (0 ... 100).contains(percent) else { throw .invalid("The percentage must be in 0...100.") }
        let event: RolloutEvent = try state.withLock { s throws(ChangeError) in
            guard var r = s.releases[model] else { throw .unknownModel(model) }
            guard let c = r.canary else { throw .noCanary(model) }
            r.percent = percent
            r.stepStarted = Date().timeIntervalSince1970
            r.stepStartTotal = r.health[c]?.total ?? 0
            s.releases[model] = r
            let e = RolloutEvent(model: model, kind: "weight", version: c, detail: "canary at \(Self.percent(percent))")
            s.events.append(e)
            return e
        }
        announce(event)
    }

    /// The canary takes all traffic and becomes the stable version.
    public func promote(_ model: String) throws(ChangeError) {
        let (event, old): (RolloutEvent, ModelVersion?) = try state.withLock { s throws(ChangeError) in
            guard var r = s.releases[model] else { throw .unknownModel(model) }
            guard r.canary != nil else { throw .noCanary(model) }
            let result = Self.promote(&r, now: Date().timeIntervalSince1970)
            s.releases[model] = r
            s.events.append(result.0)
            return result
        }
        announce(event)
        if let old { retire(old) }
    }

    /// The canary takes no more traffic (it stays loaded, idle, for inspection); `unload` also takes
    /// idle versions out of memory.
    public func abort(_ model: String, unload: Bool = false) throws(ChangeError) {
        let (event, gone): (RolloutEvent?, [ModelVersion]) = try state.withLock { s throws(ChangeError) in
            guard var r = s.releases[model] else { throw .unknownModel(model) }
            var e: RolloutEvent?
            if let c = r.canary {
                r.canary = nil
                r.percent = 0
                if r.version(r.lastGood) != nil { r.stable = r.lastGood }
                e = RolloutEvent(model: model, kind: "aborted", version: c, detail: "all traffic to \(r.stable)")
                s.events.append(e!)
            } else if !unload {
                throw .noCanary(model)
            }
            var gone: [ModelVersion] = []
            if unload {
                gone = r.versions.filter { $0.id != r.stable }
                r.versions.removeAll { $0.id != r.stable }
            }
            s.releases[model] = r
            return (e, gone)
        }
        if let event { announce(event) }
        for v in gone { retire(v) }
        if event == nil { persist() }
    }

    /// Takes a version out of service: no new requests; once its tickets are done and its engine is
    /// idle (streams included), it is unloaded (local) or dropped (upstream).
    func retire(_ v: ModelVersion) {
        let task = Task { [self] in
            while state.withLock({ $0.releases[v.model]?.inFlight[v.id] ?? 0 }) > 0 {
                try? await Task.sleep(for: .milliseconds(20))
            }
            switch v.target {
            case .local(let slot):
                await locals.retire(slot)
            case .upstream(let pool):
                while pool.requestsInFlight > 0 { try? await Task.sleep(for: .milliseconds(20)) }
                upstreams?.remove(pool)
            }
            let e = RolloutEvent(model: v.model, kind: "retired", version: v.id, detail: "out of service after its last request")
            state.withLock { $0.events.append(e) }
            announce(e)
        }
        retiring.withLock { $0.append(task) }
    }

    /// Waits for every version leaving service to be gone (tests, shutdown).
    public func waitForRetirements() async {
        while true {
            let tasks = retiring.withLock { t -> [Task<Void, Never>] in
                defer { t.removeAll() }
                return t
            }
            if tasks.isEmpty { return }
            for t in tasks { await t.value }
        }
    }

    // MARK: what an admin sees

    public struct VersionStatus: Sendable, Equatable {
        public var id: String
        public var kind: String
        /// stable, canary, idle or rolled_back
        public var role: String
        public var percent: Double
        public var inFlight: Int
        public var windowRequests: Int
        public var windowErrors: Int
        public var totalRequests: Int
    }

    public struct ReleaseStatus: Sendable, Equatable {
        public var model: String
        public var stable: String
        public var canary: String?
        public var canaryPercent: Double
        public var lastGood: String
        public var versions: [VersionStatus]
    }

    public func status(now: Double = Date().timeIntervalSince1970) -> [ReleaseStatus] {
        state.withLock { s in
            names.compactMap { name in
                guard var r = s.releases[name] else { return nil }
                return ReleaseStatus(model: name, stable: r.stable, canary: r.canary, canaryPercent: r.percent, lastGood: r.lastGood,
                                     versions: r.versions.map { v in
                    r.health[v.id, default: HealthWindow()].prune(now: now, window: s.policy.rollback.windowSeconds)
                    let h = r.health[v.id]!
                    let role = v.id == r.stable ? "stable" : v.id == r.canary ? "canary" : r.rolledBack.contains(v.id) ? "rolled_back" : "idle"
                    let percent = v.id == r.canary ? r.percent : v.id == r.stable ? 100 - (r.canary == nil ? 0 : r.percent) : 0
                    return VersionStatus(id: v.id, kind: v.kind, role: role, percent: percent, inFlight: r.inFlight[v.id] ?? 0,
                                         windowRequests: h.count, windowErrors: h.failures, totalRequests: h.total)
                })
            }
        }
    }

    public var events: [RolloutEvent] { state.withLock { $0.events } }

    /// Every version now serving or loaded (memory, metrics).
    public var versions: [ModelVersion] { state.withLock { s in names.flatMap { s.releases[$0]?.versions ?? [] } } }

    public func versions(of model: String) -> [ModelVersion] { state.withLock { $0.releases[model]?.versions ?? [] } }

    // MARK: effects

    private func announce(_ e: RolloutEvent) {
        let metadata: Logger.Metadata = ["model": .string(e.model), "version": .string(e.version), "detail": .string(e.detail)]
        if e.kind == "rolled_back" || e.kind == "self_test_failed" {
            logger?.warning("rollout: \(e.kind)", metadata: metadata)
            if e.kind == "rolled_back" {
                prometheus?.makeCounter(descriptor: ServerMetrics.descriptor("rollbacks_total", "Automatic rollbacks by served model and version."),
                                        labels: [("model_name", e.model), ("version", e.version)]).increment()
            }
        } else {
            logger?.notice("rollout: \(e.kind)", metadata: metadata)
        }
        if let r = state.withLock({ $0.releases[e.model] }) { publishWeights(r) }
        persist()
    }

    /// Records an event that is not a change of traffic (a failed self-test, a failed reload).
    public func note(_ e: RolloutEvent) {
        state.withLock { $0.events.append(e) }
        announce(e)
    }

    private func publishWeights(_ r: Release) {
        guard let prometheus else { return }
        for v in r.versions {
            // Counters exist from the start (at 0), so that a rate or an alert on them has a series.
            _ = prometheus.makeCounter(descriptor: ServerMetrics.descriptor("rollbacks_total", "Automatic rollbacks by served model and version."),
                                       labels: [("model_name", v.model), ("version", v.id)])
            let percent = v.id == r.canary ? r.percent : v.id == r.stable ? 100 - (r.canary == nil ? 0 : r.percent) : 0
            prometheus.makeGauge(descriptor: ServerMetrics.descriptor("version_traffic_percent", "Share of a served model's requests each loaded version takes."),
                                 labels: [("model_name", v.model), ("version", v.id)]).set(percent)
        }
    }

    /// The state as saved: each release and the last 200 events.
    public var snapshot: RolloutState {
        state.withLock { s in
            var out = RolloutState()
            for (name, r) in s.releases {
                out.models[name] = .init(stable: r.stable, canary: r.canary, canaryPercent: r.percent, lastGood: r.lastGood,
                                         rolledBack: r.rolledBack.sorted())
            }
            out.events = Array(s.events.suffix(200))
            return out
        }
    }

    private func persist() {
        guard let stateFile else { return }
        do {
            try snapshot.write(stateFile)
        } catch {
            logger?.error("cannot save the rollout state", metadata: ["file": .string(stateFile), "error": .string("\(error)")])
        }
    }

    static func percent(_ p: Double) -> String {
        p == p.rounded() ? "\(Int(p))%" : String(format: "%.1f%%", p)
    }
}
