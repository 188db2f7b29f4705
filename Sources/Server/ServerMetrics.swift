import Foundation
public import Prometheus
public import Serving

/// How `/metrics` names the series (`metrics.names`).
public enum MetricNames: String, Sendable, CaseIterable {
    /// `autoglm_` + vLLM's names where vLLM has the metric: valid Prometheus names (colons are reserved for
    /// recording rules), counters and only counters ending in `_total`.
    case autoglm
    /// vLLM's exact names (`vllm:num_requests_running`, `vllm:iteration_tokens_total`, ...), for dashboards and
    /// autoscaling recipes written for vLLM. autoglm's own series get the same `vllm:` prefix.
    case vllm

    /// The exposition text under these names (the registry writes `autoglm_` names).
    public func exposition(_ text: [UInt8]) -> [UInt8] {
        guard self == .vllm else { return text }
        var out = ""
        out.reserveCapacity(text.count + text.count / 16)
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            out += Self.vllmLine(line)
            out += "\n"
        }
        if out.hasSuffix("\n\n") { out.removeLast() }
        return Array(out.utf8)
    }

    /// One line with its metric name (after `# HELP ` / `# TYPE `, or at the start) renamed.
    static func vllmLine(_ line: Substring) -> String {
        for lead in ["# HELP ", "# TYPE ", ""] where line.hasPrefix(lead + ServerMetrics.prefix) {
            var name = line.dropFirst(lead.count + ServerMetrics.prefix.count)
            // vLLM's histogram of tokens per engine step is called iteration_tokens_total.
            if name.hasPrefix("iteration_tokens"), !name.hasPrefix("iteration_tokens_total") {
                name = "iteration_tokens_total" + name.dropFirst("iteration_tokens".count)
            }
            return lead + "vllm:" + name
        }
        return String(line)
    }
}

/// The server's Prometheus metrics: vLLM's names where vLLM has the metric, with the prefix `autoglm_`
/// (`metrics.names: vllm` serves vLLM's exact `vllm:` names), labelled by `model_name`. Counters carry the
/// `_total` suffix that Python's prometheus_client adds to vLLM's counters; nothing else does.
public final class ServerMetrics: SchedulerObserver, Sendable {
    /// The prefix of every series the registry holds.
    public static let prefix = "autoglm_"
    public let registry: PrometheusCollectorRegistry
    let model: String

    let running, waiting, kvUsage, kvBlocksUsed, kvBlocksTotal: Gauge
    let promptTokens, generationTokens, preemptions, prefixQueries, prefixHits: Counter
    let timeToFirstToken, interTokenLatency, timePerOutputToken, e2eLatency, queueTime, prefillTime, decodeTime: DurationHistogram
    let requestPromptTokens, requestGenerationTokens, iterationTokens, batchSize: ValueHistogram

