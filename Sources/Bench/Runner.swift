import AsyncHTTPClient
import Foundation
// Transitive modules of AsyncHTTPClient: its API uses their types (ByteBuffer, TimeAmount, HTTPMethod).
import NIOCore
import NIOHTTP1
import GRPCCore
import GRPCNIOTransportHTTP2

/// One load level.
public enum LoadLevel: Sendable, Equatable {
    /// Closed loop: this many requests in flight at all times.
    case closed(concurrency: Int)
    /// Open loop: Poisson arrivals at `rate` requests/s (infinity: all at once), optionally capped.
    case open(rate: Double, maxConcurrency: Int?)

    public var label: String {
        switch self {
        case .closed(let c): "concurrency \(c)"
        case .open(let rate, let cap):
            (rate.isFinite ? String(format: "rate %g/s", rate) : "rate inf") + (cap.map { " (max \($0) in flight)" } ?? "")
        }
    }

    /// The most requests that can be in flight (nil: unbounded).
    var inFlightLimit: Int? {
        switch self {
        case .closed(let c): c
        case .open(_, let cap): cap
        }
    }
}

public struct BenchConfiguration: Sendable {
    public var urls: ServerURLs
    public var endpoint: Endpoint
    /// Nil: ask GET /v1/models and use the first id.
    public var model: String?
    public var prompts: [BenchPrompt]
    public var levels: [LoadLevel]
    /// Requests per level (prompts are reused cyclically when fewer).
    public var numPrompts: Int
    /// Stop issuing new requests this many seconds into a level.
    public var maxDuration: Double?
    public var requestTimeout: Double
    /// Seconds to get a connection (nil: half the request timeout, at most 10 s), so that a refused or
    /// unreachable server reports as connect_error rather than racing the whole-request timeout.
    public var connectTimeout: Double?
    public var warmup: Int
    public var seed: UInt64
    public var slo: GoodputSLO
    /// Send over gRPC (KServe's ModelStreamInfer) to this address instead of HTTP; the HTTP base URL still lists models.
    public var grpc: GRPCTarget?

    public init(urls: ServerURLs, endpoint: Endpoint, model: String?, prompts: [BenchPrompt], levels: [LoadLevel],
                numPrompts: Int, maxDuration: Double? = nil, requestTimeout: Double = 300, connectTimeout: Double? = nil,
                warmup: Int = 0, seed: UInt64 = 0, slo: GoodputSLO = GoodputSLO()) {
        self.urls = urls
        self.endpoint = endpoint
        self.model = model
        self.prompts = prompts
        self.levels = levels
        self.numPrompts = numPrompts
        self.maxDuration = maxDuration
        self.requestTimeout = requestTimeout
        self.connectTimeout = connectTimeout
        self.warmup = warmup
        self.seed = seed
        self.slo = slo
    }
}

/// The machine-readable result of a run (`--output`).
public struct BenchResult: Sendable, Codable, Equatable {
    public var baseURL: String
    public var endpoint: String
    public var model: String
    public var numPrompts: Int
    public var seed: UInt64
    public var slo: GoodputSLO
    public var levels: [LevelReport]

    enum CodingKeys: String, CodingKey {
        case baseURL = "base_url", endpoint, model, numPrompts = "num_prompts", seed, slo = "goodput_slo", levels
    }

    public init(baseURL: String, endpoint: String, model: String, numPrompts: Int, seed: UInt64, slo: GoodputSLO,
                levels: [LevelReport]) {
        self.baseURL = baseURL
        self.endpoint = endpoint
        self.model = model
        self.numPrompts = numPrompts
        self.seed = seed
        self.slo = slo
        self.levels = levels
    }

    public func json() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)) ?? Data()
    }
}

/// Runs the levels of a configuration against the server, one after the other.
public struct BenchRunner: Sendable {
    public var configuration: BenchConfiguration
    public var progress: ProgressReporter?

    public init(configuration: BenchConfiguration, progress: ProgressReporter? = nil) {
        self.configuration = configuration
        self.progress = progress
    }

