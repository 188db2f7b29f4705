import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
public import Prometheus
import Synchronization

/// How the endpoints of one upstream model share its requests.
public enum UpstreamBalance: String, Sendable, CaseIterable {
    /// The available endpoint with the fewest requests in flight (ties in turn).
    case leastOutstanding = "least_outstanding"
    /// Available endpoints in turn.
    case roundRobin = "round_robin"
    /// Two available endpoints at random, the one with fewer in flight.
    case powerOfTwo = "power_of_two"
    /// Rendezvous hashing of the request's affinity key (X-Session-Id, `user`, or API key) over the
    /// endpoints: one key keeps its endpoint (and that engine's prefix cache); when an endpoint is
    /// unavailable only its keys move. Requests without a key: fewest in flight.
    case consistentHash = "consistent_hash"
}

/// How autoglm talks to upstream engines (the `upstream:` section of the configuration).
public struct UpstreamSettings: Sendable, Equatable {
    /// TCP connect limit per attempt.
    public var connectSeconds: Double
    /// Longest wait for the response head of one attempt (a GPU engine's queue plus prefill).
    public var firstByteSeconds: Double
    /// Longest silence between two reads of a response body (a stream that stops).
    public var readSeconds: Double
    /// Extra attempts on another (or the same) endpoint, only before anything reached the client.
    public var retries: Int
    /// First backoff before a retry; doubles per retry up to `maxBackoffSeconds`, with full jitter.
    public var backoffSeconds: Double
    public var maxBackoffSeconds: Double
    public var breaker: CircuitBreaker.Settings
    /// Active health checks: GET {base}/models every `healthIntervalSeconds` (0: off).
    public var healthIntervalSeconds: Double
    public var healthTimeoutSeconds: Double
    /// Consecutive failed checks that mark an endpoint unhealthy, and passed checks that bring it back.
    public var unhealthyThreshold: Int
    public var healthyThreshold: Int
    public var balance: UpstreamBalance

    public init(connectSeconds: Double = 5, firstByteSeconds: Double = 300, readSeconds: Double = 600, retries: Int = 2,
                backoffSeconds: Double = 0.1, maxBackoffSeconds: Double = 2, breaker: CircuitBreaker.Settings = .init(),
                healthIntervalSeconds: Double = 10, healthTimeoutSeconds: Double = 5, unhealthyThreshold: Int = 3,
                healthyThreshold: Int = 2, balance: UpstreamBalance = .leastOutstanding) {
        self.balance = balance
        self.connectSeconds = connectSeconds
        self.firstByteSeconds = firstByteSeconds
        self.readSeconds = readSeconds
        self.retries = max(0, retries)
        self.backoffSeconds = max(0, backoffSeconds)
        self.maxBackoffSeconds = max(backoffSeconds, maxBackoffSeconds)
        self.breaker = breaker
        self.healthIntervalSeconds = max(0, healthIntervalSeconds)
        self.healthTimeoutSeconds = max(0.1, healthTimeoutSeconds)
        self.unhealthyThreshold = max(1, unhealthyThreshold)
        self.healthyThreshold = max(1, healthyThreshold)
    }
}

/// A model served by OpenAI-compatible engines elsewhere (vLLM, SGLang, llama-server, another autoglm).
public struct UpstreamModel: Sendable, Equatable {
    public struct Endpoint: Sendable, Equatable {
        /// The base URL an OpenAI client would use, e.g. http://gpu-node:8000/v1.
        public var baseURL: String
        /// Sent as `Authorization: Bearer` to this endpoint; never logged or returned.
        public var apiKey: String?
        /// Its relative share of requests (a GPU twice as fast: 2).
        public var weight: Int

        public init(baseURL: String, apiKey: String? = nil, weight: Int = 1) {
            var url = baseURL
            while url.hasSuffix("/") { url.removeLast() }
            self.baseURL = url
            self.apiKey = apiKey
            self.weight = max(1, weight)
        }
    }