    static let latencyBuckets: [Duration] = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560]
        .map { Duration.nanoseconds(Int64($0 * 1e9)) }
    static let tokenLatencyBuckets: [Duration] = [0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80]
        .map { Duration.nanoseconds(Int64($0 * 1e9)) }
    static let tokenCountBuckets: [Double] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]

    public init(registry: PrometheusCollectorRegistry, model: String) {
        self.registry = registry
        self.model = model
        let labels = [("model_name", model)]
        func gauge(_ name: String, _ help: String) -> Gauge { registry.makeGauge(descriptor: Self.descriptor(name, help), labels: labels) }
        func counter(_ name: String, _ help: String) -> Counter { registry.makeCounter(descriptor: Self.descriptor(name, help), labels: labels) }
        func durations(_ name: String, _ buckets: [Duration], _ help: String) -> DurationHistogram {
            registry.makeDurationHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets)
        }
        func values(_ name: String, _ buckets: [Double], _ help: String) -> ValueHistogram {
            registry.makeValueHistogram(descriptor: Self.descriptor(name, help), labels: labels, buckets: buckets)
        }
        running = gauge("num_requests_running", "Number of requests in the running batch.")
        waiting = gauge("num_requests_waiting", "Number of requests waiting to be scheduled.")
        kvUsage = gauge("kv_cache_usage_perc", "KV-cache usage: 1 means 100 percent of the blocks are in use.")
        kvBlocksUsed = gauge("kv_cache_blocks_used", "KV-cache blocks held by running sequences.")
        kvBlocksTotal = gauge("kv_cache_blocks_capacity", "KV-cache blocks in the arena.")
        promptTokens = counter("prompt_tokens_total", "Prompt tokens processed (prefix-cache hits excluded).")
        generationTokens = counter("generation_tokens_total", "Generated tokens.")
        preemptions = counter("num_preemptions_total", "Sequences preempted for lack of KV blocks.")
        prefixQueries = counter("prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.")
        prefixHits = counter("prefix_cache_hits_total", "Prompt tokens found in the prefix cache.")
        timeToFirstToken = durations("time_to_first_token_seconds", Self.latencyBuckets, "Time from arrival to the first generated token.")
        interTokenLatency = durations("inter_token_latency_seconds", Self.tokenLatencyBuckets, "Time between consecutive generated tokens.")
        timePerOutputToken = durations("request_time_per_output_token_seconds", Self.tokenLatencyBuckets, "Decode time divided by tokens after the first, per request.")
        e2eLatency = durations("e2e_request_latency_seconds", Self.latencyBuckets, "Time from arrival to the last token.")
        queueTime = durations("request_queue_time_seconds", Self.latencyBuckets, "Time waiting for a batch slot.")
        prefillTime = durations("request_prefill_time_seconds", Self.latencyBuckets, "Time from admission to the first token.")
        decodeTime = durations("request_decode_time_seconds", Self.latencyBuckets, "Time from the first token to the last.")
        requestPromptTokens = values("request_prompt_tokens", Self.tokenCountBuckets, "Prompt length per request.")
        requestGenerationTokens = values("request_generation_tokens", Self.tokenCountBuckets, "Generated tokens per request.")
        iterationTokens = values("iteration_tokens", [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192], "Tokens per engine step.")
        batchSize = values("batch_size", [1, 2, 4, 8, 16, 32, 64, 128, 256], "Sequences per engine step.")
    }

    /// Counts one HTTP response (route, model, status): `autoglm_http_requests_total`.
    public static func countRequest(registry: PrometheusCollectorRegistry, route: String, status: Int, model: String?, version: String? = nil) {
        registry.makeCounter(descriptor: Self.descriptor("http_requests_total", "HTTP requests by route, model, version and status."),
                             labels: [("route", route), ("model_name", model ?? ""), ("version", version ?? ""), ("status", String(status))]).increment()
    }

    /// Sets the gauges from a snapshot (on each step and before each scrape).
    public func update(_ s: SchedulerStatistics) {
        running.set(Double(s.running))
        waiting.set(Double(s.waiting))
        kvBlocksUsed.set(Double(s.kvBlocksUsed))
        kvBlocksTotal.set(Double(s.kvBlocksTotal))
        kvUsage.set(s.kvBlocksTotal > 0 ? Double(s.kvBlocksUsed) / Double(s.kvBlocksTotal) : 0)
    }

    public func stepCompleted(batchTokens: Int, batchSequences: Int, statistics: SchedulerStatistics) {
        iterationTokens.record(Double(batchTokens))
        batchSize.record(Double(batchSequences))
        update(statistics)
    }

    public func prefixCacheLookup(queriedTokens: Int, hitTokens: Int) {
        prefixQueries.increment(by: Int64(queriedTokens))
        prefixHits.increment(by: Int64(hitTokens))
        promptTokens.increment(by: Int64(queriedTokens - hitTokens))
    }

    public func preempted() { preemptions.increment() }

    public func firstToken(afterSeconds s: Double) { timeToFirstToken.record(Self.duration(s)) }

    public func interTokenLatency(seconds s: Double) { interTokenLatency.record(Self.duration(s)) }

    public func requestFinished(_ o: GenerationOutcome) {
        registry.makeCounter(descriptor: Self.descriptor("request_success_total", "Finished requests by finish reason."),
                             labels: [("model_name", model), ("finished_reason", CompletionsAPI.finishReason(o.finishReason))]).increment()
        generationTokens.increment(by: Int64(o.completionTokens))
        e2eLatency.record(Self.duration(o.totalSeconds))
        queueTime.record(Self.duration(o.queueSeconds))
        prefillTime.record(Self.duration(o.prefillSeconds))
        decodeTime.record(Self.duration(o.decodeSeconds))
        if o.completionTokens > 1 { timePerOutputToken.record(Self.duration(o.decodeSeconds / Double(o.completionTokens - 1))) }
        requestPromptTokens.record(Double(o.promptTokens))
        requestGenerationTokens.record(Double(o.completionTokens))
    }

    static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: prefix + name, unitName: "", helpText: help)
    }

    static func duration(_ seconds: Double) -> Duration { .nanoseconds(Int64(max(0, seconds) * 1e9)) }
}
