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
}
