/// A circuit breaker for one upstream endpoint, as Envoy's outlier detection and resilience4j's breaker
/// work: consecutive failures (connection errors, timeouts, 5xx; never a 4xx, which is the client's
/// fault) open it; while open no request is sent; after `openSeconds` one probe at a time is let
/// through (half-open), and `successThreshold` successes in a row close it, one failure opens it again.
///
/// A value type driven by the caller's clock (seconds on any monotonic scale), so that its policy is
/// tested without waiting.
public struct CircuitBreaker: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var failureThreshold: Int
        public var openSeconds: Double
        public var successThreshold: Int

        public init(failureThreshold: Int = 5, openSeconds: Double = 30, successThreshold: Int = 1) {
            self.failureThreshold = max(1, failureThreshold)
            self.openSeconds = max(0, openSeconds)
            self.successThreshold = max(1, successThreshold)
        }
    }

    /// The metric value of each state (`autoglm:upstream_circuit_state`).
    public enum State: Int, Sendable {
        case closed = 0, halfOpen = 1, open = 2
    }

    public let settings: Settings
    public private(set) var state = State.closed
    public private(set) var consecutiveFailures = 0
    private var openedAt = 0.0
    private var halfOpenSuccesses = 0
    private var probeInFlight = false

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Whether a request may go to the endpoint now. In half-open it admits one probe until that
    /// probe reports (`record` or `release`).
    public mutating func allowRequest(now: Double) -> Bool {
        switch state {
        case .closed:
            return true
        case .open:
            guard now - openedAt >= settings.openSeconds else { return false }
            state = .halfOpen
            halfOpenSuccesses = 0
            probeInFlight = true
            return true
        case .halfOpen:
            if probeInFlight { return false }
            probeInFlight = true
            return true
        }
    }

    /// Whether `allowRequest` would say yes, without taking a probe slot (readiness, selection).
    public func wouldAllow(now: Double) -> Bool {
        switch state {
        case .closed: return true
        case .open: return now - openedAt >= settings.openSeconds
        case .halfOpen: return !probeInFlight
        }
    }

    /// Seconds until an open breaker lets a probe through (Retry-After).
    public func secondsUntilProbe(now: Double) -> Double {
        state == .open ? max(0, settings.openSeconds - (now - openedAt)) : 0
    }

    public mutating func recordSuccess(now: Double) {
        consecutiveFailures = 0
        if state == .halfOpen {
            probeInFlight = false
            halfOpenSuccesses += 1
            if halfOpenSuccesses >= settings.successThreshold { state = .closed }
        }
    }

    public mutating func recordFailure(now: Double) {
        consecutiveFailures += 1
        switch state {
        case .halfOpen:
            open(now)
        case .closed:
            if consecutiveFailures >= settings.failureThreshold { open(now) }
        case .open:
            break
        }
    }

    /// A request that ended without a verdict on the endpoint (the client went away, a 4xx): frees the
    /// half-open probe slot without closing or opening.
    public mutating func release() {
        if state == .halfOpen { probeInFlight = false }
    }

    /// How many times the circuit has opened (a rollback rule counts these as restarts).
    public private(set) var opens = 0

    private mutating func open(_ now: Double) {
        opens += 1
        state = .open
        openedAt = now
        probeInFlight = false
        halfOpenSuccesses = 0
    }
}