    /// The name clients send as `model`.
    public var name: String
    /// The name sent upstream (nil: the same name).
    public var upstreamName: String?
    public var endpoints: [Endpoint]
    /// Another served model that takes the request when no endpoint of this one is available.
    public var fallback: String?
    /// Reported in /v1/models when known.
    public var contextLength: Int?

    public init(name: String, upstreamName: String? = nil, endpoints: [Endpoint], fallback: String? = nil, contextLength: Int? = nil) {
        self.name = name
        self.upstreamName = upstreamName
        self.endpoints = endpoints
        self.fallback = fallback
        self.contextLength = contextLength
    }

    /// Checks an endpoint URL: http or https with a host. Returns what is wrong, or nil.
    public static func problem(with url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else { return "'\(url)' is not an http:// or https:// URL with a host (e.g. http://gpu-node:8000/v1)" }
        if components.user != nil || components.password != nil { return "'\(Self.redacted(url))' carries credentials; give them as the model's api_key" }
        return nil
    }

    /// The URL without user information, for logs, metrics and error messages.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.user = nil
        components.password = nil
        return components.string ?? url
    }
}

/// One endpoint's live state: breaker, health, requests in flight.
final class UpstreamEndpointState: Sendable {
    let endpoint: UpstreamModel.Endpoint
    /// The base URL without credentials (labels, messages).
    let label: String
    private struct State {
        var breaker: CircuitBreaker
        var healthy = true
        var healthStreak = 0
        var inFlight = 0
    }
    private let state: Mutex<State>

    init(endpoint: UpstreamModel.Endpoint, breaker: CircuitBreaker.Settings) {
        self.endpoint = endpoint
        label = UpstreamModel.redacted(endpoint.baseURL)
        state = Mutex(State(breaker: CircuitBreaker(settings: breaker)))
    }

    /// Whether a request could go here now (healthy and the breaker lets it).
    func isAvailable(now: Double) -> Bool { state.withLock { $0.healthy && $0.breaker.wouldAllow(now: now) } }
    var inFlight: Int { state.withLock { $0.inFlight } }
    var breakerState: CircuitBreaker.State { state.withLock { $0.breaker.state } }
    var breakerOpens: Int { state.withLock { $0.breaker.opens } }
    var isHealthy: Bool { state.withLock { $0.healthy } }
    func secondsUntilProbe(now: Double) -> Double { state.withLock { $0.breaker.secondsUntilProbe(now: now) } }

    /// Takes the endpoint for one attempt if it is available (a half-open breaker gives its one probe slot).
    func acquire(now: Double) -> Bool {
        state.withLock { s in
            guard s.healthy, s.breaker.allowRequest(now: now) else { return false }
            s.inFlight += 1
            return true
        }
    }

    enum Verdict { case success, failure, neutral }

    /// Ends one attempt: success and failure drive the breaker; neutral (4xx, client gone) frees a probe slot.
    func finish(_ verdict: Verdict, now: Double) {
        state.withLock { s in
            s.inFlight -= 1
            switch verdict {
            case .success: s.breaker.recordSuccess(now: now)
            case .failure: s.breaker.recordFailure(now: now)
            case .neutral: s.breaker.release()
            }
        }
    }

    /// A stream that broke after its head was counted as a success.
    func recordLateFailure(now: Double) { state.withLock { $0.breaker.recordFailure(now: now) } }

    /// One active health check's result; returns whether the health flag changed.
    @discardableResult
    func recordHealthCheck(passed: Bool, settings: UpstreamSettings) -> Bool {
        state.withLock { s in
            if passed == s.healthy {
                s.healthStreak = 0
                return false
            }
            s.healthStreak += 1
            let needed = passed ? settings.healthyThreshold : settings.unhealthyThreshold
            guard s.healthStreak >= needed else { return false }
            s.healthy = passed
            s.healthStreak = 0
            return true
        }
    }
}

