import Foundation
import HTTPTypes
public import Hummingbird
import Logging
import NIOCore
import Instrumentation
import NIOSSL
import Ops
import Prometheus
import Synchronization

/// The request context: Hummingbird's core storage plus a note the handler leaves for the
/// middleware (which model served the request, for the metrics' labels).
public struct ServerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let note = RequestNote()
    /// The client's address (rate limits without API keys); nil when unknown (tests).
    let remoteAddress: SocketAddress?
    /// The connection, for its TLS state (the client certificate of mTLS).
    private let channel: any Channel

    public init(source: Source) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }

    /// Whether the connection's TLS handshake received a client certificate (with server.tls.client_ca_file the
    /// handshake refuses one that CA did not sign, so one received is one verified). False on plain HTTP.
    func hasClientCertificate() async -> Bool {
        ((try? await channel.nioSSL_peerCertificate().get()) ?? nil) != nil
    }
}

final class RequestNote: Sendable {
    private let model = Mutex<String?>(nil)
    private let served = Mutex<ServedVersion?>(nil)
    func setModel(_ name: String) { model.withLock { $0 = name } }
    var modelName: String? { model.withLock { $0 } }

    /// The version that serves the request: named in the response and told its outcome.
    func serve(_ version: ModelVersion, by releases: ReleaseController) {
        served.withLock { $0 = ServedVersion(version: version, releases: releases) }
        setModel(version.model)
    }

    func clearServed() { served.withLock { $0 = nil } }

    /// The caller's trace headers and the request's trace context (RequestTracing).
    private let trace = Mutex<(incoming: (traceparent: String?, tracestate: String?), context: InstrumentationContext?)>(((nil, nil), nil))
    func setTrace(incoming: (traceparent: String?, tracestate: String?), context: InstrumentationContext?) {
        trace.withLock { $0 = (incoming, context) }
    }
    var traceIncoming: (traceparent: String?, tracestate: String?) { trace.withLock { $0.incoming } }
    var traceContext: InstrumentationContext? { trace.withLock { $0.context } }
    var servedVersion: ServedVersion? { served.withLock { $0 } }

    /// What the access middleware learned (for the audit log) and the request's token budget.
    private struct Access {
        var audited = false
        var decision: String?
        var principal: Principal?
        var tokenAccount: BudgetLimiter.Ticket?
        var usage: (prompt: Int, completion: Int)?
    }
    private let access = Mutex(Access())
    var audited: Bool {
        get { access.withLock { $0.audited } }
        set { access.withLock { $0.audited = newValue } }
    }
    var decision: String? {
        get { access.withLock { $0.decision } }
        set { access.withLock { $0.decision = newValue } }
    }
    var principal: Principal? {
        get { access.withLock { $0.principal } }
        set { access.withLock { $0.principal = newValue } }
    }
    var tokenAccount: BudgetLimiter.Ticket? {
        get { access.withLock { $0.tokenAccount } }
        set { access.withLock { $0.tokenAccount = newValue } }
    }
    var usage: (prompt: Int, completion: Int)? { access.withLock { $0.usage } }

    /// A request's size as soon as it is known: charged against the caller's tokens per minute.
    func chargeTokens(estimate: Int) { tokenAccount?.charge(estimate: estimate) }

    /// What the request used: corrects the token charge and goes into the audit log.
    func recordUsage(prompt: Int, completion: Int) {
        access.withLock { $0.usage = (prompt, completion) }
        tokenAccount?.settle(used: prompt + completion)
    }
}

/// Which version served a request (the X-AutoGLM-Version response header), and where its outcome goes.
struct ServedVersion: Sendable {
    static let header = HTTPField.Name("X-AutoGLM-Version")!
    let version: ModelVersion
    let releases: ReleaseController


    /// Names the version on the response and records its outcome: at once, or for a stream when it
    /// ends (failed when the stream breaks; its time is the time to its first token: the first event
    /// with generated text). An upstream version's failures are its attempts (UpstreamPool.observeAttempts,
    /// retries included), so only its times are recorded here.
    func finish(_ response: inout Response, started: ContinuousClock.Instant) {
        response.headers[Self.header] = version.id
        let timesOnly: Bool
        if case .upstream = version.target { timesOnly = true } else { timesOnly = false }
        let head = Self.seconds(ContinuousClock.now - started)
        let streamed = response.headers[.contentType]?.hasPrefix("text/event-stream") ?? false
        guard streamed, response.status == .ok else {
            if response.status.code < 400 || !timesOnly {
                record(response.status.code >= 500, seconds: response.status.code < 400 ? head : nil, streamed: streamed, timesOnly: timesOnly)
            }
            return
        }
        let inner = response.body
        let served = self
        response.body = ResponseBody(contentLength: inner.contentLength) { writer in
            let firstToken = FirstTokenClock(started: started)
            let observed: any ResponseBodyWriter = FirstTokenWriter(inner: writer, clock: firstToken)
            do {
                try await inner.write(observed)
            } catch is CancellationError {
                throw CancellationError()  // the client went away: not the version's fault
            } catch {
                if !timesOnly { served.record(true, seconds: nil, streamed: true, timesOnly: false) }
                throw error
            }
            served.record(false, seconds: firstToken.seconds, streamed: true, timesOnly: timesOnly)
        }
    }