    public func run() async throws -> BenchResult {
        let config = configuration
        guard config.numPrompts > 0, !config.prompts.isEmpty else {
            throw BenchError.invalidOption("nothing to send: --num-prompts must be at least 1.")
        }
        let poolSize = max(1, config.levels.map { $0.inFlightLimit ?? config.numPrompts }.max() ?? 1, config.warmup)
        var clientConfiguration = HTTPClient.Configuration(
            timeout: .init(connect: .milliseconds(Int64((config.connectTimeout ?? min(10, max(0.1, config.requestTimeout / 2))) * 1000))),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: poolSize))
        clientConfiguration.httpVersion = .http1Only
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
        do {
            let result = try await run(client: client)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func run(client: HTTPClient) async throws -> BenchResult {
        let config = configuration
        let model: String
        if let given = config.model {
            model = given
        } else {
            model = try await Self.firstModel(client: client, urls: config.urls, timeout: config.requestTimeout)
        }
        let url = config.urls.url(for: config.endpoint)
        var bodies: [Data] = []
        for prompt in config.prompts {
            bodies.append(try RequestBody.make(prompt: prompt, endpoint: config.endpoint, model: model))
        }
        if let target = config.grpc {
            guard config.endpoint == .completions else {
                throw BenchError.invalidOption("--grpc sends KServe's text_input: use it with --endpoint completions.")
            }
            let transport = try HTTP2ClientTransport.Posix(target: .dns(host: target.host, port: target.port), transportSecurity: .plaintext)
            return try await withGRPCClient(transport: transport) { grpcClient in
                try await run(client: client, model: model, bodies: bodies,
                              sender: KServeStreamSender(client: grpcClient, timeout: config.requestTimeout))
            }
        }
        return try await run(client: client, model: model, bodies: bodies,
                             sender: RequestSender(client: client, url: url, timeout: config.requestTimeout))
    }

    private func run(client: HTTPClient, model: String, bodies: [Data], sender: any RequestSending) async throws -> BenchResult {
        let config = configuration

        if config.warmup > 0 {
            let concurrency = min(config.warmup, config.levels.first?.inFlightLimit ?? 1)
            progress?.begin(label: "warmup", total: config.warmup)
            let (timings, _) = await runLevel(.closed(concurrency: max(1, concurrency)), count: config.warmup,
                                               bodies: bodies, sender: sender, levelSeed: config.seed)
            progress?.end(label: "warmup", completed: timings.filter { $0.failure == nil }.count,
                          failed: timings.filter { $0.failure != nil }.count)
        }
        var reports: [LevelReport] = []
        for (index, level) in config.levels.enumerated() {
            progress?.begin(label: level.label, total: config.numPrompts)
            let (timings, duration) = await runLevel(level, count: config.numPrompts, bodies: bodies, sender: sender,
                                                     levelSeed: config.seed &+ UInt64(index))
            var rate: Double?
            var cap: Int?
            var concurrency: Int?
            switch level {
            case .closed(let c): concurrency = c
            case .open(let r, let m): rate = r; cap = m
            }
            let report = LevelReport(label: level.label, concurrency: concurrency, requestRate: rate.map { $0.isFinite ? $0 : -1 },
                                     maxConcurrency: cap, timings: timings, duration: duration, slo: config.slo)
            progress?.end(label: level.label, completed: report.completed, failed: report.failed)
            reports.append(report)
        }
        let (base, endpoint) = config.grpc.map { ("grpc://\($0.host):\($0.port)", "inference.GRPCInferenceService/ModelStreamInfer") }
            ?? (config.urls.base, config.endpoint.rawValue)
        return BenchResult(baseURL: base, endpoint: endpoint, model: model,
                           numPrompts: config.numPrompts, seed: config.seed, slo: config.slo, levels: reports)
    }

    /// Sends `count` requests in the shape of `level`; returns their timings and the level's wall time.
    func runLevel(_ level: LoadLevel, count: Int, bodies: [Data], sender: any RequestSending,
                  levelSeed: UInt64) async -> ([RequestTiming], Double) {
        let clock = ContinuousClock()
        let start = clock.now
        let stopIssuing = configuration.maxDuration.map { start + .milliseconds(Int64($0 * 1000)) }
        let progress = self.progress
        func issue(_ index: Int, into group: inout TaskGroup<RequestTiming>) {
            let body = bodies[index % bodies.count]
            let elapsed = clock.now - start
            let sentAt = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            group.addTask {
                var timing = await sender.send(body)
                timing.sentAt = sentAt
                progress?.requestFinished(failed: timing.failure != nil || RequestMetrics(timing) == nil)
                return timing
            }
        }
        let timings = await withTaskGroup(of: RequestTiming.self, returning: [RequestTiming].self) { group in
            var results: [RequestTiming] = []
            var inFlight = 0
            func timeLeft() -> Bool { stopIssuing.map { clock.now < $0 } ?? true }
            switch level {
            case .closed(let concurrency):
                var next = 0
                // The first request always goes: --max-duration stops issuing *new* requests, and a
                // loaded machine may deschedule this task past a short limit before it sends anything.
                while next < count, inFlight < max(1, concurrency), next == 0 || timeLeft() {
                    issue(next, into: &group)
                    next += 1
                    inFlight += 1
                }
                while let timing = await group.next() {
                    results.append(timing)
                    if next < count, timeLeft() {
                        issue(next, into: &group)
                        next += 1
                    }
                }
            case .open(let rate, let cap):
                for (index, offset) in PoissonSchedule.offsets(count: count, rate: rate, seed: levelSeed).enumerated() {
                    let sendAt = start + .microseconds(Int64(offset * 1_000_000))
                    if let stop = stopIssuing, sendAt >= stop { break }
                    try? await clock.sleep(until: sendAt)
                    if let cap {
                        while inFlight >= max(1, cap), let timing = await group.next() {
                            results.append(timing)
                            inFlight -= 1
                        }
                    }
                    issue(index, into: &group)
                    inFlight += 1
                }
                while let timing = await group.next() { results.append(timing) }
            }
            return results
        }
        let elapsed = clock.now - start
        return (timings, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
    }

    static func firstModel(client: HTTPClient, urls: ServerURLs, timeout: Double) async throws(BenchError) -> String {
        struct Models: Decodable {
            struct Model: Decodable { var id: String }
            var data: [Model]
        }
        do {
            let response = try await client.execute(HTTPClientRequest(url: urls.models), timeout: .seconds(Int64(max(1, min(timeout, 30)))))
            let body = try await response.body.collect(upTo: 8 << 20)
            guard response.status == .ok else {
                throw BenchError.modelListFailed(url: urls.models, reason: "HTTP \(response.status.code)")
            }
            let models = try JSONDecoder().decode(Models.self, from: Data(body.readableBytesView))
            guard let first = models.data.first else { throw BenchError.noModels(url: urls.models) }
            return first.id
        } catch let error as BenchError {
            throw error
        } catch is DecodingError {
            throw .modelListFailed(url: urls.models, reason: "the response is not an OpenAI model list")
        } catch {
            throw .modelListFailed(url: urls.models, reason: "\(error)")
        }
    }
}

/// Sends one streaming request and times it with vLLM's definitions.
struct RequestSender: Sendable {
    let client: HTTPClient
    let url: String
    let timeout: Double

    /// Bounds the whole request, streamed body included, by `timeout` (AsyncHTTPClient's deadline
    /// only covers the response head).
    func send(_ body: Data) async -> RequestTiming {
        let timeout = self.timeout
        return await withTaskGroup(of: RequestTiming?.self) { group in
            group.addTask { await self.sendRetryingStale(body) }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? RequestTiming(failure: .timeout)
        }
    }

    /// A pooled keep-alive connection that the server had already closed (the request never reached
    /// it: no response byte) is retried, up to three times since the pool may hold several such
    /// connections, as a browser or aiohttp would: a server's keep-alive policy is not a failure.
    private func sendRetryingStale(_ body: Data) async -> RequestTiming {
        var timing = await sendUnbounded(body)
        var retries = 0
        while case .connect? = timing.failure, timing.staleConnection, retries < 3 {
            retries += 1
            timing = await sendUnbounded(body)
        }
        return timing
    }

    private func sendUnbounded(_ body: Data) async -> RequestTiming {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: "text/event-stream")
        request.body = .bytes(ByteBuffer(bytes: body))
        var timing = RequestTiming()
        let clock = ContinuousClock()
        let start = clock.now  // vLLM: the clock starts just before the POST
        func elapsed() -> Double {
            let d = clock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        var phase = RequestPhase.connecting
        do {
            let response = try await client.execute(request, deadline: .now() + .nanoseconds(Int64(timeout * 1e9)))
            phase = .streaming
            guard response.status == .ok else {
                timing.failure = .httpStatus(Int(response.status.code))
                _ = try? await response.body.collect(upTo: 1 << 20)
                return timing
            }
            var recorder = StreamTimingRecorder()
            for try await buffer in response.body {
                recorder.feed(buffer.readableBytesView, at: elapsed())
                if recorder.failed { return recorder.timing }
                // After [DONE] the rest is read (not recorded) so that the connection is reused.
            }
            timing = recorder.finish(at: elapsed())
        } catch {
            timing.failure = ErrorClassifier.classify(error, phase: phase)
            timing.failureDetail = "\(phase == .connecting ? "before" : "after") the response head: \(String(describing: error))"
            if phase == .connecting, ErrorClassifier.isStaleConnection(error) { timing.staleConnection = true }
        }
        return timing
    }
}

/// Whether a request had a response yet when it failed.
public enum RequestPhase: Sendable {
    case connecting, streaming
}

public enum ErrorClassifier {
    /// A pooled keep-alive connection the server had closed: the write of the request found the channel
    /// closed (llama-server's HTTP library closes idle or used-up keep-alive connections), so the
    /// request never reached the server and sending it again is safe.
    public static func isStaleConnection(_ error: any Error) -> Bool {
        if case .remoteConnectionClosed? = error as? HTTPClientError { return true }
        if let error = error as? ChannelError {
            switch error {
            case .ioOnClosedChannel, .outputClosed, .alreadyClosed, .eof: return true
            default: return false
            }
        }
        return false
    }

    /// Maps a transport error to a report kind: timeouts by their AsyncHTTPClient code; other
    /// failures before the response head are connect errors, after it a closed connection.
    public static func classify(_ error: any Error, phase: RequestPhase) -> RequestFailure {
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout, .getConnectionFromPoolTimeout: return .timeout
            case .connectTimeout: return .connect
            case .remoteConnectionClosed: return phase == .connecting ? .connect : .connectionClosed
            case .cancelled: return .other
            default: break
            }
        }
        if error is CancellationError { return .other }
        return phase == .connecting ? .connect : .connectionClosed
    }
}