/// The endpoints of one upstream model: choice of endpoint (fewest requests in flight among the
/// available ones, round robin between equals), metrics, health.
public final class UpstreamPool: Sendable {
    public let model: UpstreamModel
    let endpoints: [UpstreamEndpointState]
    let settings: UpstreamSettings
    let metrics: UpstreamMetrics
    private let cursor = Atomic<Int>(0)
    static let clock = ContinuousClock()
    static let epoch = clock.now

    public init(model: UpstreamModel, settings: UpstreamSettings, registry: PrometheusCollectorRegistry) {
        self.model = model
        self.settings = settings
        endpoints = model.endpoints.map { UpstreamEndpointState(endpoint: $0, breaker: settings.breaker) }
        metrics = UpstreamMetrics(registry: registry, model: model.name, endpoints: endpoints.map(\.label))
        for e in endpoints { metrics.setState(e) }
    }

    /// Seconds since the process started (the breakers' clock).
    static func now() -> Double {
        let d = clock.now - epoch
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Times the endpoints' circuits have opened, all together.
    public var circuitOpens: Int { endpoints.reduce(0) { $0 + $1.breakerOpens } }

    /// Attempts in flight on all endpoints.
    public var requestsInFlight: Int { endpoints.reduce(0) { $0 + $1.inFlight } }

    /// Whether some endpoint could take a request now (readiness).
    public var hasAvailableEndpoint: Bool {
        let now = Self.now()
        return endpoints.contains { $0.isAvailable(now: now) }
    }

    /// Picks and acquires an endpoint for one attempt, preferring ones not tried yet by this request.
    func acquire(excluding tried: Set<Int>, affinity: String? = nil) -> Int? {
        let now = Self.now()
        let start = cursor.add(1, ordering: .relaxed).newValue
        var random = SystemRandomNumberGenerator()
        let candidates = Self.preference(available: endpoints.map { $0.isAvailable(now: now) }, inFlight: endpoints.map(\.inFlight),
                                         keys: endpoints.map(\.endpoint.baseURL), tried: tried, balance: settings.balance,
                                         start: start, affinity: affinity, weights: endpoints.map(\.endpoint.weight), random: &random)
        for index in candidates where endpoints[index].acquire(now: now) {
            metrics.setState(endpoints[index])
            return index
        }
        return nil
    }

    /// The available endpoints in the order to try them: endpoints this request already tried last,
    /// the rest as `balance` says (`start`: the round-robin cursor; `keys`: what an endpoint's hash is
    /// made of; `weights`: each endpoint's relative share, 1 each by default). Pure, for tests.
    static func preference(available: [Bool], inFlight: [Int], keys: [String], tried: Set<Int>, balance: UpstreamBalance,
                           start: Int, affinity: String?, weights: [Int]? = nil,
                           random: inout some RandomNumberGenerator) -> [Int] {
        let n = available.count
        let w = (weights ?? []).count == n ? weights!.map { max(1, $0) } : Array(repeating: 1, count: n)
        let weighted = Set(w).count > 1
        // In turn from the cursor; with weights, in the smooth weighted round-robin sequence (each
        // endpoint `weight` times per cycle, spread out), from the cursor's place in it.
        let cycle = weighted ? Self.smoothCycle(w) : Array(0 ..< n)
        var seen = Set<Int>(), order: [Int] = []
        for k in 0 ..< cycle.count {
            let e = cycle[(start + k) % cycle.count]
            if available[e] && seen.insert(e).inserted { order.append(e) }
        }
        let fresh = order.filter { !tried.contains($0) }, again = order.filter { tried.contains($0) }
        // Fewest in flight per unit of weight: (inFlight + 1) / weight, compared exactly.
        func lighter(_ a: Int, _ b: Int) -> Bool { (inFlight[a] + 1) * w[b] < (inFlight[b] + 1) * w[a] }
        func fewest(_ list: [Int]) -> [Int] {
            list.enumerated().sorted { x, y in
                lighter(x.element, y.element) || (!lighter(y.element, x.element) && x.offset < y.offset)
            }.map(\.element)
        }
        switch balance {
        case .roundRobin:
            return fresh + again
        case .powerOfTwo where fresh.count >= 2:
            let a: Int, b: Int
            if weighted {
                // Two distinct endpoints drawn with probability in proportion to their weight.
                a = Self.draw(fresh.map { w[$0] }, excluding: nil, random: &random)
                b = Self.draw(fresh.map { w[$0] }, excluding: a, random: &random)
            } else {
                a = Int.random(in: 0 ..< fresh.count, using: &random)
                var other = Int.random(in: 0 ..< fresh.count - 1, using: &random)
                if other >= a { other += 1 }
                b = other
            }
            let first = lighter(fresh[b], fresh[a]) ? fresh[b] : fresh[a]
            return [first] + fewest(fresh.filter { $0 != first }) + fewest(again)
        case .consistentHash where affinity != nil:
            let key = affinity!
            // Weighted rendezvous hashing: score = weight / -ln(u), u the (key, endpoint) hash in (0, 1).
            func score(_ e: Int) -> Double {
                let u = (Double(Self.weight(key, keys[e]) >> 11) + 0.5) / Double(1 << 53)
                return Double(w[e]) / -Foundation.log(u)
            }
            func rank(_ list: [Int]) -> [Int] { list.sorted { (score($0), $0) > (score($1), $1) } }
            return rank(fresh) + rank(again)
        default:
            return fewest(fresh) + fewest(again)
        }
    }

    /// Smooth weighted round robin (nginx's): each step every endpoint gains its weight, the one with
    /// the most is chosen and pays the total. One cycle has `sum(weights)` steps.
    static func smoothCycle(_ weights: [Int]) -> [Int] {
        let total = weights.reduce(0, +)
        var current = Array(repeating: 0, count: weights.count)
        var cycle: [Int] = []
        for _ in 0 ..< total {
            for i in weights.indices { current[i] += weights[i] }
            let best = current.indices.max { (current[$0], -$0) < (current[$1], -$1) }!
            current[best] -= total
            cycle.append(best)
        }
        return cycle
    }

    /// An index drawn with probability in proportion to `weights`, never `excluding`.
    static func draw(_ weights: [Int], excluding: Int?, random: inout some RandomNumberGenerator) -> Int {
        let total = weights.indices.reduce(0) { $0 + ($1 == excluding ? 0 : weights[$1]) }
        var r = Int.random(in: 0 ..< total, using: &random)
        for i in weights.indices where i != excluding {
            if r < weights[i] { return i }
            r -= weights[i]
        }
        return weights.indices.last { $0 != excluding }!
    }

    /// A stable 64-bit hash of (key, endpoint) for rendezvous hashing (FNV-1a then a final mix, the
    /// same in every process and replica, unlike Swift's seeded Hasher).
    static func weight(_ key: String, _ endpoint: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        h = (h ^ 0xff) &* 0x100_0000_01b3
        for byte in endpoint.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        h ^= h >> 33; h = h &* 0xff51_afd7_ed55_8ccd; h ^= h >> 33; h = h &* 0xc4ce_b9fe_1a85_ec53; h ^= h >> 33
        return h
    }

    func finish(_ index: Int, _ verdict: UpstreamEndpointState.Verdict) {
        endpoints[index].finish(verdict, now: Self.now())
        metrics.setState(endpoints[index])
        switch verdict {
        case .success: attemptObserver.withLock { $0 }?(false)
        case .failure: attemptObserver.withLock { $0 }?(true)
        case .neutral: break
        }
    }

    func lateFailure(_ index: Int) {
        endpoints[index].recordLateFailure(now: Self.now())
        metrics.setState(endpoints[index])
        attemptObserver.withLock { $0 }?(true)
    }

    private let attemptObserver = Mutex<(@Sendable (_ failed: Bool) -> Void)?>(nil)

    /// Told of every attempt's verdict (success, or a failure: refused, timed out, 5xx, a broken
    /// stream); a release judges an upstream version by its attempts, which retries hide from clients.
    public func observeAttempts(_ observer: @escaping @Sendable (_ failed: Bool) -> Void) {
        attemptObserver.withLock { $0 = observer }
    }

    /// Seconds until the first open breaker lets a probe through (Retry-After when none is available).
    var retryAfterSeconds: Int {
        let now = Self.now()
        let waits = endpoints.map { $0.isHealthy ? $0.secondsUntilProbe(now: now) : settings.healthIntervalSeconds }
        return max(1, Int((waits.min() ?? 1).rounded(.up)))
    }

    /// Why no endpoint is available, endpoint by endpoint.
    var unavailableReasons: String {
        endpoints.map { e in
            e.isHealthy ? "\(e.label) (circuit \(e.breakerState == .open ? "open" : "half-open, probing"))" : "\(e.label) (failing health checks)"
        }.joined(separator: ", ")
    }

    /// One round of active health checks: GET {base}/models on every endpoint.
    func checkHealth(client: HTTPClient, logger: Logger) async {
        await withTaskGroup(of: Void.self) { group in
            for e in endpoints {
                group.addTask {
                    var request = HTTPClientRequest(url: e.endpoint.baseURL + "/models")
                    if let key = e.endpoint.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
                    var passed = false
                    do {
                        let response = try await client.execute(request, deadline: .now() + .nanoseconds(Int64(self.settings.healthTimeoutSeconds * 1e9)))
                        passed = response.status.code < 500
                        _ = try? await response.body.collect(upTo: 4 << 20)
                    } catch {}
                    if e.recordHealthCheck(passed: passed, settings: self.settings) {
                        logger.warning("upstream endpoint \(passed ? "healthy again" : "unhealthy")", metadata: [
                            "model": .string(self.model.name), "endpoint": .string(e.label)])
                    }
                    self.metrics.setState(e)
                }
            }
        }
    }
}

/// The upstream side's Prometheus metrics, labelled by model and endpoint.
final class UpstreamMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let model: String
    private let states: [String: Gauge]
    private let healthy: [String: Gauge]
    private let firstByte: [String: DurationHistogram]

