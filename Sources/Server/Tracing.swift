import HTTPTypes
import Hummingbird
import Instrumentation
import Serving
import Tracing

/// Distributed tracing: Hummingbird's TracingMiddleware opens a server span per request (continuing the caller's trace
/// from its headers, W3C `traceparent` with the OpenTelemetry tracer); each generation adds its queue, prefill and
/// decode phases as child spans; requests to upstream engines carry the trace on. With no tracer bootstrapped
/// (tracing off, the default) the spans are no-ops, and a caller's `traceparent`/`tracestate` still pass through to
/// upstream engines unchanged, so their spans join the caller's trace.
enum RequestTracing {
    static let traceparent = HTTPField.Name("traceparent")!
    static let tracestate = HTTPField.Name("tracestate")!

    /// The engine's phases of one finished generation, as spans under the request's span, placed back in time from
    /// now by the outcome's durations (the engine measures them; its thread knows nothing of spans).
    static func recordPhases(_ outcome: GenerationOutcome, parent: InstrumentationContext?, model: String, choice: Int) {
        guard let parent else { return }
        // At most a day per phase: the sum below cannot overflow.
        func ns(_ seconds: Double) -> UInt64 { UInt64(min(86_400, max(0, seconds.isFinite ? seconds : 0)) * 1e9) }
        let phases = [("queue", ns(outcome.queueSeconds)), ("prefill", ns(outcome.prefillSeconds)), ("decode", ns(outcome.decodeSeconds))]
        let end = DefaultTracerClock.now.nanosecondsSinceEpoch
        let total = phases.reduce(0) { $0 + $1.1 }
        guard total <= end else { return }
        var t = end - total
        for (name, duration) in phases {
            let span = startSpan("autoglm.\(name)", at: DefaultTracerClock.Instant(nanosecondsSinceEpoch: t), context: parent, ofKind: .internal)
            span.attributes["autoglm.model"] = model
            span.attributes["autoglm.choice"] = choice
            switch name {
            case "prefill":
                span.attributes["autoglm.prompt_tokens"] = outcome.promptTokens
                span.attributes["autoglm.cached_prompt_tokens"] = outcome.cachedPromptTokens
            case "decode":
                span.attributes["autoglm.completion_tokens"] = outcome.completionTokens
                span.attributes["autoglm.finish_reason"] = CompletionsAPI.finishReason(outcome.finishReason)
            default:
                span.attributes["autoglm.preemptions"] = outcome.preemptions
            }
            t += duration
            span.end(at: DefaultTracerClock.Instant(nanosecondsSinceEpoch: t))
        }
    }

    /// A W3C traceparent of version 00: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower case, neither
    /// id all zeros. Anything else is not passed on.
    static func isValid(traceparent: String) -> Bool {
        let parts = traceparent.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00" else { return false }
        let hex = { (s: Substring, n: Int) in s.utf8.count == n && s.utf8.allSatisfy { (0x30 ... 0x39).contains($0) || (0x61 ... 0x66).contains($0) } }
        guard hex(parts[1], 32), hex(parts[2], 16), hex(parts[3], 2) else { return false }
        return parts[1].contains { $0 != "0" } && parts[2].contains { $0 != "0" }
    }

    /// Whether a tracer is bootstrapped (the OpenTelemetry exporter, or a test's). AsyncHTTPClient then opens a
    /// client span for each upstream request and injects it, so the upstream's spans sit under the gateway's.
    static var tracerActive: Bool { !(InstrumentationSystem.tracer is NoOpTracer) }

    /// The headers the gateway adds itself to carry the trace to an upstream engine: with no tracer, the caller's
    /// `traceparent` and `tracestate` as they came (the gateway is invisible in the trace, the upstream joins the
    /// caller's); with one, none (AsyncHTTPClient injects the tracer's).
    static func headers(incoming: (traceparent: String?, tracestate: String?), tracerActive: Bool = RequestTracing.tracerActive) -> [(String, String)] {
        guard !tracerActive, let parent = incoming.traceparent else { return [] }
        return [("traceparent", parent)] + (incoming.tracestate.map { [("tracestate", $0)] } ?? [])
    }
}

/// Notes the caller's trace headers (for upstream engines when no tracer is bootstrapped) and the request's trace
/// context (for the phase spans, written after the handler has returned when the response streams).
struct TraceNoteMiddleware: RouterMiddleware {
    typealias Context = ServerContext

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        let parent = request.headers[RequestTracing.traceparent].flatMap { RequestTracing.isValid(traceparent: $0) ? $0 : nil }
        let state = request.headers[RequestTracing.tracestate].map { String($0.prefix(512)) }
        context.note.setTrace(incoming: (parent, state), context: InstrumentationContext.current)
        return try await next(request, context)
    }
}
