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
        var charts: [(file: String, svg: String)] = [
            ("throughput.svg", lineChart(title: "Output token throughput", yLabel: "tokens/s", levels: labels,
                                         series: lines([("", "#2ca02c", { $0.outputTokenThroughput })]))),
            ("requests.svg", lineChart(title: "Request throughput", yLabel: "requests/s", levels: labels,
                                       series: lines([("", "#9467bd", { $0.requestThroughput })]))),
            ("ttft.svg", lineChart(title: "Time to first token", yLabel: "ms", levels: labels, series: latency(\.ttft))),
            ("tpot.svg", lineChart(title: "Time per output token", yLabel: "ms", levels: labels, series: latency(\.tpot))),
            ("itl.svg", lineChart(title: "Inter-token latency", yLabel: "ms", levels: labels, series: latency(\.itl))),
            ("e2el.svg", lineChart(title: "End-to-end latency", yLabel: "ms", levels: labels, series: latency(\.e2el))),
        ]
        charts += timelineCharts(runs, names: names)
        return charts
    }

    /// The runs over time (levels one after the other, their starts marked): output tokens per second, and the time to
    /// first token (p50, p99) of the requests whose first token came in each bucket. Runs saved without a timeline are
    /// left out of these two; none with one: no charts.
    static func timelineCharts(_ runs: [BenchResult], names: [String]) -> [(file: String, svg: String)] {
        struct Track { var name: String; var dashed: Bool; var points: [(seconds: Double, level: LevelTimeline, index: Int)] }
        var tracks: [Track] = []
        var seconds = 0.0
        var markers: [(seconds: Double, label: String)] = []
        for (r, run) in runs.enumerated() where run.levels.contains(where: { $0.timeline != nil }) {
            var track = Track(name: names[r], dashed: r % 2 == 1, points: [])
            var offset = 0.0
            for level in run.levels {
                if tracks.isEmpty { markers.append((offset, level.label)) }
                if let timeline = level.timeline {
                    for i in timeline.outputTokensPerSecond.indices {
                        track.points.append((offset + (Double(i) + 0.5) * timeline.bucketSeconds, timeline, i))
                    }
                    offset += max(level.durationSeconds, Double(timeline.outputTokensPerSecond.count) * timeline.bucketSeconds)
                } else {
                    offset += level.durationSeconds
                }
            }
            seconds = max(seconds, offset)
            tracks.append(track)
        }
        guard !tracks.isEmpty else { return [] }
        typealias Line = (name: String, color: String, dashed: Bool, points: [(seconds: Double, value: Double)])
        func line(_ track: Track, _ suffix: String, _ color: String, _ value: (LevelTimeline, Int) -> Double?) -> Line {
            (track.name + suffix, color, track.dashed, track.points.compactMap { p in value(p.level, p.index).map { (p.seconds, $0) } })
        }
        let throughput = tracks.map { line($0, "", "#2ca02c") { $0.outputTokensPerSecond[$1] } }
        let ttft = tracks.flatMap { [line($0, " p50", "#1f77b4") { $0.ttftP50Ms[$1] }, line($0, " p99", "#d62728") { $0.ttftP99Ms[$1] }] }
        return [
            ("timeline-throughput.svg", timeChart(title: "Output token throughput over the run", yLabel: "tokens/s", seconds: seconds,
                                                  markers: markers, series: throughput)),
            ("timeline-ttft.svg", timeChart(title: "Time to first token over the run", yLabel: "ms", seconds: seconds,
                                            markers: markers, series: ttft)),
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
        // Levels evenly spaced, inset 56 points from the ends so that their labels fit.
        return plot(title: title, yLabel: yLabel, width: width, height: height,
                    xPosition: { i, plotW in levels.count == 1 ? plotW / 2 : 56 + (plotW - 112) * i / Double(levels.count - 1) },
                    xLabels: levels.enumerated().map { (Double($0.offset), $0.element) }, markers: [],
                    lines: series.map { s in
                        (s.name, s.color, s.dashed, s.values.enumerated().compactMap { i, v in v.map { (Double(i), $0) } })
                    })
    }

    /// A line chart against time (seconds from the run's start), with the levels' boundaries marked: one run over time.
    public static func timeChart(title: String, yLabel: String, seconds: Double, markers: [(seconds: Double, label: String)],
                                 series: [(name: String, color: String, dashed: Bool, points: [(seconds: Double, value: Double)])],
                                 width: Double = 760, height: Double = 440) -> String {
        let (xMax, step) = niceAxis(max(seconds, 1))
        var ticks: [(Double, String)] = []
        var t = 0.0
        while t <= xMax + step / 2 {
            ticks.append((t, label(t) + " s"))
            t += step
        }
        return plot(title: title, yLabel: yLabel, width: width, height: height,
                    xPosition: { s, plotW in plotW * s / xMax }, xLabels: ticks, markers: markers,
                    lines: series.map { ($0.name, $0.color, $0.dashed, $0.points.map { ($0.seconds, $0.value) }) })
    }

    /// The frame both charts share: title, y grid with a round maximum, axes, x labels, vertical markers, the lines with
    /// their points, and one legend row per line below the plot. `xPosition(x, plotWidth)`: x's offset in the plot.
    static func plot(title: String, yLabel: String, width: Double, height: Double, xPosition: (Double, Double) -> Double,
                     xLabels: [(Double, String)], markers: [(seconds: Double, label: String)],
                     lines: [(name: String, color: String, dashed: Bool, points: [(Double, Double)])]) -> String {
        let left = 72.0, right = 24.0, top = 48.0
        let plotW = width - left - right, plotH = height - top - 56
        let chartH = height + 18 * Double(lines.count)
        let maximum = lines.flatMap { $0.points.map(\.1) }.filter(\.isFinite).max() ?? 0
        let (yMax, step) = niceAxis(maximum)
        func x(_ v: Double) -> Double { left + xPosition(v, plotW) }
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
        for (position, text) in xLabels {
            svg += "<text x=\"\(f(x(position)))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(escape(text))</text>\n"
        }
        // Markers (the levels of a run over time): a dotted vertical line, its label at the top.
        for marker in markers where x(marker.seconds).isFinite {
            let mx = x(marker.seconds)
            svg += "<line x1=\"\(f(mx))\" y1=\"\(f(top))\" x2=\"\(f(mx))\" y2=\"\(f(top + plotH))\" stroke=\"#999999\" stroke-dasharray=\"2 3\"/>\n"
            svg += "<text x=\"\(f(mx + 4))\" y=\"\(f(top + 12))\" fill=\"#555555\">\(escape(marker.label))</text>\n"
        }
        // Lines, points and the legend.
        for (n, line) in lines.enumerated() {
            let points = line.points.compactMap { p -> (Double, Double)? in
                let (px, py) = (x(p.0), y(p.1))
                return px.isFinite && py.isFinite ? (px, py) : nil
            }
            let dash = line.dashed ? " stroke-dasharray=\"6 4\"" : ""
            if points.count > 1 {
                svg += "<polyline fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"2\"\(dash) points=\""
                    + points.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " ") + "\"><title>\(escape(line.name))</title></polyline>\n"
            }
            for (px, py) in points {
                svg += "<circle cx=\"\(f(px))\" cy=\"\(f(py))\" r=\"3\" fill=\"\(line.color)\"/>\n"
            }
            let ly = top + plotH + 40 + 18 * Double(n)
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(ly - 4))\" x2=\"\(f(left + 28))\" y2=\"\(f(ly - 4))\" stroke=\"\(line.color)\" stroke-width=\"2\"\(dash)/>\n"
            svg += "<text x=\"\(f(left + 36))\" y=\"\(f(ly))\">\(escape(line.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// A round maximum at or above `value` and the step between its 4 to 5 ticks.
    public static func niceAxis(_ value: Double) -> (maximum: Double, step: Double) {
        guard value > 0, value.isFinite, value < 1e300 else { return (1, 0.25) }
        let raw = value / 4
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        let maximum = step * ceil(value / step)
        return maximum.isFinite && step > 0 ? (maximum, step) : (1, 0.25)
    }

    static func label(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e9 ? String(Int(v)) : String(format: "%g", v)
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
