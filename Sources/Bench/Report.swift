import Foundation

/// Renders results as text for stdout.
public enum ReportRenderer {
    public static func render(_ result: BenchResult) -> String {
        var out = "Benchmark of \(result.model) at \(result.baseURL) (\(result.endpoint), \(result.numPrompts) requests per level)\n"
        for level in result.levels { out += "\n" + render(level) }
        if result.levels.count > 1 { out += "\n" + summary(result.levels) }
        return out
    }

    static func f(_ value: Double, _ decimals: Int = 2) -> String { String(format: "%.\(decimals)f", value) }

    public static func render(_ r: LevelReport) -> String {
        func row(_ name: String, _ value: String) -> String {
            name.padding(toLength: 34, withPad: " ", startingAt: 0) + value + "\n"
        }
        var out = "==== \(r.label) ====\n"
        out += row("Completed / failed:", "\(r.completed) / \(r.failed)")
        out += row("Duration (s):", f(r.durationSeconds))
        out += row("Total input / output tokens:", "\(r.totalInputTokens) / \(r.totalOutputTokens)")
        out += row("Request throughput (req/s):", f(r.requestThroughput))
        out += row("Output token throughput (tok/s):", f(r.outputTokenThroughput))
        out += row("Total token throughput (tok/s):", f(r.totalTokenThroughput))
        if let goodput = r.goodput, let good = r.goodRequests {
            out += row("Goodput (req/s):", "\(f(goodput)) (\(good) requests met the SLOs)")
        }
        if !r.errors.isEmpty {
            out += row("Errors:", r.errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
            for sample in r.errorSamples { out += row("  e.g.", sample) }
        }
        let header = ["(ms)", "mean", "p50", "p90", "p95", "p99"]
        out += header.enumerated().map { $0.offset == 0 ? $0.element.padding(toLength: 6, withPad: " ", startingAt: 0) : pad($0.element) }
            .joined() + "\n"
        for (name, stats) in [("TTFT", r.ttft), ("TPOT", r.tpot), ("ITL", r.itl), ("E2EL", r.e2el)] {
            out += name.padding(toLength: 6, withPad: " ", startingAt: 0)
                + [stats.meanMs, stats.p50Ms, stats.p90Ms, stats.p95Ms, stats.p99Ms].map { pad(f($0)) }.joined() + "\n"
        }
        return out
    }

    static func pad(_ s: String) -> String { String(repeating: " ", count: max(0, 11 - s.count)) + s }

    /// One line per level, for comparing levels at a glance.
    public static func summary(_ levels: [LevelReport]) -> String {
        var out = "| level | ok | failed | req/s | out tok/s | TTFT p50 ms | TPOT p50 ms | ITL p99 ms | E2EL p99 ms | goodput req/s |\n"
        out += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        for r in levels {
            out += "| \(r.label) | \(r.completed) | \(r.failed) | \(f(r.requestThroughput)) | \(f(r.outputTokenThroughput)) | "
                + "\(f(r.ttft.p50Ms)) | \(f(r.tpot.p50Ms)) | \(f(r.itl.p99Ms)) | \(f(r.e2el.p99Ms)) | \(r.goodput.map { f($0) } ?? "-") |\n"
        }
        return out
    }
}
