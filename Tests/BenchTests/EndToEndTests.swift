import Bench
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Runs the bench against a tiny Hummingbird server on 127.0.0.1 (ephemeral port) that streams a
/// known SSE response: first chunk after 200 ms, then two more 50 ms apart, usage 5 prompt / 3
/// completion tokens. Lines are split across writes and use \r\n in places, with a `:` comment.
// Timeouts here are generous on purpose: inside the full parallel suite on 2 cores the engine tests'
// spinning worker pools can starve these servers for seconds, and a test must not fail because the
// machine is busy. Only bounds the server's own sleeps guarantee are asserted on times.
@Suite(.timeLimit(.minutes(5))) struct EndToEndTests {
    static let firstChunkDelay = 0.2
    static let gap = 0.05
    /// The known stream, as the server writes it (StreamTimingTests feeds the same bytes with recorded
    /// arrival times), and the sleep before each write.
    static let pieces = [
        ": keep-alive\r\n\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"a\"}}]}\r",
        "\n\r\ndata: {\"choices\":[{\"index\":0,\"del", "ta\":{\"content\":\"b\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"c\"}}]}\n\ndata: {\"choices\":[],",
        "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,\"total_tokens\":8}}\n\ndata: [DONE]\n\n",
    ]
    static let delays = [firstChunkDelay, gap, 0, gap, 0]

    static func makeApplication() -> some ApplicationProtocol {
        let router = Router()
        router.get("/v1/models") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"object":"list","data":[{"id":"tiny-model"},{"id":"other"}]}"#)))
        }
        router.post("/v1/chat/completions") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            // Reject requests that do not ask for what the bench promises to send.
            struct Body: Decodable {
                struct StreamOptions: Decodable { var include_usage: Bool }
                var model: String
                var stream: Bool
                var stream_options: StreamOptions
                var max_tokens: Int
                var ignore_eos: Bool
                var messages: [[String: String]]
            }
            guard let body = try? JSONDecoder().decode(Body.self, from: Data(bytes.readableBytesView)),
                  body.model == "tiny-model", body.stream, body.stream_options.include_usage, body.ignore_eos else {
                return Response(status: .badRequest)
            }
            let pieces = Self.pieces, delays = Self.delays
            return Response(status: .ok, headers: [.contentType: "text/event-stream"], body: ResponseBody { writer in
                for (piece, delay) in zip(pieces, delays) {
                    if delay > 0 { try await Task.sleep(for: .milliseconds(Int(delay * 1000))) }
                    try await writer.write(ByteBuffer(string: piece))
                }
                try await writer.finish(nil)
            })
        }
        router.post("/limited/v1/chat/completions") { _, _ in
            Response(status: .tooManyRequests, body: ResponseBody(byteBuffer: ByteBuffer(string: "slow down")))
        }
        router.post("/slow/v1/chat/completions") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/event-stream"], body: ResponseBody { writer in
                try await writer.write(ByteBuffer(string: ": accepted\n\n"))
                try await Task.sleep(for: .seconds(3))
                try await writer.finish(nil)
            })
        }
        router.post("/broken/v1/chat/completions") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/event-stream"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: "data: {not json\n\n")))
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    static func configuration(port: Int, path: String = "", model: String? = nil, levels: [LoadLevel],
                              numPrompts: Int = 4, maxDuration: Double? = nil, requestTimeout: Double = 120,
                              connectTimeout: Double? = 60, warmup: Int = 1) throws -> BenchConfiguration {
        BenchConfiguration(
            urls: try ServerURLs(baseURL: "http://127.0.0.1:\(port)\(path)"), endpoint: .chat, model: model,
            prompts: SyntheticPrompts.make(count: numPrompts, inputLength: 5, outputLength: 3, seed: 1),
            levels: levels, numPrompts: numPrompts, maxDuration: maxDuration, requestTimeout: requestTimeout,
            connectTimeout: connectTimeout, warmup: warmup, seed: 1,
            slo: GoodputSLO(ttftMs: 600_000))
    }

    @Test func closedLoopMeasuresTheKnownStream() async throws {
        try await Self.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            let config = try Self.configuration(port: port, levels: [.closed(concurrency: 2)])
            let result = try await BenchRunner(configuration: config).run()
            #expect(result.model == "tiny-model")  // from GET /v1/models
            let r = try #require(result.levels.first)
            #expect(r.completed == 4 && r.failed == 0 && r.errors.isEmpty)
            #expect(r.totalOutputTokens == 12 && r.totalInputTokens == 20)
            #expect(r.ttft.count == 4)
            // Only bounds that the server's sleeps guarantee whatever the scheduling: the clock starts
            // before the POST and the server sleeps 200 ms before its first byte and 300 ms in all
            // before its last. Gaps between chunks are measured at the receiver, where a late first
            // chunk shortens the next gap, so their values are checked exactly in StreamTimingTests
            // from recorded arrival times, not here.
            #expect(r.ttft.meanMs >= Self.firstChunkDelay * 1000)
            #expect(r.ttft.p50Ms >= Self.firstChunkDelay * 1000)
            #expect(r.e2el.meanMs >= (Self.firstChunkDelay + 2 * Self.gap) * 1000)
            // Two gaps per request between the three choices chunks.
            #expect(r.itl.count == 8)
            #expect(r.tpot.count == 4)
            // TPOT = (E2EL - TTFT) / (3 - 1) per request, so the means obey the same identity.
            #expect(abs(r.tpot.meanMs - (r.e2el.meanMs - r.ttft.meanMs) / 2) < 1e-6)
            // Two at a time, 4 requests of >= 300 ms each: at least 600 ms.
            #expect(r.durationSeconds >= 0.6)
            #expect(r.goodRequests == 4)
        }
    }

    @Test func openLoopWithCap() async throws {
        try await Self.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            let config = try Self.configuration(port: port, model: "tiny-model",
                                                levels: [.open(rate: 20, maxConcurrency: 2), .open(rate: .infinity, maxConcurrency: nil)])
            let result = try await BenchRunner(configuration: config).run()
            #expect(result.levels.map(\.completed) == [4, 4])
            #expect(result.levels.allSatisfy { $0.ttft.meanMs >= Self.firstChunkDelay * 1000 })
        }
    }

    @Test func statusAndStreamErrorsAreCountedByKind() async throws {
        try await Self.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            let limited = try await BenchRunner(configuration: try Self.configuration(
                port: port, path: "/limited", model: "tiny-model", levels: [.closed(concurrency: 2)])).run()
            #expect(limited.levels[0].completed == 0)
            #expect(limited.levels[0].errors == ["http_429": 4])
            let broken = try await BenchRunner(configuration: try Self.configuration(
                port: port, path: "/broken", model: "tiny-model", levels: [.closed(concurrency: 2)])).run()
            #expect(broken.levels[0].errors == ["malformed_stream": 4])
        }
    }

    @Test func maxDurationStopsIssuing() async throws {
        try await Self.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            // Each request takes >= 300 ms; after 100 ms no new one starts, the one in flight finishes.
            let config = try Self.configuration(port: port, model: "tiny-model", levels: [.closed(concurrency: 1)],
                                                numPrompts: 10, maxDuration: 0.1, warmup: 0)
            let r = try await BenchRunner(configuration: config).run().levels[0]
            #expect(r.completed == 1 && r.failed == 0)
        }
    }

    @Test func timeoutsAndRefusedConnectionsAreCountedByKind() async throws {
        try await Self.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            // The server holds the stream 3 s; the request may take 0.5 s once connected. Connecting has
            // its own generous limit, so a slow connection on a busy machine is not a connect error.
            let slow = try Self.configuration(port: port, path: "/slow", model: "tiny-model", levels: [.closed(concurrency: 2)],
                                              numPrompts: 2, requestTimeout: 0.5, connectTimeout: 60, warmup: 0)
            let r = try await BenchRunner(configuration: slow).run().levels[0]
            #expect(r.errors == ["timeout": 2])
        }
        // Port 1 on the loopback interface: nothing listens there. The connect limit (retries included)
        // is far inside the request's, so the refusal cannot race the request timeout.
        let refused = try Self.configuration(port: 1, model: "tiny-model", levels: [.closed(concurrency: 1)],
                                             numPrompts: 1, requestTimeout: 120, connectTimeout: 0.5, warmup: 0)
        let r = try await BenchRunner(configuration: refused).run().levels[0]
        #expect(r.errors == ["connect_error": 1])
    }

    @Test func missingModelListIsAnActionableError() async throws {
        try await Self.makeApplication().test(.live) { client in
            let port = try #require(client.port)
            let config = try Self.configuration(port: port, path: "/limited", levels: [.closed(concurrency: 1)])
            await #expect(throws: BenchError.self) { try await BenchRunner(configuration: config).run() }
        }
    }
}
