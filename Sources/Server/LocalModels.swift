import Foundation
#if canImport(Glibc)
import Glibc
#endif
public import Logging
import Ops
import Serving
import Synchronization

/// How a local model is brought into memory: what it will cost, and the (blocking) load itself.
public struct LocalModelSpec: Sendable {
    public var name: String
    /// Loaded at start and never unloaded (by LRU, keep-alive or the memory check; an admin may).
    public var pinned: Bool
    /// Bytes the loaded model takes (weights, KV cache, activations, overhead), from the planner.
    public var estimatedBytes: Int
    /// The context it will be served with, when known before loading (`GET /v1/models`).
    public var contextLength: Int?
    /// Loads the model and returns its backend, not yet started. Blocks for seconds: it runs on a
    /// thread of its own, never on the event loops.
    public var load: @Sendable () throws -> ServedModel

    public init(name: String, pinned: Bool, estimatedBytes: Int, contextLength: Int? = nil,
                load: @escaping @Sendable () throws -> ServedModel) {
        self.name = name
        self.pinned = pinned
        self.estimatedBytes = estimatedBytes
        self.contextLength = contextLength
        self.load = load
    }
}

/// Rules for how many local models stay loaded.
public struct LocalModelPolicy: Sendable, Equatable {
    /// Most models loaded at once; 0: no limit.
    public var maxLoadedModels: Int
    /// A model idle this long is unloaded (Ollama's keep_alive); nil: never.
    public var keepAliveSeconds: Double?
    /// The loaded models' estimated bytes together stay under this; nil: only the machine's
    /// available memory is checked before a load.
    public var memoryBudgetBytes: Int?

    public init(maxLoadedModels: Int = 0, keepAliveSeconds: Double? = nil, memoryBudgetBytes: Int? = nil) {
        self.maxLoadedModels = max(0, maxLoadedModels)
        self.keepAliveSeconds = keepAliveSeconds
        self.memoryBudgetBytes = memoryBudgetBytes
    }
}

/// One local model the server answers for, loaded or not.
public final class LocalModelSlot: Sendable {
    public let spec: LocalModelSpec
    /// The served name.
    public var name: String { spec.name }
    /// Unique in the pool: the served name, or "name@version" for a further version of it.
    public let key: String
    let created = Int(Date().timeIntervalSince1970)

    public init(spec: LocalModelSpec, key: String? = nil) {
        self.spec = spec
        self.key = key ?? spec.name
    }
}

/// The local models: loads them on demand, keeps at most `maxLoadedModels` and the memory budget,
/// unloads the least recently used idle one to make room, and idle ones after `keepAliveSeconds`.
/// A model with requests in flight is never unloaded; when no room can be made, a load is refused
/// with 503 and Retry-After instead of risking the machine's memory.
///
/// A request holds a `Lease` from `acquire` until its work is queued in the scheduler; from then on
/// the scheduler's own counts keep the model busy.
public final class LocalModelPool: Sendable {
    private let slotList: Mutex<[LocalModelSlot]>
    /// The slots now in the pool (versions come and go with releases).
    public var slots: [LocalModelSlot] { slotList.withLock { $0 } }
    public let policy: LocalModelPolicy
    /// Bytes the machine can still give (MemAvailable); nil: unknown (no check).
    private let availableMemory: @Sendable () -> Int?
    private let state: Mutex<[String: Entry]>
    private let logger: Logger?
    private let draining = Atomic<Bool>(false)
    private let clock = ContinuousClock()

    private enum Phase {
        case unloaded
        case loading(Task<ServedModel, any Error>)
        case loaded(ServedModel)
    }

    private struct Entry {
        var phase: Phase = .unloaded
        var leases = 0
        var lastUsed: ContinuousClock.Instant
        var loads = 0
        var lastError: String?
    }

    public init(slots: [LocalModelSlot], policy: LocalModelPolicy = LocalModelPolicy(),
                availableMemory: @escaping @Sendable () -> Int? = LocalModelPool.memAvailable, logger: Logger? = nil) {
        slotList = Mutex(slots)
        self.policy = policy
        self.logger = logger
        self.availableMemory = availableMemory
        let now = ContinuousClock.now
        state = Mutex(Dictionary(uniqueKeysWithValues: slots.map { ($0.key, Entry(lastUsed: now)) }))
    }

