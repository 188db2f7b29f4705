import Bench
import OpenAIAPI
import Testing

/// The bench's timing of a stream, from recorded arrival times: the same bytes the end-to-end test's
/// server writes, each read stamped with a time the test chooses, so every metric is checked exactly
/// (no sleeps, no dependence on how the machine schedules the client or the server).
@Suite struct StreamTimingTests {
    /// Feeds the known stream's writes as separate reads arriving at `times`, ends it at `end`.
    static func record(at times: [Double], end: Double) -> RequestTiming {
        var recorder = StreamTimingRecorder()
        for (piece, time) in zip(EndToEndTests.pieces, times) { recorder.feed(Array(piece.utf8), at: time) }
        return recorder.finish(at: end)
    }

    @Test func onTimeStream() throws {
        // As the server means it: first chunk at 200 ms, then 50 ms gaps; the usage chunk with the last.
        let timing = Self.record(at: [0.2, 0.25, 0.25, 0.3, 0.3], end: 0.31)
        // Write 1 ends chunk "a" with a lone "\r", which already ends the line: "a" is stamped 0.2.
        // Chunk "b" is split across writes 2 and 3, so it is complete (and stamped) at write 3.
        #expect(timing.choiceChunkTimes == [0.2, 0.25, 0.3])
        #expect(timing.lastDataTime == 0.3)
        #expect(timing.contentChunks == 3)
        #expect(timing.usage == Usage(promptTokens: 5, completionTokens: 3))
        #expect(timing.failure == nil)
        let m = try #require(RequestMetrics(timing))
        #expect(m.ttft == 0.2)
        #expect(m.e2el == 0.3)
        #expect(m.itls.count == 2)
        for (got, want) in zip(m.itls, [0.05, 0.05]) { #expect(abs(got - want) < 1e-12) }
        #expect(abs(try #require(m.tpot) - 0.05) < 1e-12)
        #expect(m.inputTokens == 5 && m.outputTokens == 3)
    }

    /// What broke CI (issue 17): the first chunk reaches the client late, so the next gap is shorter
    /// than the server's 50 ms sleep. The bench must report what the client saw, by vLLM's definitions.
    @Test func lateFirstChunkShortensTheNextGap() throws {
        let timing = Self.record(at: [0.24, 0.25, 0.25, 0.3, 0.3], end: 0.3)
        let m = try #require(RequestMetrics(timing))
        #expect(m.ttft == 0.24)
        for (got, want) in zip(m.itls, [0.01, 0.05]) { #expect(abs(got - want) < 1e-12) }
        #expect(abs(try #require(m.tpot) - 0.03) < 1e-12)  // (0.3 - 0.24) / 2
        let report = LevelReport(label: "x", timings: [timing, Self.record(at: [0.2, 0.25, 0.25, 0.3, 0.3], end: 0.3)],
                                 duration: 0.6, slo: GoodputSLO())
        #expect(report.itl.count == 4)
        #expect(abs(report.itl.meanMs - 40) < 1e-9)   // (10 + 50 + 50 + 50) / 4
        #expect(abs(report.tpot.meanMs - 40) < 1e-9)  // (30 + 50) / 2
        #expect(abs(report.ttft.meanMs - 220) < 1e-9)
    }

    /// One read carrying the whole stream stamps every chunk with its arrival time: zero gaps.
    @Test func oneReadStampsEveryChunkAlike() throws {
        var recorder = StreamTimingRecorder()
        recorder.feed(Array(EndToEndTests.pieces.joined().utf8), at: 0.5)
        #expect(recorder.done)
        let m = try #require(RequestMetrics(recorder.finish(at: 0.7)))
        #expect(m.ttft == 0.5 && m.e2el == 0.5 && m.itls == [0, 0] && m.tpot == 0)
    }

    @Test func whatFollowsDoneIsNotRecorded() {
        var recorder = StreamTimingRecorder()
        recorder.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n".utf8), at: 0.1)
        recorder.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n".utf8), at: 0.2)
        let timing = recorder.finish(at: 0.3)
        #expect(timing.choiceChunkTimes == [0.1] && timing.lastDataTime == 0.1 && timing.failure == nil)
    }

    @Test func unterminatedLastLineCountsAtTheEnd() {
        var recorder = StreamTimingRecorder()
        recorder.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}".utf8), at: 0.1)
        let timing = recorder.finish(at: 0.4)
        #expect(timing.choiceChunkTimes == [0.1, 0.4] && timing.contentChunks == 2)
    }

    @Test func malformedAndErrorChunksFailTheStream() {
        var bad = StreamTimingRecorder()
        bad.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {not json\n\n".utf8), at: 0.1)
        #expect(bad.failed)
        #expect(bad.finish(at: 0.2).failure == .malformedStream)
        var error = StreamTimingRecorder()
        error.feed(Array("data: {\"error\":{\"message\":\"boom\"}}\n\n".utf8), at: 0.1)
        #expect(error.finish(at: 0.2).failure == .streamError)
        var empty = StreamTimingRecorder()
        empty.feed(Array(": keep-alive\n\ndata: [DONE]\n\n".utf8), at: 0.1)
        #expect(empty.finish(at: 0.2).failure == .malformedStream)
    }

    @Test("a stream that ends without data: [DONE] was cut short: a failure, not a shorter answer")
    func truncatedStreamFails() {
        var cut = StreamTimingRecorder()
        cut.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".utf8), at: 0.1)
        #expect(cut.finish(at: 0.2).failure == .connectionClosed)
        var whole = StreamTimingRecorder()
        whole.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n".utf8), at: 0.1)
        #expect(whole.finish(at: 0.2).failure == nil)
    }
}
