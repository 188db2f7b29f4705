import Foundation
import Hummingbird
import HummingbirdTesting
import InMemoryTracing
import Instrumentation
import NIOCore
@testable import Server
import Serving
import Synchronization
import Testing
import Tracing

/// One in-memory tracer for the whole test process (the tracing system is bootstrapped once per process): other
/// suites' requests make spans too; each test reads only the spans of its own trace id.
enum TestTracer {
    static let tracer: InMemoryTracer = {
        let tracer = InMemoryTracer()
        InstrumentationSystem.bootstrap(tracer)
        return tracer
    }()

    static func spans(trace: String) -> [FinishedInMemorySpan] {
        tracer.finishedSpans.filter { $0.spanContext.traceID == trace }
    }
}

@Suite("Tracing: a span per request, its engine phases, the trace carried to upstream engines", .serialized, .timeLimit(.minutes(5)))
struct TracingTests {
    @Test("a request continues the caller's trace: a server span, and queue, prefill and decode spans under it in order")
    func phasesOfLocalRequests() async throws {
        let tracer = TestTracer.tracer
        let h = try ServerTests.harness()
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            for (trace, stream) in [("trace-oneshot", false), ("trace-stream", true)] {
                let r = try await client.execute(
                    uri: "/v1/chat/completions", method: .post,
                    headers: [.contentType: "application/json", .init("in-memory-trace-id")!: trace, .init("in-memory-span-id")!: "caller-span"],
                    body: ByteBuffer(string: #"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"ignore_eos":true,"stream":\#(stream)}"#))
                #expect(r.status == .ok)
                // A streamed response's spans end as its body is written: wait for the server span.
                try await ServerTests.waitUntil("the request's span ends") { TestTracer.spans(trace: trace).contains { $0.kind == .server } }
                let spans = TestTracer.spans(trace: trace)
                let server = try #require(spans.first { $0.kind == .server }, "\(spans.map(\.operationName))")
                #expect(server.operationName == "/v1/chat/completions")
                #expect(server.parentSpanID == "caller-span", "the caller's span is the parent")
                #expect(server.attributes["http.response.status_code"]?.toSpanAttribute() == 200.toSpanAttribute())
                let phases = ["autoglm.queue", "autoglm.prefill", "autoglm.decode"].map { name in spans.first { $0.operationName == name } }
                let found = phases.compactMap { $0 }
                #expect(found.count == 3, "\(spans.map(\.operationName))")
                guard found.count == 3 else { continue }
                for phase in found {
                    #expect(phase.parentSpanID == server.spanContext.spanID)
                    #expect(phase.startInstant.nanosecondsSinceEpoch <= phase.endInstant.nanosecondsSinceEpoch)
                }
                // Back to back, in order, within the request's span.
                #expect(found[0].endInstant.nanosecondsSinceEpoch == found[1].startInstant.nanosecondsSinceEpoch)
                #expect(found[1].endInstant.nanosecondsSinceEpoch == found[2].startInstant.nanosecondsSinceEpoch)
                #expect(found[0].startInstant.nanosecondsSinceEpoch >= server.startInstant.nanosecondsSinceEpoch)
                #expect(found[2].attributes["autoglm.completion_tokens"]?.toSpanAttribute() == 4.toSpanAttribute())
                #expect(found[1].attributes["autoglm.prompt_tokens"] != nil)
            }
        }
        _ = tracer
    }

    @Test("to an upstream engine: a client span under the request's span is injected")
    func upstreamPropagation() async throws {
        _ = TestTracer.tracer
        try await UpstreamTests.withFault { fault, url in
            let model = UpstreamModel(name: "glm", upstreamName: "ok", endpoints: [.init(baseURL: url)], contextLength: 8192)
            try await UpstreamTests.withGateway([model], settings: UpstreamTests.quick) { client, _, _ in
                for stream in [false, true] {
                    let trace = "trace-upstream-\(stream)"
                    let r = try await client.execute(
                        uri: "/v1/chat/completions", method: .post,
                        headers: [.contentType: "application/json", .init("in-memory-trace-id")!: trace, .init("in-memory-span-id")!: "caller"],
                        body: ByteBuffer(string: #"{"model":"glm","messages":[{"role":"user","content":"hi"}],"stream":\#(stream)}"#))
                    #expect(r.status == .ok)
                    let seen = fault.state.withLock { $0.traceHeaders }
                    #expect(seen["in-memory-trace-id"] == trace, "the request's trace went upstream: \(seen)")
                    try await UpstreamTests.waitUntilSpan(trace: trace)
                    // The upstream's parent: the HTTP client's span, itself under the gateway's server span.
                    let spans = TestTracer.spans(trace: trace)
                    let server = try #require(spans.first { $0.kind == .server })
                    let upstreamParent = try #require(seen["in-memory-span-id"])
                    try await ServerTests.waitUntil("the client span ends") { TestTracer.spans(trace: trace).contains { $0.spanID == upstreamParent } }
                    let clientSpan = try #require(TestTracer.spans(trace: trace).first { $0.spanID == upstreamParent })
                    #expect(clientSpan.kind == .client && clientSpan.parentSpanID == server.spanID)
                    #expect(server.parentSpanID == "caller")
                }
            }
        }
    }

    @Test("with no tracer: the caller's traceparent and tracestate pass to the upstream as they came; a malformed one does not")
    func passThroughWithoutTracer() async throws {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let headers = RequestTracing.headers(incoming: (parent, "vendor=abc"), tracerActive: false)
        #expect(headers.map(\.0) == ["traceparent", "tracestate"] && headers.map(\.1) == [parent, "vendor=abc"])
        #expect(RequestTracing.headers(incoming: (parent, "vendor=abc"), tracerActive: true).isEmpty, "the tracer's client span injects its own")
        #expect(RequestTracing.headers(incoming: (nil, "vendor=abc"), tracerActive: false).isEmpty)
        // Through the server: the middleware keeps only a well-formed traceparent.
        let h = try ServerTests.harness(start: false)
        defer { h.model.backend.shutdown() }
        let seen = Mutex<[(String?, String?)]>([])
        let router = Router(context: ServerContext.self)
        router.add(middleware: TraceNoteMiddleware())
        router.get("/probe") { _, context in
            seen.withLock { $0.append(context.note.traceIncoming) }
            return "ok"
        }
        try await Application(router: router).test(.router) { client in
            let zeros = "00-00000000000000000000000000000000-00f067aa0ba902b7-01", upper = parent.uppercased()
            for value in [parent, "00-not-a-trace", zeros, upper] {
                _ = try await client.execute(uri: "/probe", method: .get, headers: [.init("traceparent")!: value, .init("tracestate")!: "s=1"])
            }
        }
        let notes = seen.withLock { $0 }
        #expect(notes.map(\.0) == [parent, nil, nil, nil])
    }
}

extension UpstreamTests {
    static func waitUntilSpan(trace: String) async throws {
        try await ServerTests.waitUntil("the request's span ends") { TestTracer.spans(trace: trace).contains { $0.kind == .server } }
    }
}
