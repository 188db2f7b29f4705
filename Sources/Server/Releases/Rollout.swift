import Foundation

/// How versions of one served model share traffic and when a canary is promoted or rolled back
/// (the configuration's `rollout` section). Pure values: the controller applies them.
public struct RolloutPolicy: Sendable, Equatable {
    /// Canary percentages in order; a new version on `on_reload: canary` starts at the first.
    public var steps: [Int]
    /// Each step lasts at least this long...
    public var stepIntervalSeconds: Double
    /// ...and sees at least this many canary requests before the next step.
    public var stepMinRequests: Int
    /// Steps taken by the server (true) or only by `autoglm rollout promote` / set-weight (false).
    public var autoPromote: Bool
    /// What a reload does with a changed model: switch all traffic once the new version passes its
    /// self-test, or start it as a canary at the first step.
    public var onReload: OnReload
    public var rollback: RollbackRule

    public enum OnReload: String, Sendable, Equatable { case `switch`, canary }

    public init(steps: [Int] = [5, 25, 50, 100], stepIntervalSeconds: Double = 300, stepMinRequests: Int = 50, autoPromote: Bool = true,
                onReload: OnReload = .switch, rollback: RollbackRule = RollbackRule()) {
        self.steps = steps.filter { (1 ... 100).contains($0) }
        self.stepIntervalSeconds = stepIntervalSeconds
        self.stepMinRequests = stepMinRequests
        self.autoPromote = autoPromote
        self.onReload = onReload
        self.rollback = rollback
    }

    /// The step after `percent` (100 when none is larger).
    func nextStep(after percent: Double) -> Double {
        Double(steps.first { Double($0) > percent } ?? 100)
    }
}

/// When a version is rolled back: over the last `windowSeconds`, once `minRequests` were seen.
public struct RollbackRule: Sendable, Equatable {
    /// Fraction of failed requests (5xx, timeouts, engine failures) above which the version is rolled back.
    public var errorRate: Double
    public var windowSeconds: Double
    public var minRequests: Int
    /// p99 end-to-end latency of non-streamed requests above this rolls back; nil: not checked.
    public var p99LatencySeconds: Double?
    /// p99 time to the response head of streamed requests (the first token) above this rolls back; nil: not checked.
    public var p99FirstTokenSeconds: Double?
    /// An upstream version whose endpoints' circuits open this many times in the window is rolled back; 0: not checked.
    public var maxRestarts: Int

    public init(errorRate: Double = 0.05, windowSeconds: Double = 60, minRequests: Int = 20, p99LatencySeconds: Double? = nil,
                p99FirstTokenSeconds: Double? = nil, maxRestarts: Int = 3) {
        self.errorRate = errorRate
        self.windowSeconds = windowSeconds
        self.minRequests = max(1, minRequests)
        self.p99LatencySeconds = p99LatencySeconds
        self.p99FirstTokenSeconds = p99FirstTokenSeconds
        self.maxRestarts = maxRestarts
    }
}

/// One finished request of a version, as the rollback rule sees it.
public struct RequestOutcome: Sendable {
    public var failed: Bool
    /// End to end (or to the first token, streamed); nil: not timed (an upstream attempt).
    public var seconds: Double?
    public var streamed: Bool
    /// A time only (an upstream version's request: its failures are counted by attempt).
    public var timesOnly: Bool

    public init(failed: Bool, seconds: Double?, streamed: Bool, timesOnly: Bool = false) {
        self.failed = failed
        self.seconds = seconds
        self.streamed = streamed
        self.timesOnly = timesOnly
    }

    /// 5xx (and 499-free) statuses count against a version; 4xx are the client's.
    public init(status: Int, seconds: Double, streamed: Bool) {
        self.init(failed: status >= 500, seconds: seconds, streamed: streamed)
    }
}

/// The outcomes of one version over a sliding window (time-ordered; old ones dropped as new ones come).
struct HealthWindow: Sendable {
    private(set) var samples: [(at: Double, outcome: RequestOutcome)] = []
    private(set) var restarts: [Double] = []
    /// Every outcome ever recorded (the step rule counts these).
    private(set) var total = 0

    mutating func record(_ outcome: RequestOutcome, at now: Double, window: Double) {
        samples.append((now, outcome))
        if !outcome.timesOnly { total += 1 }
        prune(now: now, window: window)
    }

    mutating func recordRestart(at now: Double, window: Double) {
        restarts.append(now)
        prune(now: now, window: window)
    }

    mutating func prune(now: Double, window: Double) {
        if let first = samples.firstIndex(where: { now - $0.at <= window }) {
            if first > 0 { samples.removeFirst(first) }
        } else {
            samples.removeAll()
        }
        restarts.removeAll { now - $0 > window }
    }

