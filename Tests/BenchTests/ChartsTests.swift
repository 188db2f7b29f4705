import Bench
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import OpenAIAPI
import Testing

/// `bench --plot`: the SVG charts are well-formed XML and draw the figures of the run (and of compared runs).
@Suite struct ChartsTests {
    /// A level whose requests all take `ttft` s to the first token, then 4 more tokens 0.1 s apart.
    static func level(_ concurrency: Int, ttft: Double) -> LevelReport {
        let timing = RequestTiming(choiceChunkTimes: [ttft, ttft + 0.1, ttft + 0.2, ttft + 0.3], lastDataTime: ttft + 0.4, contentChunks: 4,
                                   usage: Usage(promptTokens: 8, completionTokens: 5))
        return LevelReport(label: "concurrency \(concurrency)", concurrency: concurrency, timings: Array(repeating: timing, count: concurrency),
                           duration: 2, slo: GoodputSLO())
    }

    static func result(_ url: String, ttfts: [Double]) -> BenchResult {
        BenchResult(baseURL: url, endpoint: "completions", model: "m", numPrompts: 8, seed: 0, slo: GoodputSLO(),
                    levels: zip([1, 2, 4], ttfts).map { level($0, ttft: $1) })
    }

    /// The elements of an SVG in document order (name, attributes, text inside), by Foundation's XML parser: it
    /// fails on text that is not well-formed XML.
    final class Elements: NSObject, XMLParserDelegate {
        var all: [(name: String, attributes: [String: String], text: String)] = []
        private var open: [Int] = []
        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            all.append((name, attributes, ""))
            open.append(all.count - 1)
        }
        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if let i = open.last { all[i].text += string }
        }
        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            _ = open.popLast()
        }
        static func parse(_ svg: String) throws -> Elements {
            let parser = XMLParser(data: Data(svg.utf8))
            let elements = Elements()
            parser.delegate = elements
            #expect(parser.parse(), "not well-formed: \(parser.parserError.map { "\($0)" } ?? "")")
            return elements
        }
    }

    @Test("six well-formed charts; each line has a point per level, placed by its value")
    func charts() throws {
        let ours = Self.result("http://127.0.0.1:8080", ttfts: [0.1, 0.2, 0.8])
        let theirs = Self.result("http://127.0.0.1:8081", ttfts: [0.3, 0.6, 1.2])
        let charts = try BenchCharts.charts(for: [ours, theirs])
        #expect(charts.map(\.file) == ["throughput.svg", "requests.svg", "ttft.svg", "tpot.svg", "itl.svg", "e2el.svg"])
        for chart in charts { _ = try Elements.parse(chart.svg) }
        let svg = try Elements.parse(try #require(charts.first { $0.file == "ttft.svg" }).svg)
        #expect(svg.all.first?.name == "svg")
        let lines = svg.all.filter { $0.name == "polyline" }
        #expect(lines.count == 6, "p50, p90, p99 for each of the two runs")
        for line in lines { #expect((line.attributes["points"] ?? "").split(separator: " ").count == 3) }
        #expect(lines.filter { $0.attributes["stroke-dasharray"] != nil }.count == 3, "the compared run is dashed")
        // The p50 TTFT line of this run rises with the TTFT (SVG y grows downwards); the y axis reaches 1200 ms.
        // A line's name is the <title> inside it, the element after it in document order.
        let title = try #require(svg.all.firstIndex { $0.name == "title" && $0.text == "m @ 127.0.0.1:8080 p50" })
        let p50 = svg.all[title - 1]
        #expect(p50.name == "polyline")
        let ys = (p50.attributes["points"] ?? "").split(separator: " ").map { Double($0.split(separator: ",")[1])! }
        #expect(ys.count == 3 && ys[0] > ys[1] && ys[1] > ys[2])
        let texts = svg.all.filter { $0.name == "text" }.map(\.text)
        #expect(texts.contains("concurrency 4") && texts.contains("m @ 127.0.0.1:8081 p99"))
        #expect((texts.compactMap(Double.init).max() ?? 0) >= 1200)
    }

    @Test("runs with other levels cannot be compared; names and axes")
    func refusalsAndAxes() throws {
        let a = Self.result("http://127.0.0.1:8080", ttfts: [0.1, 0.2, 0.8])
        var b = a
        b.levels.removeLast()
        #expect(throws: BenchError.self) { try BenchCharts.charts(for: [a, b]) }
        #expect(BenchCharts.niceAxis(1234).maximum >= 1234 && BenchCharts.niceAxis(1234).maximum <= 1500)
        #expect(BenchCharts.niceAxis(0).maximum == 1)
        // Text is escaped: a model name with markup stays text.
        let svg = BenchCharts.lineChart(title: "<t&>", yLabel: "ms", levels: ["a"], series: [
            BenchCharts.Series(name: "x<y", values: [1], color: "#000000", dashed: false)])
        #expect(svg.contains("&lt;t&amp;&gt;") && svg.contains("x&lt;y"))
        _ = try Elements.parse(svg)
    }

    /// Requests sent at `sent` (seconds from the level's start), each 0.5 s to its first token, then 3 more chunks
    /// 0.1 s apart, 5 tokens in all, done at 0.9 s.
    static func timedLevel(_ label: String, sent: [Double], failedAt: [Double] = [], duration: Double) -> LevelReport {
        var timings: [RequestTiming] = sent.map { at in
            var t = RequestTiming(choiceChunkTimes: [0.5, 0.6, 0.7, 0.8], lastDataTime: 0.9, contentChunks: 4,
                                  usage: Usage(promptTokens: 8, completionTokens: 5))
            t.sentAt = at
            return t
        }
        for at in failedAt {
            var t = RequestTiming(failure: .timeout)
            t.sentAt = at
            timings.append(t)
        }
        return LevelReport(label: label, concurrency: 1, timings: timings, duration: duration, slo: GoodputSLO())
    }

    @Test("the level over time: tokens where their chunks came, completions, first-token times and failures per bucket")
    func timeline() throws {
        let level = Self.timedLevel("concurrency 2", sent: [0, 0, 1, 2.5], failedAt: [2], duration: 3.6)
        let t = try #require(level.timeline)
        #expect(t.bucketSeconds == 1)
        // The last bucket is 0.6 s of the level: its 5 tokens and 1 request are rates over 0.6 s.
        #expect(zip(t.outputTokensPerSecond, [10, 5, 0, 5 / 0.6]).allSatisfy { abs($0 - $1) < 1e-9 }, "\(t.outputTokensPerSecond)")
        #expect(zip(t.requestsPerSecond, [2, 1, 0, 1 / 0.6]).allSatisfy { abs($0 - $1) < 1e-9 }, "\(t.requestsPerSecond)")
        #expect(t.ttftP50Ms == [500, 500, nil, 500] && t.ttftP99Ms == [500, 500, nil, 500])
        #expect(t.failed == [0, 0, 1, 0])
        // A last bucket under half a bucket (0.4 s) joins the one before: 3 buckets, the last 1.4 s long.
        let merged = try #require(Self.timedLevel("c", sent: [0, 0, 1, 2.5], failedAt: [2], duration: 3.4).timeline)
        #expect(merged.outputTokensPerSecond.count == 3 && abs(merged.outputTokensPerSecond[2] - 5 / 1.4) < 1e-9)
        #expect(merged.failed == [0, 0, 1] && merged.ttftP50Ms == [500, 500, 500])
        // A long level gets wider buckets: at most 120.
        let long = try #require(Self.timedLevel("rate 1", sent: Array(stride(from: 0.0, to: 600, by: 1)), duration: 601).timeline)
        #expect(long.bucketSeconds == 6 && long.outputTokensPerSecond.count <= 120)
        // 601 s in buckets of 6: the last 1 s joins the bucket before (7 s). Every token counted once.
        let covered = long.outputTokensPerSecond.indices.map { $0 == long.outputTokensPerSecond.count - 1 ? 7.0 : 6.0 }
        #expect(abs(zip(long.outputTokensPerSecond, covered).map { $0 * $1 }.reduce(0, +) - 3000) < 1e-6, "every token is counted once")
        // A file whose series disagree in length is refused, not drawn out of range.
        var broken = try JSONSerialization.jsonObject(with: JSONEncoder().encode(t)) as! [String: Any]
        broken["ttft_p50_ms"] = [1.0]
        #expect(throws: DecodingError.self) { _ = try JSONDecoder().decode(LevelTimeline.self, from: JSONSerialization.data(withJSONObject: broken)) }
        #expect(BenchCharts.niceAxis(1.7e308).maximum.isFinite && BenchCharts.niceAxis(.infinity).maximum == 1)
        // Saved and read back; a run saved before timelines existed reads with none.
        let decoded = try JSONDecoder().decode(LevelReport.self, from: JSONEncoder().encode(level))
        #expect(decoded.timeline == level.timeline)
        var old = try JSONSerialization.jsonObject(with: JSONEncoder().encode(level)) as! [String: Any]
        old.removeValue(forKey: "timeline")
        #expect(try JSONDecoder().decode(LevelReport.self, from: JSONSerialization.data(withJSONObject: old)).timeline == nil)
    }

    @Test("the run over time: levels one after another, their starts marked, points placed by time; runs without a timeline left out")
    func timelineCharts() throws {
        let run = BenchResult(baseURL: "http://127.0.0.1:8080", endpoint: "completions", model: "m", numPrompts: 4, seed: 0, slo: GoodputSLO(),
                              levels: [Self.timedLevel("concurrency 1", sent: [0, 1, 2], duration: 3),
                                       Self.timedLevel("concurrency 2", sent: [0, 0, 1, 1], duration: 2)])
        var untimed = Self.result("http://127.0.0.1:8081", ttfts: [0.1, 0.2])
        untimed.levels = Array(untimed.levels.prefix(2)).enumerated().map { i, l in
            var l = l
            l.label = run.levels[i].label
            return l
        }
        let charts = try BenchCharts.charts(for: [run, untimed])
        #expect(charts.map(\.file).suffix(2) == ["timeline-throughput.svg", "timeline-ttft.svg"])
        let svg = try Elements.parse(try #require(charts.first { $0.file == "timeline-throughput.svg" }).svg)
        let lines = svg.all.filter { $0.name == "polyline" }
        #expect(lines.count == 1, "only the run with a timeline")
        let points = (lines.first?.attributes["points"] ?? "").split(separator: " ").map { $0.split(separator: ",").map { Double($0)! } }
        #expect(points.count == 5, "3 buckets of the first level, 2 of the second")
        let xs = points.map { $0[0] }
        #expect(xs == xs.sorted() && Set(xs).count == 5)
        // Evenly spaced in time: bucket midpoints 0.5, 1.5, 2.5, then 3.5, 4.5 s.
        let gaps = zip(xs.dropFirst(), xs).map { $0 - $1 }
        #expect(gaps.allSatisfy { abs($0 - gaps[0]) < 0.2 })
        // The second level's 10 tokens in its first second are the highest point (smallest y).
        let ys = points.map { $0[1] }
        #expect(ys.firstIndex(of: ys.min()!) == 3)
        let texts = svg.all.filter { $0.name == "text" }.map(\.text)
        #expect(texts.contains("concurrency 1") && texts.contains("concurrency 2") && texts.contains("0 s"))
        let markers = svg.all.filter { $0.name == "line" && $0.attributes["stroke-dasharray"] == "2 3" }
        #expect(markers.count == 2)
        let ttft = try Elements.parse(try #require(charts.last).svg)
        #expect(ttft.all.filter { $0.name == "polyline" }.count == 2, "p50 and p99")
        // No run with a timeline: no timeline charts.
        #expect(try BenchCharts.charts(for: [untimed]).count == 6)
    }
}
