public import Ops
import Instrumentation
import OTel
public import ServiceLifecycle
import Tracing

/// `tracing.enabled`: OpenTelemetry export of the request spans (RequestTracing) by OTLP/HTTP, through swift-otel.
/// Only traces: metrics stay on /metrics (Prometheus) and logs on standard error.
public enum Telemetry {
    /// Bootstraps the process's tracer (once, before the upstream gateway's HTTP client is made: it takes the tracer
    /// it finds then) and returns the exporter's service, to run beside the server (it flushes the last spans when the
    /// server has stopped). nil when tracing is off.
    public static func start(_ tracing: AutoGLMConfig.Tracing) throws -> (any Service)? {
        guard tracing.enabled else { return nil }
        var configuration = OTel.Configuration.default
        configuration.serviceName = tracing.serviceName
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        configuration.traces.otlpExporter.endpoint = tracesURL(tracing.endpoint)
        configuration.propagators = [.traceContext]
        // By trace id, not by the caller's sampled flag: autoglm is the edge, and a client could otherwise have every
        // request recorded (load on the collector) or none (its admin calls untraced). Spans of one trace still agree.
        let ratio = Double(tracing.samplePercent) / 100
        if let sampler = OTel.Configuration.TracesConfiguration.SamplerConfiguration.traceIDRatio(ratio: ratio) {
            configuration.traces.sampler = sampler
        }
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(backend.factory)
        return backend.service
    }

    /// The collector's traces URL: tracing.endpoint is its base (as OTEL_EXPORTER_OTLP_ENDPOINT), spans go to /v1/traces.
    static func tracesURL(_ base: String) -> String {
        if base.hasSuffix("/v1/traces") { return base }
        return (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces"
    }
}
