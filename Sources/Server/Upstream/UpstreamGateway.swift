import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
public import Logging
import NIOCore
import NIOHTTP1
import OpenAIAPI
public import Prometheus
public import ServiceLifecycle
import Synchronization

/// The way to upstream engines: one HTTP client (pooled keep-alive connections), the pools of the
/// upstream models, and the in-flight count that a graceful shutdown waits for.
///
/// A request is forwarded as the client sent it (only `model` is renamed to the upstream's name),
/// so every OpenAI field the engine supports passes through. Failures before anything reached the
/// client (connection refused or reset, no response head in time, a 5xx) are retried on another
/// endpoint with exponential backoff and full jitter; a response that has started streaming is
/// never replayed. A 4xx is the client's fault: passed through unchanged, never counted against
/// the endpoint.
public final class UpstreamGateway: Sendable {
    private let poolList: Mutex<[UpstreamPool]>
    /// The pools now served (versions come and go with releases).
    public var pools: [UpstreamPool] { poolList.withLock { $0 } }
    let settings: UpstreamSettings
    let client: HTTPClient
    let registry: PrometheusCollectorRegistry
    private let inFlight = Atomic<Int>(0)
    private let draining = Atomic<Bool>(false)

    public init(models: [UpstreamModel], settings: UpstreamSettings = UpstreamSettings(), registry: PrometheusCollectorRegistry) {
        self.settings = settings
        poolList = Mutex(models.map { UpstreamPool(model: $0, settings: settings, registry: registry) })
        self.registry = registry
        var configuration = HTTPClient.Configuration(
            timeout: .init(connect: .milliseconds(Int64(settings.connectSeconds * 1000)),
                           read: .milliseconds(Int64(settings.readSeconds * 1000))),
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256))
        // A refused connection fails the attempt at once (the pool would otherwise retry it until the
        // connect timeout): the retry goes to another endpoint and the breaker counts it.
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.httpVersion = .http1Only
        configuration.decompression = .disabled
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// Runs a self-test against every endpoint of `model` with this gateway's client.
    public func selfTest(_ test: SelfTest, model: UpstreamModel) async throws(SelfTest.Failure) {
        try await test.run(on: model, client: client)
    }

    /// A pool for a new version of an upstream model (health-checked from now on).
    public func add(_ model: UpstreamModel) -> UpstreamPool {
        let pool = UpstreamPool(model: model, settings: settings, registry: registry)
        poolList.withLock { $0.append(pool) }
        return pool
    }

    /// Drops a pool that left service.
    public func remove(_ pool: UpstreamPool) {
        poolList.withLock { $0.removeAll { $0 === pool } }
    }

    public func pool(named name: String) -> UpstreamPool? {
        pools.first { $0.model.name == name } ?? pools.first { $0.model.name.lowercased() == name.lowercased() }
    }

    public var requestsInFlight: Int { inFlight.load(ordering: .relaxed) }
    public var isAcceptingRequests: Bool { !draining.load(ordering: .relaxed) }
    public func beginDraining() { draining.store(true, ordering: .relaxed) }

    public func shutdown() async { try? await client.shutdown() }

    /// Why a request could not be forwarded. Nothing reached the client, so a fallback may take it.
    struct Failure: Error {
        var error: APIError
    }

