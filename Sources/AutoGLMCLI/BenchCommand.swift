import ArgumentParser
import Bench
import Foundation

/// `autoglm bench`: load generator against any OpenAI-compatible server (ours, llama-server, vLLM),
/// measuring TTFT, TPOT, ITL and E2EL with vLLM's definitions.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Load-test an OpenAI-compatible server: TTFT, TPOT, ITL, E2EL, throughput and goodput.",
        discussion: """
            Closed loop: --concurrency 1,4,8 runs each level in turn. Open loop: --request-rate R sends \
            Poisson arrivals at R requests/s (comma-separated for several levels, "inf" for all at once).
            Prompts come from --dataset FILE (JSONL, {"prompt": ..., "max_tokens": N} or {"messages": [...]}) \
            or are synthetic (--input-len words, exactly --output-len tokens via ignore_eos/min_tokens).
            """)

    @Option(help: "Server base URL.") var baseURL = "http://127.0.0.1:8080"
    @Option(help: "chat (POST /v1/chat/completions) or completions (POST /v1/completions).") var endpoint: String = "chat"
    @Option(help: "Model name to send; default: the first id from GET /v1/models.") var model: String?
    @Option(help: "Send over gRPC instead of HTTP: KServe/Triton's ModelStreamInfer at HOST:PORT (autoglm's server.grpc.port), streamed; with --endpoint completions.") var grpc: String?
    @Option(help: "Closed-loop concurrency levels, comma-separated.") var concurrency: String?
    @Option(help: "Open-loop Poisson request rate(s) in requests/s, comma-separated; \"inf\" sends all at once.") var requestRate: String?
    @Option(help: "With --request-rate: at most this many requests in flight.") var maxConcurrency: Int?
    @Option(help: "JSONL prompts file.") var dataset: String?
    @Option(help: "Synthetic prompt length in words (about one token each).") var inputLen = 128
    @Option(help: "Output tokens per request (synthetic prompts; overrides the dataset's max_tokens when given).") var outputLen: Int?
    @Option(help: "Requests per level.") var numPrompts = 64
    @Option(help: "Stop issuing requests this many seconds into a level; in-flight ones finish.") var maxDuration: Double?
    @Option(help: "Seconds a request may take before it counts as a timeout.") var requestTimeout: Double = 300
    @Option(help: "Requests sent before the first level and not counted.") var warmup = 0
    @Option(help: "Seed for synthetic prompts and arrival times.") var seed: UInt64 = 0
    @Option(parsing: .upToNextOption, help: "Goodput SLOs in ms, e.g. --goodput ttft:500 tpot:50 e2el:3000.") var goodput: [String] = []
    @Option(help: "Write all figures per level as JSON to this file.") var output: String?
    @Option(help: "Write SVG charts (throughput and latency percentiles against the levels) into this directory.") var plot: String?
    @Option(help: "With --plot: also draw this earlier run (a JSON file from --output, same levels), dashed; repeatable.")
    var compare: [String] = []

    func run() async throws {
        let configuration: BenchConfiguration
        do {
            configuration = try makeConfiguration()
        } catch let error as BenchError {
            throw CLIError(error.description)
        }
        // Compared runs are read before the run, so that a bad file fails at once.
        var compared: [BenchResult] = []
        for path in compare {
            guard plot != nil else { throw CLIError("--compare needs --plot DIR.") }
            do {
                compared.append(try JSONDecoder().decode(BenchResult.self, from: Data(contentsOf: URL(fileURLWithPath: path))))
            } catch {
                throw CLIError("could not read the bench result \(path): \(error.localizedDescription). Give a file written by --output.")
            }
        }
        let result: BenchResult
        do {
            result = try await BenchRunner(configuration: configuration, progress: ProgressReporter()).run()
        } catch let error as BenchError {
            throw CLIError(error.description)
        }
        print(ReportRenderer.render(result), terminator: "")
        if let output {
            do {
                try result.json().write(to: URL(fileURLWithPath: output))
            } catch {
                throw CLIError("could not write \(output): \(error.localizedDescription). Check that the directory exists and is writable.")
            }
        }
        if let plot {
            let charts: [(file: String, svg: String)]
            do { charts = try BenchCharts.charts(for: [result] + compared) } catch { throw CLIError(error.description) }
            do {
                try FileManager.default.createDirectory(atPath: plot, withIntermediateDirectories: true)
                for chart in charts {
                    try Data(chart.svg.utf8).write(to: URL(fileURLWithPath: plot).appendingPathComponent(chart.file))
                }
            } catch {
                throw CLIError("could not write the charts into \(plot): \(error.localizedDescription). Check that it is a writable directory.")
            }
            print("charts: \(charts.map { plot + "/" + $0.file }.joined(separator: ", "))")
        }
    }

    func makeConfiguration() throws -> BenchConfiguration {
        guard let endpoint = Endpoint(rawValue: endpoint.lowercased()) else {
            throw CLIError("--endpoint must be chat or completions, not \"\(endpoint)\".")
        }
        guard numPrompts > 0 else { throw CLIError("--num-prompts must be at least 1.") }
        guard requestTimeout > 0 else { throw CLIError("--request-timeout must be positive.") }
        guard warmup >= 0 else { throw CLIError("--warmup cannot be negative.") }
        if let maxDuration, maxDuration <= 0 { throw CLIError("--max-duration must be positive.") }
        if let maxConcurrency, maxConcurrency < 1 { throw CLIError("--max-concurrency must be at least 1.") }
        if concurrency != nil, requestRate != nil {
            throw CLIError("give either --concurrency (closed loop) or --request-rate (open loop), not both.")
        }
        var levels: [LoadLevel] = []
        if let requestRate {
            for item in requestRate.split(separator: ",") {
                let text = item.trimmingCharacters(in: .whitespaces).lowercased()
                let rate = text == "inf" ? Double.infinity : Double(text)
                guard let rate, rate > 0 else {
                    throw CLIError("--request-rate takes positive numbers or inf, comma-separated; \"\(text)\" is not one.")
                }
                levels.append(.open(rate: rate, maxConcurrency: maxConcurrency))
            }
        } else {
            for item in (concurrency ?? "1").split(separator: ",") {
                guard let c = Int(item.trimmingCharacters(in: .whitespaces)), c > 0 else {
                    throw CLIError("--concurrency takes positive integers, comma-separated, e.g. 1,4,8; \"\(item)\" is not one.")
                }
                levels.append(.closed(concurrency: c))
            }
        }
        guard !levels.isEmpty else { throw CLIError("no load levels given.") }
        var prompts: [BenchPrompt]
        if let dataset {
            prompts = try Dataset.load(path: dataset)
            if let outputLen { prompts = prompts.map { BenchPrompt(input: $0.input, maxTokens: outputLen) } }
        } else {
            guard inputLen > 0 else { throw CLIError("--input-len must be at least 1.") }
            let output = outputLen ?? 128
            guard output > 0 else { throw CLIError("--output-len must be at least 1.") }
            prompts = SyntheticPrompts.make(count: numPrompts, inputLength: inputLen, outputLength: output, seed: seed)
        }
        var configuration = BenchConfiguration(
            urls: try ServerURLs(baseURL: baseURL), endpoint: endpoint, model: model, prompts: prompts, levels: levels,
            numPrompts: numPrompts, maxDuration: maxDuration, requestTimeout: requestTimeout, warmup: warmup,
            seed: seed, slo: try GoodputSLO(parsing: goodput))
        configuration.grpc = try grpc.map { text throws(BenchError) in try GRPCTarget(text) }
        return configuration
    }
}