    private func record(_ failed: Bool, seconds: Double?, streamed: Bool, timesOnly: Bool) {
        releases.record(model: version.model, version: version.id,
                        outcome: RequestOutcome(failed: failed, seconds: seconds, streamed: streamed, timesOnly: timesOnly))
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
}

/// Refuses a path that is not in canonical form (an empty segment as in `//admin/models`, a `.` or `..` segment, a
/// trailing `/`, a percent-encoded unreserved character) with 404, before any other middleware looks at it. The
/// router finds routes by non-empty segments, so `//admin/models` reached the admin handler while the access and
/// admission checks, which compare paths as written, took it for another route: every check must see the path the
/// router serves.
struct CanonicalPathMiddleware: RouterMiddleware {
    typealias Context = ServerContext

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard Self.isCanonical(path) else { throw APIError.notFound(path: String(path.prefix(200))) }
        // No route reads a query string: drop it, so that nothing after this (logs, traces) keeps what a client put
        // there (a key in `?api_key=...`).
        guard request.uri.query != nil else { return try await next(request, context) }
        var head = request.head
        head.path = path
        return try await next(Request(head: head, body: request.body), context)
    }

    static func isCanonical(_ path: String) -> Bool { PathSpelling.isCanonical(path) }
}

/// Accepts the client's `X-Request-Id` (or makes one), puts it in every log line of the request and
/// returns it on the response.
struct RequestIDMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    static let header = HTTPField.Name("X-Request-Id")!

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        var context = context
        let given = request.headers[Self.header].flatMap { id -> String? in
            // Echo only ids that are safe to log and return: printable ASCII, bounded.
            id.count <= 128 && id.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F } ? id : nil
        }
        let id = given ?? UUID().uuidString.lowercased()
        context.logger[metadataKey: "request_id"] = .string(id)
        do {
            var response = try await next(request, context)
            response.headers[Self.header] = id
            return response
        } catch let error as APIError {
            var response = error.response()
            response.headers[Self.header] = id
            return response
        }
    }
}

/// Turns every failure into OpenAI's error shape with the right status (never a bare 500 for bad
/// input), counts each response in `autoglm:http_requests_total`, and logs it.
struct APIErrorMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let registry: PrometheusCollectorRegistry?
    let logRequests: Bool
    /// auth.audit_log: one line per request on a protected route (and per admin action).
    var audit: AuditLog? = nil

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = error.response()
        } catch let error as HTTPError {
            response = Self.translate(error, path: request.uri.path).response()
        } catch let error as NIOTooManyBytesError {
            response = APIError(status: .contentTooLarge, message: "The request body is larger than \(error.maxBytes.map { "\($0) bytes" } ?? "the limit").",
                                type: "invalid_request_error", param: nil, code: "request_too_large").response()
        } catch let error as any HTTPResponseError where error.status.code < 500 {
            // Hummingbird's own refusals (a bad request it found first): OpenAI's shape, the same status.
            response = APIError(status: error.status, message: "\(error.status.reasonPhrase): \(error)", type: "invalid_request_error",
                                param: nil, code: nil).response()
        } catch is CancellationError {
            response = APIError(status: HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request"),
                                message: "The client closed the connection.", type: "cancelled", param: nil, code: nil).response()
        } catch {
            context.logger.error("unhandled error", metadata: ["error": .string(String(describing: error))])
            response = APIError.internalError("The server failed: \(error). This is a bug; please report it with the request id.").response()
        }
        let route = context.endpointPath ?? "unmatched"
        let served = context.note.servedVersion
        served?.finish(&response, started: start)
        if let registry {
            ServerMetrics.countRequest(registry: registry, route: route, status: response.status.code, model: context.note.modelName,
                                       version: served?.version.id)
        }
        if let audit, context.note.audited { Self.audit(audit, request: request, context: context, response: &response, started: start) }
        if logRequests {
            let elapsed = ContinuousClock.now - start
            let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            context.logger.info("request", metadata: [
                "method": .string(request.method.rawValue), "path": .string(request.uri.path), "status": .stringConvertible(response.status.code),
                "ms": .string(String(format: "%.1f", ms)), "model": .string(context.note.modelName ?? ""),
            ])
        }
        return response
    }

    /// Writes the request's audit line: now, or for a stream when its body ends (its usage is known then).
    static func audit(_ audit: AuditLog, request: Request, context: ServerContext, response: inout Response, started: ContinuousClock.Instant) {
        let note = context.note
        let route = context.endpointPath ?? request.uri.path
        let requestID: String? = if case .string(let id)? = context.logger[metadataKey: "request_id"] { id } else { nil }
        let method = request.method.rawValue
        let status = response.status.code
        @Sendable func write() {
            let decision = note.decision ?? (status == 429 ? "rate_limited" : status == 403 ? "forbidden" : "allow")
            audit.record(AuditEntry(
                requestID: requestID, principal: note.principal, method: method, route: route, model: note.modelName,
                action: route.hasPrefix("/admin") ? "\(method) \(route)" : nil, decision: decision, status: status,
                promptTokens: note.usage?.prompt, completionTokens: note.usage?.completion,
                ms: ServedVersion.seconds(ContinuousClock.now - started) * 1000))
        }
        guard response.headers[.contentType]?.hasPrefix("text/event-stream") ?? false else {
            write()
            return
        }
        response.whenBodyWritten(write)
    }

    static func translate(_ error: HTTPError, path: String) -> APIError {
        switch error.status {
        case .notFound: return .notFound(path: path)
        case .methodNotAllowed:
            return APIError(status: .methodNotAllowed, message: "Method not allowed on \(path).", type: "invalid_request_error", param: nil, code: nil)
        case .contentTooLarge:
            return APIError(status: .contentTooLarge, message: error.body ?? "The request body is too large.", type: "invalid_request_error", param: nil, code: "request_too_large")
        default:
            let type = error.status.code < 500 ? "invalid_request_error" : "server_error"
            return APIError(status: error.status, message: error.body ?? error.status.reasonPhrase, type: type, param: nil, code: nil)
        }
    }
}