    /// Forwards one request to `path` under the pool's base URL (`root`: under the server's root,
    /// for /tokenize) and returns the client's response.
    func forward(_ pool: UpstreamPool, path: String, body: JSON, stream: Bool, root: Bool = false, affinity: String? = nil,
                 context: ServerContext) async throws(Failure) -> Response {
        guard isAcceptingRequests else {
            throw Failure(error: .unavailable("The server is shutting down and accepts no new requests. Retry against another replica.", retryAfter: 5))
        }
        var renamed: [(String, JSON)] = []
        if case .object(let pairs) = body { renamed = pairs.filter { $0.0 != "model" } }
        let payload = ByteBuffer(string: JSON.object([("model", .string(pool.model.upstreamName ?? pool.model.name))] + renamed).text)
        let requestID: String? = context.logger[metadataKey: "request_id"].map { "\($0)" }
        let traceHeaders = RequestTracing.headers(incoming: context.note.traceIncoming)
        let logger = context.logger
        inFlight.add(1, ordering: .relaxed)
        var handedOver = false
        defer { if !handedOver { inFlight.subtract(1, ordering: .relaxed) } }

        var tried = Set<Int>()
        var lastError: APIError?
        for attempt in 0 ... settings.retries {
            if attempt > 0 {
                let cap = min(settings.maxBackoffSeconds, settings.backoffSeconds * Double(1 << min(attempt - 1, 20)))
                try? await Task.sleep(for: .nanoseconds(Int64(Double.random(in: 0 ... cap) * 1e9)))
            }
            if Task.isCancelled { break }
            guard let index = pool.acquire(excluding: tried, affinity: affinity) else { break }
            tried.insert(index)
            let endpoint = pool.endpoints[index]
            var request = HTTPClientRequest(url: Self.url(endpoint.endpoint.baseURL, path: path, root: root))
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "Accept", value: stream ? "text/event-stream" : "application/json")
            if let key = endpoint.endpoint.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
            if let requestID { request.headers.add(name: "X-Request-Id", value: requestID) }
            for (name, value) in traceHeaders { request.headers.add(name: name, value: value) }
            request.body = .bytes(payload)
            let sent = UpstreamPool.now()
            let response: HTTPClientResponse
            do {
                response = try await client.execute(request, deadline: .now() + .nanoseconds(Int64(settings.firstByteSeconds * 1e9)))
            } catch {
                if Task.isCancelled || error is CancellationError {
                    pool.finish(index, .neutral)
                    pool.metrics.count(endpoint: endpoint.label, outcome: "cancelled")
                    break
                }
                let (outcome, apiError) = Self.transportError(error, endpoint: endpoint.label, settings: settings)
                pool.finish(index, .failure)
                pool.metrics.count(endpoint: endpoint.label, outcome: outcome)
                logger.warning("upstream attempt failed", metadata: [
                    "model": .string(pool.model.name), "endpoint": .string(endpoint.label), "attempt": .stringConvertible(attempt + 1),
                    "error": .string(apiError.message)])
                lastError = apiError
                continue
            }
            pool.metrics.firstByte(endpoint: endpoint.label, seconds: UpstreamPool.now() - sent)
            let status = Int(response.status.code)
            if status >= 500 {
                let detail = await Self.errorMessage(response)
                pool.finish(index, .failure)
                pool.metrics.count(endpoint: endpoint.label, outcome: "server_error")
                logger.warning("upstream attempt failed", metadata: [
                    "model": .string(pool.model.name), "endpoint": .string(endpoint.label), "attempt": .stringConvertible(attempt + 1),
                    "status": .stringConvertible(status)])
                lastError = APIError(status: .badGateway, message: "The upstream \(endpoint.label) answered \(status)\(detail.map { ": \($0)" } ?? "").",
                                     type: "upstream_error", param: nil, code: "upstream_\(status)")
                continue
            }
            let contentType = response.headers.first(name: "Content-Type") ?? "application/json"
            if status >= 400 || !stream || !contentType.lowercased().hasPrefix("text/event-stream") {
                // One-shot: read it whole, so a body that breaks can still be retried.
                let collected: ByteBuffer
                do {
                    collected = try await response.body.collect(upTo: 64 << 20)
                } catch {
                    pool.finish(index, status >= 400 ? .neutral : .failure)
                    pool.metrics.count(endpoint: endpoint.label, outcome: "stream_error")
                    lastError = APIError(status: .badGateway, message: "The upstream \(endpoint.label) broke off its response: \(Self.describe(error)).",
                                         type: "upstream_error", param: nil, code: "upstream_connection_error")
                    continue
                }
                pool.finish(index, status >= 400 ? .neutral : .success)
                pool.metrics.count(endpoint: endpoint.label, outcome: status >= 400 ? "client_error" : "success")
                var headers: HTTPFields = [.contentType: contentType]
                if let retry = response.headers.first(name: "Retry-After") { headers[.retryAfter] = retry }
                return Response(status: HTTPResponse.Status(code: status), headers: headers, body: ResponseBody(byteBuffer: collected))
            }
            pool.finish(index, .success)
            pool.metrics.count(endpoint: endpoint.label, outcome: "success")
            handedOver = true
            return relay(response, pool: pool, index: index, logger: logger)
        }
        if let lastError { throw Failure(error: lastError) }
        if Task.isCancelled { throw Failure(error: APIError(status: HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request"),
                                                            message: "The client closed the connection.", type: "cancelled", param: nil, code: nil)) }
        throw Failure(error: APIError(
            status: .serviceUnavailable,
            message: "No endpoint of '\(pool.model.name)' is available: \(pool.unavailableReasons). Retry after \(pool.retryAfterSeconds) s.",
            type: "server_unavailable", param: nil, code: "upstream_unavailable", retryAfter: pool.retryAfterSeconds))
    }

    /// Passes a started stream through chunk by chunk. A client that goes away ends the relay (the
    /// upstream request is cancelled with it); an upstream that breaks off ends the stream with an
    /// OpenAI error event, and counts against the endpoint.
    private func relay(_ response: HTTPClientResponse, pool: UpstreamPool, index: Int, logger: Logger) -> Response {
        var headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        let label = pool.endpoints[index].label
        let body = ResponseBody { [self] writer in
            defer { inFlight.subtract(1, ordering: .relaxed) }
            var iterator = response.body.makeAsyncIterator()
            while true {
                let chunk: ByteBuffer?
                do {
                    chunk = try await iterator.next()
                } catch {
                    pool.lateFailure(index)
                    pool.metrics.count(endpoint: label, outcome: "stream_error")
                    logger.warning("upstream stream broke off", metadata: [
                        "model": .string(pool.model.name), "endpoint": .string(label), "error": .string(Self.describe(error))])
                    let event = APIError(status: .badGateway, message: "The upstream \(label) broke off the stream: \(Self.describe(error)).",
                                         type: "upstream_error", param: nil, code: "upstream_stream_broken").body
                    try await writer.write(ByteBuffer(string: "data: \(OpenAIJSON.text(event))\n\n"))
                    break
                }
                guard let chunk else { break }
                // A failed write (the client went away) throws out of here; dropping the iterator
                // cancels the upstream request and closes its connection.
                try await writer.write(chunk)
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    static func url(_ base: String, path: String, root: Bool) -> String {
        guard root, let components = URLComponents(string: base) else { return base + path }
        var c = components
        var p = c.path
        if p.hasSuffix("/v1") { p.removeLast(3) }
        c.path = p
        return (c.string ?? base) + path
    }

    /// The message of an OpenAI-shaped (or any) error body, shortened.
    static func errorMessage(_ response: HTTPClientResponse) async -> String? {
        guard let buffer = try? await response.body.collect(upTo: 1 << 20) else { return nil }
        let bytes = Array(buffer.readableBytesView)
        if let json = try? JSON.parse(bytes), let error = json["error"] {
            if case .string(let s)? = error["message"] { return String(s.prefix(300)) }
            if case .string(let s) = error { return String(s.prefix(300)) }
        }
        let text = String(decoding: bytes.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? HTTPClientError { return "\(e)" }
        return String(describing: error)
    }

    /// A transport failure before the response head: its metric outcome and the client's error.
    static func transportError(_ error: any Error, endpoint: String, settings: UpstreamSettings) -> (String, APIError) {
        if let e = error as? HTTPClientError, e == .deadlineExceeded || e == .readTimeout {
            return ("timeout", APIError(status: .gatewayTimeout,
                                        message: "The upstream \(endpoint) sent no response head within \(Int(settings.firstByteSeconds)) s (upstream.first_byte_timeout).",
                                        type: "upstream_error", param: nil, code: "upstream_timeout"))
        }
        return ("connect_error", APIError(status: .badGateway, message: "Cannot reach the upstream \(endpoint): \(describe(error)).",
                                          type: "upstream_error", param: nil, code: "upstream_connection_error"))
    }
}

/// Runs the upstream side for the service group: health checks until shutdown, then a drain that
/// waits for the requests in flight (streams included), then closes the HTTP client.
public struct UpstreamService: Service {
    public let gateway: UpstreamGateway
    public let logger: Logger

    public init(gateway: UpstreamGateway, logger: Logger) {
        self.gateway = gateway
        self.logger = logger
    }

    public func run() async throws {
        let interval = gateway.settings.healthIntervalSeconds
        await cancelWhenGracefulShutdown {
            guard interval > 0 else {
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
                return
            }
            while !Task.isCancelled {
                for pool in gateway.pools { await pool.checkHealth(client: gateway.client, logger: logger) }
                try? await Task.sleep(for: .nanoseconds(Int64(interval * 1e9)))
            }
        }
        gateway.beginDraining()
        await withTaskCancellationHandler {
            while gateway.requestsInFlight > 0 && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(50)) }
        } onCancel: {}
        await gateway.shutdown()
    }
}
