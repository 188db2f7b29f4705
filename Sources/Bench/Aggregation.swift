import Histogram

/// Service-level objectives for goodput, in milliseconds; nil means "not constrained".
public struct GoodputSLO: Sendable, Equatable, Codable {
    public var ttftMs: Double?
    public var tpotMs: Double?
    public var e2elMs: Double?

    public init(ttftMs: Double? = nil, tpotMs: Double? = nil, e2elMs: Double? = nil) {
        self.ttftMs = ttftMs
        self.tpotMs = tpotMs
        self.e2elMs = e2elMs
    }

    enum CodingKeys: String, CodingKey {
        case ttftMs = "ttft_ms", tpotMs = "tpot_ms", e2elMs = "e2el_ms"
    }

    public var isEmpty: Bool { ttftMs == nil && tpotMs == nil && e2elMs == nil }

    /// Parses `["ttft:500", "tpot:50", "e2el:3000"]` (values in milliseconds).
    public init(parsing specs: [String]) throws(BenchError) {
        for spec in specs {
            let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let value = Double(parts[1]), value > 0 else {
                throw .invalidGoodput(spec)
            }
            switch parts[0].lowercased() {
            case "ttft": ttftMs = value
            case "tpot": tpotMs = value
            case "e2el": e2elMs = value
            default: throw .invalidGoodput(spec)
            }
        }
    }

    /// Whether a request meets every given objective. A request without TPOT (one output token)
    /// meets a TPOT objective.
    public func isMet(by m: RequestMetrics) -> Bool {
        if let limit = ttftMs, m.ttft * 1000 > limit { return false }
        if let limit = tpotMs, let tpot = m.tpot, tpot * 1000 > limit { return false }
        if let limit = e2elMs, m.e2el * 1000 > limit { return false }
        return true
    }
}

/// Mean and percentiles of one latency metric, in milliseconds.
public struct LatencyStats: Sendable, Equatable, Codable {
    public var count: Int
    public var meanMs: Double
    public var p50Ms: Double
    public var p90Ms: Double
    public var p95Ms: Double
    public var p99Ms: Double
    public var maxMs: Double

    enum CodingKeys: String, CodingKey {
        case count, meanMs = "mean_ms", p50Ms = "p50_ms", p90Ms = "p90_ms", p95Ms = "p95_ms", p99Ms = "p99_ms"
        case maxMs = "max_ms"
    }

    /// Percentiles come from an HdrHistogram at microsecond resolution (3 significant digits);
    /// the mean is exact.
    public init(seconds values: [Double]) {
        count = values.count
        guard !values.isEmpty else {
            meanMs = 0; p50Ms = 0; p90Ms = 0; p95Ms = 0; p99Ms = 0; maxMs = 0
            return
        }
        var histogram = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        for value in values {
            _ = histogram.record(UInt64(max(0, (value * 1_000_000).rounded())))
        }
        func ms(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
        meanMs = values.reduce(0, +) / Double(values.count) * 1000
        p50Ms = ms(50)
        p90Ms = ms(90)
        p95Ms = ms(95)
        p99Ms = ms(99)
        maxMs = Double(histogram.max) / 1000
    }
}

/// All figures for one load level.
public struct LevelReport: Sendable, Equatable, Codable {
    /// "concurrency 4" or "rate 2.0/s".
    public var label: String
    public var concurrency: Int?
    /// Open-loop rate in requests/s; -1 stands for "inf" (all at once), which JSON cannot hold.
    public var requestRate: Double?
    public var maxConcurrency: Int?
    public var completed: Int
    public var failed: Int
    public var durationSeconds: Double
    public var totalInputTokens: Int
    public var totalOutputTokens: Int
    public var requestThroughput: Double
    public var outputTokenThroughput: Double
    public var totalTokenThroughput: Double
    public var ttft: LatencyStats
    public var tpot: LatencyStats
    public var itl: LatencyStats
    public var e2el: LatencyStats
    /// Requests meeting every SLO; nil when no SLO was given.
    public var goodRequests: Int?
    /// Good requests per second; nil when no SLO was given.
    public var goodput: Double?
    /// Failed requests by kind ("http_429", "timeout", ...).
    public var errors: [String: Int]
    /// Up to three distinct transport messages of the failed requests (what to look at first).
    public var errorSamples: [String]
    /// The level over time (absent from runs saved before it existed).
    public var timeline: LevelTimeline?

    enum CodingKeys: String, CodingKey {
        case label, concurrency, requestRate = "request_rate", maxConcurrency = "max_concurrency"
        case completed, failed, durationSeconds = "duration_s"
        case totalInputTokens = "total_input_tokens", totalOutputTokens = "total_output_tokens"
        case requestThroughput = "request_throughput", outputTokenThroughput = "output_token_throughput"
        case totalTokenThroughput = "total_token_throughput"
        case ttft, tpot, itl, e2el
        case goodRequests = "good_requests", goodput = "request_goodput", errors, errorSamples = "error_samples"
        case timeline
    }

    /// Aggregates the requests of one level that ran for `duration` seconds.
    public init(label: String, concurrency: Int? = nil, requestRate: Double? = nil, maxConcurrency: Int? = nil,
                timings: [RequestTiming], duration: Double, slo: GoodputSLO) {
        self.label = label
        self.concurrency = concurrency
        self.requestRate = requestRate
        self.maxConcurrency = maxConcurrency
        var metrics: [RequestMetrics] = []
        var errors: [String: Int] = [:]
        var samples: [String] = []
        for timing in timings {
            if let m = RequestMetrics(timing) {
                metrics.append(m)
            } else {
                errors[(timing.failure ?? .malformedStream).description, default: 0] += 1
                if let detail = timing.failureDetail, samples.count < 3, !samples.contains(detail) { samples.append(detail) }
            }
        }
        completed = metrics.count
        failed = timings.count - metrics.count
        self.errors = errors
        errorSamples = samples
        durationSeconds = duration
        totalInputTokens = metrics.reduce(0) { $0 + $1.inputTokens }
        totalOutputTokens = metrics.reduce(0) { $0 + $1.outputTokens }
        let perSecond = duration > 0 ? 1 / duration : 0
        requestThroughput = Double(completed) * perSecond
        outputTokenThroughput = Double(totalOutputTokens) * perSecond
        totalTokenThroughput = Double(totalInputTokens + totalOutputTokens) * perSecond
        ttft = LatencyStats(seconds: metrics.map(\.ttft))
        tpot = LatencyStats(seconds: metrics.compactMap(\.tpot))
        itl = LatencyStats(seconds: metrics.flatMap(\.itls))
        e2el = LatencyStats(seconds: metrics.map(\.e2el))
        timeline = LevelTimeline(timings: timings, duration: duration)
        if slo.isEmpty {
            goodRequests = nil
            goodput = nil
        } else {
            let good = metrics.filter { slo.isMet(by: $0) }.count
            goodRequests = good
            goodput = Double(good) * perSecond
        }
    }
}