/// server.api_keys and server.admin_api_keys as they are now: a reload replaces them without a restart.
/// An admin key works on the API too.
public final class LiveKeys: Sendable {
    private let keys: Mutex<(api: Set<String>, admin: Set<String>)>

    public init(apiKeys: [String], adminKeys: [String]) {
        keys = Mutex((Self.api(apiKeys, adminKeys), Set(adminKeys)))
    }

    private static func api(_ api: [String], _ admin: [String]) -> Set<String> { api.isEmpty ? [] : Set(api + admin) }

    /// Empty: the API is open (no server.api_keys).
    var apiKeys: Set<String> { keys.withLock { $0.api } }
    /// Empty: the admin routes are off.
    var adminKeys: Set<String> { keys.withLock { $0.admin } }

    public func update(apiKeys: [String], adminKeys: [String]) {
        keys.withLock { $0 = (Self.api(apiKeys, adminKeys), Set(adminKeys)) }
    }
}

/// When a stream's first generated text was written (the time to first token, as the client sees it).
final class FirstTokenClock: Sendable {
    let started: ContinuousClock.Instant
    private let at = Mutex<ContinuousClock.Instant?>(nil)
    init(started: ContinuousClock.Instant) { self.started = started }
    func mark() { at.withLock { if $0 == nil { $0 = .now } } }
    var seen: Bool { at.withLock { $0 != nil } }
    /// nil: no text was generated.
    var seconds: Double? { at.withLock { $0 }.map { ServedVersion.seconds($0 - started) } }
}

/// Passes a stream through, noting the first event that carries generated text (a non-empty
/// `"content"` or `"text"`; the opening role chunk and keep-alive comments do not count).
struct FirstTokenWriter: ResponseBodyWriter {
    var inner: any ResponseBodyWriter
    let clock: FirstTokenClock

    mutating func write(_ buffer: ByteBuffer) async throws {
        if !clock.seen, Self.carriesText(buffer) { clock.mark() }
        try await inner.write(buffer)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        try await inner.finish(trailingHeaders)
    }

    static let markers: [[UInt8]] = [Array(#""content":""#.utf8), Array(#""text":""#.utf8)]

    static func carriesText(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            for marker in markers where bytes.count > marker.count {
                var i = 0
                while i + marker.count < bytes.count {
                    if bytes[i] == marker[0], zip(marker.indices, marker).allSatisfy({ bytes[i + $0] == $1 }) {
                        if bytes[i + marker.count] != UInt8(ascii: "\"") { return true }
                        i += marker.count
                    } else {
                        i += 1
                    }
                }
            }
            return false
        }
    }
}

extension Response {
    /// Runs `action` once the body has been written, or its writing failed: what must live as long as the response
    /// (a concurrency slot, a budget ticket) or be recorded at its end (an audit line, with a stream's usage).
    mutating func whenBodyWritten(_ action: @escaping @Sendable () -> Void) {
        let inner = body
        body = ResponseBody(contentLength: inner.contentLength) { writer in
            defer { action() }
            try await inner.write(writer)
        }
    }
}