    /// Models already loaded (the server's own, or tests'): pinned, never unloaded.
    public convenience init(loaded models: [ServedModel]) {
        let slots = models.map { m in
            LocalModelSlot(spec: LocalModelSpec(name: m.name, pinned: true, estimatedBytes: 0, contextLength: m.contextLength, load: { m }))
        }
        self.init(slots: slots, availableMemory: { nil })
        state.withLock { entries in
            for m in models { entries[m.name]?.phase = .loaded(m) }
        }
    }

    /// The kernel's MemAvailable, read now, and no more than the control group's headroom (in a container
    /// or a systemd unit with MemoryMax, the limit is what an allocation runs into, not the host's memory).
    public static let memAvailable: @Sendable () -> Int? = {
        let host = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)).flatMap(MemInfo.parse)?.availableBytes
        guard let cgroup = CgroupMemory.current()?.headroomBytes else { return host }
        return min(host ?? cgroup, cgroup)
    }

    public func slot(named name: String) -> LocalModelSlot? { slots.first { $0.name == name } }

    /// A request's hold on a loaded model.
    public struct Lease: Sendable {
        public let model: ServedModel
        let pool: LocalModelPool
        let key: String

        /// The request's work is queued (or it failed): the scheduler's counts take over.
        public func end() { pool.release(key) }
    }

    /// The model, loaded (waiting for a load in progress, or starting one and making room first).
    func acquire(_ slot: LocalModelSlot) async throws(APIError) -> Lease {
        enum Next { case ready(ServedModel), wait(Task<ServedModel, any Error>), refuse(APIError) }
        var victims: [ServedModel] = []
        let next: Next = state.withLock { entries in
            guard entries[slot.key] != nil else {
                return .refuse(.unavailable("The model '\(slot.name)' was replaced while this request was routed. Retry.", retryAfter: 1))
            }
            entries[slot.key]!.leases += 1
            entries[slot.key]!.lastUsed = clock.now
            switch entries[slot.key]!.phase {
            case .loaded(let m):
                return .ready(m)
            case .loading(let task):
                return .wait(task)
            case .unloaded:
                if draining.load(ordering: .relaxed) {
                    entries[slot.key]!.leases -= 1
                    return .refuse(.unavailable("The server is shutting down and loads no models. Retry against another replica.", retryAfter: 5))
                }
                switch makeRoom(for: slot, in: &entries) {
                case .failure(let error):
                    entries[slot.key]!.leases -= 1
                    return .refuse(error)
                case .success(let evicted):
                    victims = evicted
                }
                let task = Task { try await Self.runBlocking(slot.spec.load) }
                entries[slot.key]!.phase = .loading(task)
                entries[slot.key]!.loads += 1
                return .wait(task)
            }
        }
        for v in victims {
            logger?.notice("model unloaded to make room", metadata: ["model": .string(v.name), "for": .string(slot.name)])
            Self.stop(v)
        }
        switch next {
        case .ready(let m):
            return Lease(model: m, pool: self, key: slot.key)
        case .refuse(let error):
            throw error
        case .wait(let task):
            do {
                let m = try await task.value
                state.withLock { entries in
                    if case .loading(let current) = entries[slot.key]!.phase, current == task {
                        m.backend.start()
                        entries[slot.key]!.phase = .loaded(m)
                        entries[slot.key]!.lastError = nil
                    }
                }
                return Lease(model: m, pool: self, key: slot.key)
            } catch {
                let message = "\(error)"
                state.withLock { entries in
                    entries[slot.key]!.leases -= 1
                    if case .loading(let current) = entries[slot.key]!.phase, current == task { entries[slot.key]!.phase = .unloaded }
                    entries[slot.key]!.lastError = message
                }
                throw .internalError("The model '\(slot.name)' could not be loaded; the server's log and GET /admin/models say why.")
            }
        }
    }

    private func release(_ key: String) {
        state.withLock { entries in
            guard entries[key] != nil else { return }
            entries[key]!.leases = max(0, entries[key]!.leases - 1)
            entries[key]!.lastUsed = clock.now
        }
    }

    /// Adds a slot whose model is already loaded and started (a new version of a served model, loaded
    /// beside the running one).
    public func add(_ slot: LocalModelSlot, loaded model: ServedModel) {
        state.withLock { entries in
            precondition(entries[slot.key] == nil, "slot keys are unique")
            var e = Entry(lastUsed: clock.now)
            e.phase = .loaded(model)
            e.loads = 1
            entries[slot.key] = e
            slotList.withLock { $0.append(slot) }
        }
    }

    /// Takes a slot out of the pool once no request holds it and its engine is idle (streams
    /// included), then stops its model: memory returns when the last reference goes.
    public func retire(_ slot: LocalModelSlot) async {
        while state.withLock({ $0[slot.key]?.leases ?? 0 }) > 0 { try? await Task.sleep(for: .milliseconds(20)) }
        // Out of the pool first (readiness and metrics no longer see it), then drained and stopped.
        let handoff = Handoff(state.withLock { entries in
            defer {
                entries[slot.key] = nil
                slotList.withLock { $0.removeAll { $0 === slot } }
            }
            if case .loaded(let m)? = entries[slot.key]?.phase { return m }
            return nil
        })
        if let model = handoff.model {
            model.backend.beginDraining()
            await model.backend.waitUntilIdle()
        }
        await Self.release(handoff)
        logger?.notice("model version unloaded", metadata: ["slot": .string(slot.key)])
    }

    /// Chooses the models to unload so that `slot` fits and marks them unloaded; when it cannot fit,
    /// nothing is unloaded.
    private func makeRoom(for slot: LocalModelSlot, in entries: inout [String: Entry]) -> Result<[ServedModel], APIError> {
        var evictedNames: Set<String> = []
        func resident() -> [LocalModelSlot] {
            slots.filter { s in
                guard s !== slot, !evictedNames.contains(s.key) else { return false }
                switch entries[s.key]!.phase {
                case .unloaded: return false
                case .loading, .loaded: return true
                }
            }
        }
        func bytes(_ list: [LocalModelSlot]) -> Int { list.reduce(0) { $0 + $1.spec.estimatedBytes } }
        let available = availableMemory()
        var evicted: [ServedModel] = []
        var freed = 0
        func fits() -> Bool {
            let others = resident()
            if policy.maxLoadedModels > 0 && others.count + 1 > policy.maxLoadedModels { return false }
            if let budget = policy.memoryBudgetBytes, bytes(others) + slot.spec.estimatedBytes > budget { return false }
            // Memory an unload frees is counted as soon as it is decided (the pages go when the
            // backend's last reference does).
            if let available, slot.spec.estimatedBytes > available + freed { return false }
            return true
        }
        while !fits() {
            // The least recently used model that is loaded, idle and not pinned.
            let candidates = resident().filter { s in
                guard !s.spec.pinned, entries[s.key]!.leases == 0, case .loaded(let m) = entries[s.key]!.phase else { return false }
                let stats = m.backend.statistics
                return stats.running == 0 && stats.waiting == 0
            }
            guard let victim = candidates.min(by: { entries[$0.key]!.lastUsed < entries[$1.key]!.lastUsed }),
                  case .loaded(let m) = entries[victim.key]!.phase else {
                let busy = resident().map(\.name).joined(separator: ", ")
                let why: String
                if policy.maxLoadedModels > 0 && resident().count + 1 > policy.maxLoadedModels {
                    why = "\(resident().count) models are loaded (server.max_loaded_models \(policy.maxLoadedModels)) and none is idle (\(busy))"
                } else {
                    why = "it needs about \(Self.gib(slot.spec.estimatedBytes)) and the memory left (\(available.map(Self.gib) ?? "?") available"
                        + (policy.memoryBudgetBytes.map { ", server.models_memory_budget \(Self.gib($0))" } ?? "")
                        + ") cannot be freed: the other models are busy or pinned (\(busy))"
                }
                return .failure(.unavailable("The model '\(slot.name)' cannot be loaded now: \(why). Retry later.", retryAfter: 10))
            }
            evictedNames.insert(victim.key)
            freed += victim.spec.estimatedBytes
            evicted.append(m)
        }
        // Only now, when the load will go ahead, are the chosen models taken out.
        for name in evictedNames { entries[name]!.phase = .unloaded }
        return .success(evicted)
    }

    /// Loads the pinned models, in order, before the server listens. A model planned to need more
    /// memory than the machine has available (or than the budget) is not loaded: the error says so.
    public func preloadPinned() async throws {
        var planned = 0
        for slot in slots where slot.spec.pinned {
            let need = slot.spec.estimatedBytes
            if let budget = policy.memoryBudgetBytes, planned + need > budget {
                throw PreloadError(message: "the pinned model '\(slot.name)' is planned at \(Self.gib(need)); with the pinned models before it that exceeds server.models_memory_budget (\(Self.gib(budget))). Raise the budget, unpin a model, or lower its context_length, max_sequences or kv_memory_budget.")
            }
            if let available = availableMemory(), need > available {
                throw PreloadError(message: "the model '\(slot.name)' is planned at \(Self.gib(need)) but this machine has \(Self.gib(available)) available. Lower its context_length, max_sequences or kv_memory_budget, use a smaller quantization, or free memory (`autoglm plan` shows the breakdown).")
            }
            let model = try await Self.runBlocking(slot.spec.load)
            planned += need
            state.withLock { entries in
                entries[slot.key]!.phase = .loaded(model)
                entries[slot.key]!.loads += 1
            }
        }
    }

    public struct PreloadError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Unloads models idle longer than the keep-alive; returns their names.
    @discardableResult
    public func sweep() -> [String] {
        guard let keepAlive = policy.keepAliveSeconds else { return [] }
        let now = clock.now
        var stopped: [ServedModel] = []
        state.withLock { entries in
            for s in slots where !s.spec.pinned {
                guard entries[s.key]!.leases == 0, case .loaded(let m) = entries[s.key]!.phase,
                      now - entries[s.key]!.lastUsed >= .milliseconds(Int64(keepAlive * 1000)) else { continue }
                let stats = m.backend.statistics
                guard stats.running == 0 && stats.waiting == 0 else {
                    entries[s.key]!.lastUsed = now  // still working: idle time starts when it is done
                    continue
                }
                entries[s.key]!.phase = .unloaded
                stopped.append(m)
            }
        }
        for m in stopped {
            logger?.notice("model unloaded after keep_alive", metadata: ["model": .string(m.name)])
            Self.stop(m)
        }
        return stopped.map(\.name)
    }

    /// Loads a model now (admin), making room as a request would.
    func load(_ slot: LocalModelSlot) async throws(APIError) {
        try await acquire(slot).end()
    }

    /// Unloads a model now (admin): refused while it has requests in flight.
    func unload(_ slot: LocalModelSlot) throws(APIError) {
        let stopped: ServedModel? = try state.withLock { entries throws(APIError) -> ServedModel? in
            guard case .loaded(let m) = entries[slot.key]!.phase else { return nil }
            let stats = m.backend.statistics
            guard entries[slot.key]!.leases == 0 && stats.running == 0 && stats.waiting == 0 else {
                throw APIError.unavailable("The model '\(slot.name)' has requests in flight; unload it when they are done.", retryAfter: 5)
            }
            entries[slot.key]!.phase = .unloaded
            return m
        }
        if let stopped { Self.stop(stopped) }
    }

    /// What an admin sees of each model.
    public struct Status: Sendable, Equatable {
        public var name: String
        /// "loaded", "loading" or "unloaded".
        public var state: String
        public var pinned: Bool
        public var estimatedBytes: Int
        public var running: Int
        public var waiting: Int
        public var idleSeconds: Double
        public var loads: Int
        public var lastError: String?
    }

    /// One slot's status (its name is the slot's key: `name@version` beyond a model's first version).
    public func status(of slot: LocalModelSlot) -> [Status] { status().filter { $0.name == slot.key } }

    public func status() -> [Status] {
        let now = clock.now
        return state.withLock { entries in
            slots.map { s in
                let e = entries[s.key]!
                var st = Status(name: s.key, state: "unloaded", pinned: s.spec.pinned, estimatedBytes: s.spec.estimatedBytes,
                                running: 0, waiting: 0, idleSeconds: Self.seconds(now - e.lastUsed), loads: e.loads, lastError: e.lastError)
                switch e.phase {
                case .unloaded: break
                case .loading: st.state = "loading"
                case .loaded(let m):
                    st.state = "loaded"
                    let stats = m.backend.statistics
                    st.running = stats.running
                    st.waiting = stats.waiting
                }
                return st
            }
        }
    }

    /// Whether new requests are taken (false once the server drains).
    public var isAcceptingRequests: Bool {
        !draining.load(ordering: .relaxed) && loaded.allSatisfy { $0.backend.isAcceptingRequests }
    }

    /// Shutdown: no more loads; the loaded models stop admitting and finish what they accepted.
    public func beginDraining() {
        draining.store(true, ordering: .relaxed)
        for m in loaded { m.backend.beginDraining() }
    }

    /// Returns when every loaded model is idle.
    public func waitUntilIdle() async {
        for m in loaded { await m.backend.waitUntilIdle() }
    }

    /// Stops every loaded model at once.
    public func shutdown() {
        draining.store(true, ordering: .relaxed)
        for m in loaded { m.backend.shutdown() }
    }

    /// Starts the loaded models' engines (idempotent).
    public func start() {
        for m in loaded { m.backend.start() }
    }

    /// The models loaded now (metrics, readiness, draining).
    public var loaded: [ServedModel] {
        state.withLock { entries in
            slots.compactMap { s in
                if case .loaded(let m) = entries[s.key]!.phase { return m }
                return nil
            }
        }
    }

    /// Whether every pinned model is loaded and taking requests.
    public var pinnedReady: Bool {
        state.withLock { entries in
            slots.filter(\.spec.pinned).allSatisfy { s in
                if case .loaded(let m) = entries[s.key]!.phase { return m.backend.isAcceptingRequests }
                return false
            }
        }
    }

    private static func stop(_ model: ServedModel) {
        let handoff = Handoff(model)
        Task.detached { await release(handoff) }
    }

    /// The only reference to a model being released, so that it can be dropped before waiting.
    final class Handoff: @unchecked Sendable {
        var model: ServedModel?
        init(_ model: ServedModel?) { self.model = model }
    }

    /// Stops a model and returns once its engine is gone (its thread ended and the last reference
    /// dropped, at most 10 s), then gives the freed heap back to the system: glibc keeps freed
    /// weight and cache buffers in its arenas otherwise, and a process that swaps versions would
    /// hold the memory of every version it ever loaded.
    static func release(_ handoff: Handoff) async {
        let probes: [WeakProbe] = {
            guard let backend = handoff.model?.backend else { return [] }
            backend.beginDraining()
            backend.shutdown()
            return backend.lifetimeObjects.map(WeakProbe.init)
        }()
        handoff.model = nil
        guard !probes.isEmpty else { return }
        for _ in 0 ..< 200 where probes.contains(where: \.isAlive) { try? await Task.sleep(for: .milliseconds(50)) }
        MemoryTrim.now()
    }

    static func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.name = "autoglm-load"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    static func gib(_ bytes: Int) -> String { ByteFormat.gib(bytes) }
    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
}

/// Whether an object still exists, without keeping it.
final class WeakProbe: @unchecked Sendable {
    private weak var object: AnyObject?
    init(_ object: AnyObject) { self.object = object }
    var isAlive: Bool { object != nil }
}

/// Returns free heap pages to the system (glibc's malloc_trim); nothing elsewhere.
enum MemoryTrim {
    #if canImport(Glibc)
    /// glibc's malloc_trim, looked up once (malloc.h is not in the Glibc module); nil with another libc.
    private static let trim: (@convention(c) (Int) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
    }()
    #endif

    static func now() {
        #if canImport(Glibc)
        _ = trim?(0)
        #endif
    }
}
