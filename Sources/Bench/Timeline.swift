/// One level of a run over time, in buckets from the level's start: what completed, what arrived, how long the first
/// tokens took, what failed. `bench --plot` draws the levels one after the other (timeline-*.svg); `--output` keeps it.
public struct LevelTimeline: Sendable, Equatable, Codable {
    /// Bucket width: 1 s, or wider so that a level has at most `maxBuckets`.
    public var bucketSeconds: Double
    /// Output tokens received per second in each bucket (a request's tokens spread over its chunks as they came; the last
    /// bucket's rate is over the part of it the level lasted).
    public var outputTokensPerSecond: [Double]
    /// Requests completed per second in each bucket.
    public var requestsPerSecond: [Double]
    /// Time to first token of the requests whose first token came in each bucket (nil: none did).
    public var ttftP50Ms: [Double?]
    public var ttftP99Ms: [Double?]
    /// Requests that failed in each bucket.
    public var failed: [Int]

    static let maxBuckets = 120

    /// Read back from a JSON file (`--compare`): the series must agree in length and the bucket be a positive width.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        bucketSeconds = try c.decode(Double.self, forKey: .bucketSeconds)
        outputTokensPerSecond = try c.decode([Double].self, forKey: .outputTokensPerSecond)
        requestsPerSecond = try c.decode([Double].self, forKey: .requestsPerSecond)
        ttftP50Ms = try c.decode([Double?].self, forKey: .ttftP50Ms)
        ttftP99Ms = try c.decode([Double?].self, forKey: .ttftP99Ms)
        failed = try c.decode([Int].self, forKey: .failed)
        let n = outputTokensPerSecond.count
        guard bucketSeconds.isFinite, bucketSeconds > 0, bucketSeconds < 1e9, n <= 100_000,
              [requestsPerSecond.count, ttftP50Ms.count, ttftP99Ms.count, failed.count].allSatisfy({ $0 == n }) else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath,
                                                    debugDescription: "a timeline's series differ in length or its bucket_s is not a positive width"))
        }
    }

    enum CodingKeys: String, CodingKey {
        case bucketSeconds = "bucket_s", outputTokensPerSecond = "output_tokens_per_s", requestsPerSecond = "requests_per_s"
        case ttftP50Ms = "ttft_p50_ms", ttftP99Ms = "ttft_p99_ms", failed
    }

    /// nil when no timing knows when it was sent.
    public init?(timings: [RequestTiming], duration: Double) {
        guard timings.contains(where: { $0.sentAt != nil }) else { return nil }
        let end = max(duration, timings.compactMap { t in t.sentAt.map { $0 + (t.lastDataTime ?? 0) } }.max() ?? 0)
        let width = max(1, (end / Double(Self.maxBuckets)).rounded(.up))
        // A last bucket shorter than half a bucket joins the one before (its rates would swing on a few ms).
        var count = max(1, Int((end / width).rounded(.up)))
        if count > 1 && end - Double(count - 1) * width < width / 2 { count -= 1 }
        func bucket(_ time: Double) -> Int { min(count - 1, max(0, Int(time / width))) }
        var tokens = [Double](repeating: 0, count: count)
        var completed = [Double](repeating: 0, count: count)
        var failures = [Int](repeating: 0, count: count)
        var firstTokens = [[Double]](repeating: [], count: count)
        for timing in timings {
            guard let sent = timing.sentAt else { continue }
            guard let m = RequestMetrics(timing) else {
                failures[bucket(sent + (timing.lastDataTime ?? 0))] += 1
                continue
            }
            completed[bucket(sent + m.e2el)] += 1
            firstTokens[bucket(sent + m.ttft)].append(m.ttft * 1000)
            let chunks = timing.choiceChunkTimes
            if chunks.isEmpty {
                tokens[bucket(sent + m.e2el)] += Double(m.outputTokens)
            } else {
                let share = Double(m.outputTokens) / Double(chunks.count)
                for time in chunks { tokens[bucket(sent + time)] += share }
            }
        }
        func percentile(_ values: [Double], _ p: Double) -> Double? {
            guard !values.isEmpty else { return nil }
            let sorted = values.sorted()
            return sorted[min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))]
        }
        // The last bucket covers only what is left of the level: its rates are over that time, not a whole bucket.
        let lastWidth = max(end - Double(count - 1) * width, width / 2)
        func rate(_ values: [Double]) -> [Double] { values.enumerated().map { $1 / ($0 == count - 1 ? lastWidth : width) } }
        bucketSeconds = width
        outputTokensPerSecond = rate(tokens)
        requestsPerSecond = rate(completed)
        ttftP50Ms = firstTokens.map { percentile($0, 50) }
        ttftP99Ms = firstTokens.map { percentile($0, 99) }
        failed = failures
    }
}
