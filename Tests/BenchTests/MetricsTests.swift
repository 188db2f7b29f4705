import Bench
import OpenAIAPI
import Foundation
import NIOCore
import Testing

@Suite struct MetricsTests {
    /// Choices chunks at 0.2, 0.3, 0.45, 0.5 s and the usage chunk at 0.6 s; 5 output tokens by usage.
    static let timing = RequestTiming(choiceChunkTimes: [0.2, 0.3, 0.45, 0.5], lastDataTime: 0.6, contentChunks: 4,
                                      usage: Usage(promptTokens: 10, completionTokens: 5))

    @Test func vllmDefinitions() throws {
        let m = try #require(RequestMetrics(Self.timing))
        #expect(m.ttft == 0.2)
        #expect(m.e2el == 0.6)  // the usage chunk counts
        #expect(m.itls.count == 3)
        for (got, want) in zip(m.itls, [0.1, 0.15, 0.05]) { #expect(abs(got - want) < 1e-12) }
        // TPOT = (0.6 - 0.2) / (5 - 1) = 0.1
        #expect(abs(try #require(m.tpot) - 0.1) < 1e-12)
        #expect(m.outputTokens == 5 && m.inputTokens == 10)
    }

    @Test func withoutUsageTokensAreContentChunks() throws {
        var t = Self.timing
        t.usage = nil
        let m = try #require(RequestMetrics(t))
        #expect(m.outputTokens == 4)
        #expect(abs(try #require(m.tpot) - 0.4 / 3) < 1e-12)
        #expect(m.inputTokens == 0)
    }

    @Test func oneTokenHasNoTPOT() throws {
        let t = RequestTiming(choiceChunkTimes: [0.1], lastDataTime: 0.1, contentChunks: 1,
                              usage: Usage(promptTokens: 3, completionTokens: 1))
        let m = try #require(RequestMetrics(t))
        #expect(m.tpot == nil && m.itls.isEmpty)
    }

    @Test func recordingChunks() throws {
        var t = RequestTiming()
        t.record(try #require(StreamEvent.decode(#"{"choices":[{"delta":{"role":"assistant"}}]}"#)), at: 0.1)
        t.record(try #require(StreamEvent.decode(#"{"choices":[{"delta":{"content":"a"}}]}"#)), at: 0.2)
        t.record(try #require(StreamEvent.decode(#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#)), at: 0.3)
        #expect(t.choiceChunkTimes == [0.1, 0.2])
        #expect(t.lastDataTime == 0.3)
        #expect(t.contentChunks == 1)
        #expect(t.usage?.completionTokens == 2)
    }

    @Test func failedOrEmptyRequestsHaveNoMetrics() {
        #expect(RequestMetrics(RequestTiming(failure: .httpStatus(503))) == nil)
        #expect(RequestMetrics(RequestTiming(lastDataTime: 0.5)) == nil)
    }

    @Test func aggregationAndGoodput() throws {
        // Request A: TTFT 0.2, TPOT 0.1, E2EL 0.6. Request B: TTFT 1.0, E2EL 1.3, 4 tokens -> TPOT 0.1.
        let a = Self.timing
        let b = RequestTiming(choiceChunkTimes: [1.0, 1.1, 1.2, 1.3], lastDataTime: 1.3, contentChunks: 4,
                              usage: Usage(promptTokens: 20, completionTokens: 4))
        let failures = [RequestTiming(failure: .httpStatus(429)), RequestTiming(failure: .httpStatus(429)),
                        RequestTiming(failure: .timeout), RequestTiming(choiceChunkTimes: [], lastDataTime: 0.2)]
        let slo = try GoodputSLO(parsing: ["ttft:500", "tpot:150"])
        let r = LevelReport(label: "concurrency 2", concurrency: 2, timings: [a, b] + failures, duration: 2.0, slo: slo)
        #expect(r.completed == 2 && r.failed == 4)
        #expect(r.errors == ["http_429": 2, "timeout": 1, "malformed_stream": 1])
        #expect(r.totalInputTokens == 30 && r.totalOutputTokens == 9)
        #expect(r.requestThroughput == 1.0)
        #expect(r.outputTokenThroughput == 4.5)
        #expect(r.totalTokenThroughput == 19.5)
        #expect(abs(r.ttft.meanMs - 600) < 1e-9)
        #expect(abs(r.e2el.meanMs - 950) < 1e-9)
        #expect(abs(r.tpot.meanMs - 100) < 1e-9)
        #expect(r.itl.count == 6)
        // HdrHistogram at 3 significant digits: within 0.1% of the exact order statistic.
        #expect(abs(r.ttft.p50Ms - 200) <= 0.2)
        #expect(abs(r.ttft.p99Ms - 1000) <= 1)
        #expect(abs(r.e2el.p90Ms - 1300) <= 1.3)
        // Only A meets TTFT <= 500 ms; both meet TPOT <= 150 ms.
        #expect(r.goodRequests == 1)
        #expect(r.goodput == 0.5)
        let none = LevelReport(label: "x", timings: [a], duration: 1, slo: GoodputSLO())
        #expect(none.goodput == nil && none.goodRequests == nil)
    }

    @Test func goodputObjectives() throws {
        let m = try #require(RequestMetrics(Self.timing))  // TTFT 200 ms, TPOT 100 ms, E2EL 600 ms
        #expect(try GoodputSLO(parsing: ["ttft:200", "tpot:100", "e2el:600"]).isMet(by: m))
        #expect(!(try GoodputSLO(parsing: ["e2el:599"]).isMet(by: m)))
        #expect(!(try GoodputSLO(parsing: ["tpot:99.9"]).isMet(by: m)))
        #expect(try GoodputSLO(parsing: ["TTFT:250"]) == GoodputSLO(ttftMs: 250))
        #expect(throws: BenchError.invalidGoodput("latency:5")) { try GoodputSLO(parsing: ["latency:5"]) }
        #expect(throws: BenchError.invalidGoodput("ttft")) { try GoodputSLO(parsing: ["ttft"]) }
        #expect(throws: BenchError.invalidGoodput("ttft:-1")) { try GoodputSLO(parsing: ["ttft:-1"]) }
    }

    @Test func poissonScheduleMeanGap() {
        let rate = 4.0
        let offsets = PoissonSchedule.offsets(count: 20_001, rate: rate, seed: 42)
        #expect(offsets.first == 0)
        #expect(zip(offsets.dropFirst(), offsets).allSatisfy { $0 >= $1 })
        let gaps = zip(offsets.dropFirst(), offsets).map { $0 - $1 }
        let mean = gaps.reduce(0, +) / Double(gaps.count)
        // Standard error of the mean of 20,000 Exp(4) gaps is 0.25 / sqrt(20000) ≈ 0.0018.
        #expect(abs(mean - 1 / rate) < 0.01)
        // Exponential: the variance equals the squared mean.
        let variance = gaps.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(gaps.count)
        #expect(abs(variance - 1 / (rate * rate)) < 0.01)
        #expect(PoissonSchedule.offsets(count: 100, rate: rate, seed: 42) == Array(offsets.prefix(100)))
        #expect(PoissonSchedule.offsets(count: 3, rate: .infinity, seed: 1) == [0, 0, 0])
    }

    @Test func errorClassification() {
        struct Refused: Error {}
        #expect(ErrorClassifier.classify(Refused(), phase: .connecting) == .connect)
        #expect(ErrorClassifier.classify(Refused(), phase: .streaming) == .connectionClosed)
        #expect(RequestFailure.httpStatus(503).description == "http_503")
        #expect(RequestFailure.connect.description == "connect_error")
        #expect(RequestFailure.timeout.description == "timeout")
        #expect(RequestFailure.malformedStream.description == "malformed_stream")
        // A request written on a keep-alive connection the server had closed never reached it: retried.
        #expect(ErrorClassifier.isStaleConnection(ChannelError.ioOnClosedChannel))
        #expect(!ErrorClassifier.isStaleConnection(ChannelError.connectTimeout(.seconds(1))))
        #expect(!ErrorClassifier.isStaleConnection(Refused()))
        var failed = RequestTiming(failure: .connect)
        failed.failureDetail = "before the response head: refused"
        let report = LevelReport(label: "x", timings: [failed, failed, Self.timing], duration: 1, slo: GoodputSLO())
        #expect(report.errors == ["connect_error": 2] && report.errorSamples == ["before the response head: refused"])
    }

    func spaces(_ n: Int) -> String { String(repeating: " ", count: n) }

    @Test func reportRendering() throws {
        let r = LevelReport(label: "concurrency 1", concurrency: 1, timings: [Self.timing, RequestTiming(failure: .httpStatus(503))],
                            duration: 1, slo: GoodputSLO(ttftMs: 500))
        let result = BenchResult(baseURL: "http://127.0.0.1:1", endpoint: "chat", model: "m", numPrompts: 2, seed: 0,
                                 slo: GoodputSLO(ttftMs: 500), levels: [r, r])
        let text = ReportRenderer.render(result)
        #expect(text.contains("==== concurrency 1 ===="))
        #expect(text.contains("Completed / failed:" + spaces(15) + "1 / 1"))
        #expect(text.contains("Errors:" + spaces(27) + "http_503=1"))
        #expect(text.contains("Goodput (req/s):" + spaces(18) + "1.00"))
        #expect(text.contains("TTFT"))
        #expect(text.contains("| concurrency 1 | 1 | 1 |"))
        let json = try #require(JSONSerialization.jsonObject(with: result.json()) as? [String: Any])
        let levels = try #require(json["levels"] as? [[String: Any]])
        #expect(levels.count == 2)
        #expect(levels[0]["completed"] as? Int == 1)
        #expect((levels[0]["errors"] as? [String: Int]) == ["http_503": 1])
        #expect((levels[0]["ttft"] as? [String: Any])?["p50_ms"] as? Double != nil)
        let decoded = try JSONDecoder().decode(BenchResult.self, from: result.json())
        #expect(decoded == result)
    }
}