    init(registry: PrometheusCollectorRegistry, model: String, endpoints: [String]) {
        self.registry = registry
        self.model = model
        var states: [String: Gauge] = [:], healthy: [String: Gauge] = [:], firstByte: [String: DurationHistogram] = [:]
        for e in endpoints {
            let labels = [("model_name", model), ("endpoint", e)]
            states[e] = registry.makeGauge(descriptor: ServerMetrics.descriptor(
                "upstream_circuit_state", "Circuit breaker per upstream endpoint: 0 closed, 1 half-open, 2 open."), labels: labels)
            healthy[e] = registry.makeGauge(descriptor: ServerMetrics.descriptor(
                "upstream_healthy", "1 while the endpoint passes its health checks."), labels: labels)
            firstByte[e] = registry.makeDurationHistogram(descriptor: ServerMetrics.descriptor(
                "upstream_time_to_first_byte_seconds", "Time from sending a request upstream to its response head."),
                labels: labels, buckets: ServerMetrics.latencyBuckets)
        }
        self.states = states
        self.healthy = healthy
        self.firstByte = firstByte
    }

    func setState(_ e: UpstreamEndpointState) {
        states[e.label]?.set(Double(e.breakerState.rawValue))
        healthy[e.label]?.set(Double(e.isHealthy ? 1 : 0))
    }

    /// outcome: success, client_error, server_error, connect_error, timeout, stream_error, cancelled.
    func count(endpoint: String, outcome: String) {
        registry.makeCounter(descriptor: ServerMetrics.descriptor("upstream_requests_total", "Attempts sent to upstream endpoints, by outcome."),
                             labels: [("model_name", model), ("endpoint", endpoint), ("outcome", outcome)]).increment()
    }

    func firstByte(endpoint: String, seconds: Double) { firstByte[endpoint]?.record(ServerMetrics.duration(seconds)) }
}