    /// Requests (or upstream attempts) in the window, and how many failed.
    var count: Int { samples.reduce(0) { $0 + ($1.outcome.timesOnly ? 0 : 1) } }
    var failures: Int { samples.reduce(0) { $0 + ($1.outcome.failed && !$1.outcome.timesOnly ? 1 : 0) } }

    static func p99(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)]
    }

    /// Why the rule rolls this version back now; nil: it stays.
    func verdict(_ rule: RollbackRule) -> String? {
        if rule.maxRestarts > 0 && restarts.count >= rule.maxRestarts {
            return "its engine restarted or its upstream circuits opened \(restarts.count) times in \(Int(rule.windowSeconds)) s (limit \(rule.maxRestarts))"
        }
        guard count >= rule.minRequests else { return nil }
        let rate = Double(failures) / Double(count)
        if rate > rule.errorRate {
            return String(format: "%d of the last %d requests failed (%.1f%%, limit %.1f%%)", failures, count, rate * 100, rule.errorRate * 100)
        }
        // Times need the same minimum sample.
        let timed = samples.filter { $0.outcome.seconds != nil }
        guard timed.count >= rule.minRequests else { return nil }
        if let bound = rule.p99LatencySeconds,
           let p = Self.p99(samples.filter { !$0.outcome.streamed && !$0.outcome.failed }.compactMap(\.outcome.seconds)), p > bound {
            return String(format: "p99 latency %.2f s is above %.2f s", p, bound)
        }
        if let bound = rule.p99FirstTokenSeconds,
           let p = Self.p99(samples.filter { $0.outcome.streamed && !$0.outcome.failed }.compactMap(\.outcome.seconds)), p > bound {
            return String(format: "p99 time to first token %.2f s is above %.2f s", p, bound)
        }
        return nil
    }
}

/// Which version a request goes to: the same key always lands in the same bucket of 10,000, so a
/// user (or API key) sticks to one version while the percentage does not change, and moves only
/// one way as it grows.
public enum CanarySplit {
    /// FNV-1a over the model's name and the key: stable across processes and restarts.
    public static func bucket(model: String, key: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in (model + "\u{0}" + key).utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        // Fold the high bits in: FNV's low bits alone are weak for short keys.
        hash ^= hash >> 29
        hash = hash &* 0xbf58_476d_1ce4_e5b9
        hash ^= hash >> 32
        return Int(hash % 10_000)
    }

    /// Whether a request goes to the canary at `percent` (0...100). Without a key, at random.
    public static func toCanary(model: String, key: String?, percent: Double) -> Bool {
        guard percent > 0 else { return false }
        guard percent < 100 else { return true }
        let bucket = key.map { Self.bucket(model: model, key: $0) } ?? Int.random(in: 0 ..< 10_000)
        return Double(bucket) < percent * 100
    }
}

/// What happened to a release, for the log, the admin API and the state file.
public struct RolloutEvent: Codable, Sendable, Equatable {
    public var time: Double
    public var model: String
    /// loaded, self_test_failed, switched, canary_started, weight, promoted, rolled_back, aborted, retired, reload_failed
    public var kind: String
    public var version: String
    public var detail: String

    public init(time: Double = Date().timeIntervalSince1970, model: String, kind: String, version: String, detail: String) {
        self.time = time
        self.model = model
        self.kind = kind
        self.version = version
        self.detail = detail
    }
}

/// What survives a restart: per served model, which version is stable, the canary and its share,
/// the last good version and those rolled back (which stay idle when their configuration returns).
public struct RolloutState: Codable, Sendable, Equatable {
    public struct Release: Codable, Sendable, Equatable {
        public var stable: String
        public var canary: String?
        public var canaryPercent: Double
        public var lastGood: String
        public var rolledBack: [String]

        enum CodingKeys: String, CodingKey {
            case stable, canary, canaryPercent = "canary_percent", lastGood = "last_good", rolledBack = "rolled_back"
        }
    }

    public var models: [String: Release] = [:]
    public var events: [RolloutEvent] = []

    public init() {}

    /// The state file, or an empty state when it does not exist. A file that cannot be read or parsed is an error.
    public static func read(_ path: String) throws -> RolloutState {
        guard FileManager.default.fileExists(atPath: path) else { return RolloutState() }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode(RolloutState.self, from: data)
    }

    /// Written to a temporary file beside it, then renamed: a crash leaves the old state or the new one.
    public func write(_ path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: url, options: .atomic)
    }
}
