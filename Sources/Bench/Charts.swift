import Foundation

/// SVG line charts of `bench` results, written by autoglm itself (`bench --plot DIR`): throughput and latency
/// percentiles against the load levels, one line per run and percentile, so that two runs (autoglm and
/// llama-server, before and after) read side by side. Plain SVG 1.1: any browser or image viewer opens it.
public enum BenchCharts {
    public struct Series: Sendable, Equatable {
        public var name: String
        /// One value per level (nil: no value, e.g. no completed request).
        public var values: [Double?]
        public var color: String
        public var dashed: Bool

        public init(name: String, values: [Double?], color: String, dashed: Bool) {
            self.name = name
            self.values = values
            self.color = color
            self.dashed = dashed
        }
    }

    /// The chart files for `runs` (the first is this run; the others share its levels): file name and SVG text.
    public static func charts(for runs: [BenchResult]) throws(BenchError) -> [(file: String, svg: String)] {
        guard let first = runs.first, !first.levels.isEmpty else { throw .invalidOption("no levels to plot") }
        for run in runs.dropFirst() where run.levels.map(\.label) != first.levels.map(\.label) {
            throw .invalidOption("a compared run has levels \(run.levels.map(\.label)), this run \(first.levels.map(\.label)): "
                + "compare runs made with the same --concurrency or --request-rate")
        }
        let labels = first.levels.map(\.label)
        let names = runNames(runs)
        func lines(_ metrics: [(String, String, (LevelReport) -> Double?)]) -> [Series] {
            var out: [Series] = []
            for (r, run) in runs.enumerated() {
                for (suffix, color, value) in metrics {
                    out.append(Series(name: names[r] + (suffix.isEmpty ? "" : " " + suffix), values: run.levels.map(value),
                                      color: color, dashed: r % 2 == 1))
                }
            }
            return out
        }
        func latency(_ stats: @escaping (LevelReport) -> LatencyStats) -> [Series] {
            lines([("p50", "#1f77b4", { $0.completed > 0 ? stats($0).p50Ms : nil }),
                   ("p90", "#ff7f0e", { $0.completed > 0 ? stats($0).p90Ms : nil }),
                   ("p99", "#d62728", { $0.completed > 0 ? stats($0).p99Ms : nil })])
        }
        return [
            ("throughput.svg", lineChart(title: "Output token throughput", yLabel: "tokens/s", levels: labels,
                                         series: lines([("", "#2ca02c", { $0.outputTokenThroughput })]))),
            ("requests.svg", lineChart(title: "Request throughput", yLabel: "requests/s", levels: labels,
                                       series: lines([("", "#9467bd", { $0.requestThroughput })]))),
            ("ttft.svg", lineChart(title: "Time to first token", yLabel: "ms", levels: labels, series: latency(\.ttft))),
            ("tpot.svg", lineChart(title: "Time per output token", yLabel: "ms", levels: labels, series: latency(\.tpot))),
            ("itl.svg", lineChart(title: "Inter-token latency", yLabel: "ms", levels: labels, series: latency(\.itl))),
            ("e2el.svg", lineChart(title: "End-to-end latency", yLabel: "ms", levels: labels, series: latency(\.e2el))),
        ]
    }

    /// "model @ host:port" per run, numbered when two would read the same.
    static func runNames(_ runs: [BenchResult]) -> [String] {
        let names = runs.map { run -> String in
            let host = URLComponents(string: run.baseURL).map { c in (c.host ?? run.baseURL) + (c.port.map { ":\($0)" } ?? "") } ?? run.baseURL
            return "\(run.model) @ \(host)"
        }
        return names.enumerated().map { i, name in names.filter { $0 == name }.count > 1 ? "\(name) (\(i + 1))" : name }
    }

    /// A line chart with the levels along x (evenly spaced, labelled) and 0...a round maximum along y.
    public static func lineChart(title: String, yLabel: String, levels: [String], series: [Series],
                                 width: Double = 760, height: Double = 440) -> String {
        // The plot area, then the x labels, then one legend row per series below it.
        let left = 72.0, right = 24.0, top = 48.0
        let plotW = width - left - right, plotH = height - top - 56
        let chartH = height + 18 * Double(series.count)
        let maximum = series.flatMap { $0.values.compactMap { $0 } }.filter(\.isFinite).max() ?? 0
        let (yMax, step) = niceAxis(maximum)
        // Levels inset from the ends, so that their labels fit.
        let inset = 56.0
        func x(_ i: Int) -> Double {
            levels.count == 1 ? left + plotW / 2 : left + inset + (plotW - 2 * inset) * Double(i) / Double(levels.count - 1)
        }
        func y(_ v: Double) -> Double { top + plotH - plotH * v / yMax }
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(chartH))" viewBox="0 0 \(f(width)) \(f(chartH))" \
        font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(width / 2))" y="24" text-anchor="middle" font-size="16">\(escape(title))</text>

        """
        // Grid and y ticks.
        var tick = 0.0
        while tick <= yMax + step / 2 {
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(y(tick)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y(tick)))\" stroke=\"#dddddd\"/>\n"
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(y(tick) + 4))\" text-anchor=\"end\">\(escape(label(tick)))</text>\n"
            tick += step
        }
        svg += "<text transform=\"translate(18 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"
        // Axes and x labels.
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(left + plotW))\" y2=\"\(f(top + plotH))\" stroke=\"black\"/>\n"
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotH))\" stroke=\"black\"/>\n"
        for (i, level) in levels.enumerated() {
            svg += "<text x=\"\(f(x(i)))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(escape(level))</text>\n"
        }
        // Lines, points and the legend.
        for (n, s) in series.enumerated() {
            let points = s.values.enumerated().compactMap { i, v in v.flatMap { $0.isFinite ? (x(i), y($0)) : nil } }
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            if points.count > 1 {
                svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash) points=\""
                    + points.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " ") + "\"><title>\(escape(s.name))</title></polyline>\n"
            }
            for (px, py) in points {
                svg += "<circle cx=\"\(f(px))\" cy=\"\(f(py))\" r=\"3\" fill=\"\(s.color)\"/>\n"
            }
            let ly = top + plotH + 40 + 18 * Double(n)
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(ly - 4))\" x2=\"\(f(left + 28))\" y2=\"\(f(ly - 4))\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)/>\n"
            svg += "<text x=\"\(f(left + 36))\" y=\"\(f(ly))\">\(escape(s.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// A round maximum at or above `value` and the step between its 4 to 5 ticks.
    public static func niceAxis(_ value: Double) -> (maximum: Double, step: Double) {
        guard value > 0, value.isFinite else { return (1, 0.25) }
        let raw = value / 4
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        return (step * ceil(value / step), step)
    }

    static func label(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e9 ? String(Int(v)) : String(format: "%g", v)
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
