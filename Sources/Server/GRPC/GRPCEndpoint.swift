import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtocols
import HTTPTypes
import Logging
import NIOCore
import Prometheus
import Serving
import ServiceLifecycle
import Synchronization

/// What the gRPC services share with the HTTP side: the same models and versions, the same request reading
/// (so a sampling field means and is checked the same on both), the same keys, budgets and admission limits.
struct GRPCEndpoint: Sendable {
    let registry: ModelRegistry
    let api: CompletionsAPI
    let access: AccessControl
    let live: LiveSettings
    let prometheus: PrometheusCollectorRegistry
    let started = Date()
    /// Generations in flight by the id their client gave (SGLang's Abort names it).
    let active = ActiveGenerations()

    /// The default model's engine (the SGLang protocol names no model: a worker serves one), leased until
    /// `body` returns.
    func withLocalModel<T: Sendable>(_ name: String?, version: String? = nil, _ body: (ServedModel, ModelVersion) async throws -> T) async throws -> T {
        let (slot, ticket) = try registry.resolve(name, override: version)
        defer { ticket.end() }
        GRPCCall.current?.usage.model(slot.name)
        let lease = try await registry.locals.acquire(slot)
        defer { lease.end() }
        return try await body(lease.model, ticket.version)
    }

    /// Queues a job read by the HTTP side's CompletionsAPI, charging the caller's tokens per minute like HTTP does
    /// (`budget`: the request's ticket; default: the call's).
    func submit(_ job: CompletionsAPI.Job, budget: BudgetLimiter.Ticket? = GRPCCall.current?.budget) throws(APIError) -> [CompletionsAPI.Choice] {
        budget?.charge(estimate: job.prompts.reduce(0) { $0 + $1.tokens.count + job.parameters.n * job.maxTokens })
        return try api.submit(job)
    }

    /// Corrects the caller's token charge to what the request used.
    func settle(prompt: Int, completion: Int, budget: BudgetLimiter.Ticket? = GRPCCall.current?.budget) {
        budget?.settle(used: prompt + completion)
        GRPCCall.current?.usage.add(prompt: prompt, completion: completion)
    }

    /// One generation admitted: a place under limits.max_concurrent_requests / requests_per_minute, and the caller's
    /// budget ticket. Both are released when the value goes.
    struct Admission: Sendable {
        let slot: AdmissionLimits.Slot
        let budget: BudgetLimiter.Ticket?
    }

    /// Admits one generation for `call`'s caller, as the HTTP side admits a request.
    func admit(_ call: GRPCCall) throws(APIError) -> Admission {
        let slot = try live.admission.admit(client: call.client)
        var budget: BudgetLimiter.Ticket?
        if let principal = call.principal {
            let b = access.effectiveBudgets(for: principal)
            if !b.isEmpty { budget = try access.budgets.admit(principal.id, b) }
        }
        return Admission(slot: slot, budget: budget)
    }
}

/// Generations in flight over gRPC by the client's request id, so that a separate Abort call can end them.
final class ActiveGenerations: Sendable {
    private struct Entry {
        let backend: any InferenceBackend
        let requestIDs: [String]
    }
    private let entries = Mutex<[String: [UInt64: Entry]]>([:])
    private let counter = Atomic<UInt64>(0)

    /// Registers the requests; the returned token removes them.
    func add(_ clientID: String, backend: any InferenceBackend, requestIDs: [String]) -> UInt64 {
        let token = counter.add(1, ordering: .relaxed).newValue
        entries.withLock { $0[clientID, default: [:]][token] = Entry(backend: backend, requestIDs: requestIDs) }
        return token
    }

    func remove(_ clientID: String, token: UInt64) {
        entries.withLock {
            $0[clientID]?[token] = nil
            if $0[clientID]?.isEmpty == true { $0[clientID] = nil }
        }
    }

    /// Cancels every request registered under `clientID`; false when none is.
    func abort(_ clientID: String) -> Bool {
        let found = entries.withLock { $0[clientID].map { Array($0.values) } ?? [] }
        for entry in found { for id in entry.requestIDs { entry.backend.cancel(id) } }
        return !found.isEmpty
    }
}

/// The caller of the RPC being served, set by GRPCAccessInterceptor for the handler and its response stream.
struct GRPCCall: Sendable {
    /// What the call used, for its audit line: the model and the tokens of its requests.
    final class Usage: Sendable {
        private let state = Mutex<(model: String?, prompt: Int, completion: Int, counted: Bool)>((nil, 0, 0, false))
        func model(_ name: String) { state.withLock { $0.model = name } }
        func add(prompt: Int, completion: Int) { state.withLock { $0 = ($0.model, $0.prompt + prompt, $0.completion + completion, true) } }
        var value: (model: String?, prompt: Int?, completion: Int?) {
            state.withLock { ($0.model, $0.counted ? $0.prompt : nil, $0.counted ? $0.completion : nil) }
        }
    }

    var principal: Principal?
    let usage = Usage()
    /// Who the admission limits count: the principal, else the bearer token, else the peer's address.
    var client = ""
    /// The call's admission (every generation method but ModelStreamInfer, which admits each request it carries).
    var admission: GRPCEndpoint.Admission?
    var budget: BudgetLimiter.Ticket? { admission?.budget }
    @TaskLocal static var current: GRPCCall?
}

extension RPCError {
    /// The HTTP side's error as a gRPC status: the same message, the code that says the same thing.
    init(_ error: APIError) {
        let code: RPCError.Code
        switch error.status.code {
        case 400, 422: code = .invalidArgument
        case 401: code = .unauthenticated
        case 403: code = .permissionDenied
        case 404: code = .notFound
        case 409: code = .failedPrecondition
        case 413, 429: code = .resourceExhausted
        case 499: code = .cancelled
        case 502, 503: code = .unavailable
        case 504: code = .deadlineExceeded
        default: code = .internalError
        }
        var metadata: Metadata = [:]
        if let retry = error.retryAfter { metadata.addString(String(retry), forKey: "retry-after") }
        if let param = error.param { metadata.addString(param, forKey: "autoglm-param") }
        self.init(code: code, message: error.message, metadata: metadata)
    }

    static func invalidArgument(_ message: String, field: String) -> RPCError {
        RPCError(code: .invalidArgument, message: message, metadata: ["autoglm-param": .string(field)])
    }
}

/// Which credentials an RPC needs.
enum GRPCAccessLevel {
    /// grpc.health.v1 and reflection: probes and tooling, like /health.
    case open
    /// Reading state (model info, loads, readiness, metadata): the viewer role.
    case viewer
    /// Generation: the user role, the caller's budgets and the server's admission limits.
    case generation

    static func of(_ method: MethodDescriptor) -> GRPCAccessLevel {
        let service = method.service.fullyQualifiedService
        if service.hasPrefix("grpc.health.") || service.hasPrefix("grpc.reflection.") { return .open }
        switch (service, method.method) {
        case ("sglang.grpc.scheduler.SglangScheduler", "Generate"), ("sglang.grpc.scheduler.SglangScheduler", "Abort"),
             ("inference.GRPCInferenceService", "ModelInfer"), ("inference.GRPCInferenceService", "ModelStreamInfer"):
            return .generation
        case ("inference.GRPCInferenceService", "ServerLive"), ("inference.GRPCInferenceService", "ServerReady"):
            // KServe's liveness and readiness probes, public like /live and /ready.
            return .open
        default:
            return .viewer
        }
    }
}

/// Authenticates every RPC as the HTTP side does (a bearer token in the `authorization` metadata: an API key, an
/// issued key or a JWT), checks its role, admits generations against the caller's budgets and the server's limits,
/// maps the HTTP side's errors to gRPC status codes, and counts each RPC by service, method and code.
struct GRPCAccessInterceptor: ServerInterceptor {
    let endpoint: GRPCEndpoint
    let metrics: GRPCMetrics

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: GRPCCore.ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, GRPCCore.ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let started = ContinuousClock.now
        let method = context.descriptor
        let level = GRPCAccessLevel.of(method)
        let metrics = self.metrics
        let audit = level == .open ? nil : endpoint.access.setup.audit
        var call = GRPCCall()
        /// Counts the call and writes its audit line (every call but health and reflection, when auth.audit_log is set).
        @Sendable func finish(_ call: GRPCCall, _ error: RPCError?, admitting: Bool = false) {
            metrics.record(method, code: error?.code, since: started)
            guard let audit else { return }
            let decision: String
            switch error?.code {
            case .unauthenticated?: decision = "unauthenticated"
            case .permissionDenied?: decision = "forbidden"
            case .resourceExhausted? where admitting: decision = "rate_limited"
            default: decision = "allow"
            }
            let used = call.usage.value
            audit.record(AuditEntry(
                requestID: nil, principal: call.principal, method: "GRPC", route: "/" + method.fullyQualifiedMethod, model: used.model,
                decision: decision, status: error.map { GRPCMetrics.httpStatus($0.code) } ?? 200,
                promptTokens: used.prompt, completionTokens: used.completion,
                ms: ServedVersion.seconds(ContinuousClock.now - started) * 1000))
        }
        do {
            try await admit(&call, request.metadata, level: level, method: method, peer: context.remotePeer)
        } catch {
            let rpcError = Self.rpcError(error)
            finish(call, rpcError, admitting: true)
            return StreamingServerResponse(error: rpcError)
        }
        let admitted = call
        var response: StreamingServerResponse<Output>
        do {
            response = try await GRPCCall.$current.withValue(admitted) {
                try await Principal.$current.withValue(admitted.principal) { try await next(request, context) }
            }
        } catch {
            let rpcError = Self.rpcError(error)
            finish(admitted, rpcError)
            return StreamingServerResponse(error: rpcError)
        }
        switch response.accepted {
        case .success(var contents):
            let producer = contents.producer
            contents.producer = { writer in
                // The admission slot and the budget ticket are held until the response stream ends.
                defer { withExtendedLifetime(admitted) {} }
                do {
                    let trailers = try await GRPCCall.$current.withValue(admitted) {
                        try await Principal.$current.withValue(admitted.principal) { try await producer(writer) }
                    }
                    finish(admitted, nil)
                    return trailers
                } catch {
                    let rpcError = Self.rpcError(error)
                    finish(admitted, rpcError)
                    throw rpcError
                }
            }
            response.accepted = .success(contents)
        case .failure(let error):
            finish(admitted, error)
        }
        return response
    }

    /// Fills in `call` as far as it gets (the principal stays known when a later check refuses), or throws.
    private func admit(_ call: inout GRPCCall, _ metadata: Metadata, level: GRPCAccessLevel, method: MethodDescriptor, peer: String) async throws {
        guard level != .open else { return }
        let access = endpoint.access
        if access.authEnabled {
            guard let token = Self.bearer(metadata) else {
                throw AccessControl.unauthenticated("No credentials.", code: "missing_api_key").grpcMessage
            }
            let principal: Principal
            do {
                principal = try await access.authenticate(token)
            } catch {
                throw error.grpcMessage
            }
            call.principal = principal
            let required: Role = level == .generation ? .user : .viewer
            guard principal.role >= required else {
                throw RPCError(code: .permissionDenied,
                               message: "The role '\(principal.role.rawValue)' cannot use this method; it needs '\(required.rawValue)'.")
            }
        }
        call.client = call.principal.map { "principal:" + $0.id } ?? Self.bearer(metadata).map { "key:" + $0 } ?? "ip:" + Self.host(peer)
        guard level == .generation, method.method != "ModelStreamInfer" else { return }
        call.admission = try endpoint.admit(call)
    }

    /// The bearer token of the `authorization` metadata, as HTTP's header.
    static func bearer(_ metadata: Metadata) -> String? {
        for value in metadata[stringValues: "authorization"] {
            guard value.lowercased().hasPrefix("bearer ") else { continue }
            let token = value.dropFirst(7).trimmingCharacters(in: .whitespaces)
            if !token.isEmpty { return token }
        }
        return nil
    }

    /// "ipv4:127.0.0.1:5000" -> "127.0.0.1".
    static func host(_ peer: String) -> String {
        var parts = peer.split(separator: ":")
        if parts.count > 2 { parts.removeFirst() }
        if parts.count > 1 { parts.removeLast() }
        return parts.joined(separator: ":")
    }

    static func rpcError(_ error: any Error) -> RPCError {
        switch error {
        case let e as RPCError: return e
        case let e as APIError: return RPCError(e)
        case is CancellationError: return RPCError(code: .cancelled, message: "The call was cancelled.")
        default: return RPCError(code: .internalError, message: "\(error)")
        }
    }
}

extension APIError {
    /// The message without HTTP's header advice (gRPC sends the token in the `authorization` metadata).
    var grpcMessage: RPCError {
        var e = RPCError(self)
        e.message = message.replacingOccurrences(of: "Send 'Authorization: Bearer <key>'", with: "Send the metadata 'authorization: Bearer <key>'")
        return e
    }
}

/// gRPC's own series: `autoglm_grpc_requests_total{service,method,code}` and the duration of each RPC
/// (to its last message). The engine's series (tokens, TTFT, queue) are shared with HTTP: one scheduler.
final class GRPCMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func record(_ method: MethodDescriptor, code: RPCError.Code?, since started: ContinuousClock.Instant) {
        let service = method.service.fullyQualifiedService
        let name = code.map { Self.name($0) } ?? "OK"
        registry.makeCounter(descriptor: ServerMetrics.descriptor("grpc_requests_total", "gRPC calls by service, method and status code."),
                             labels: [("service", service), ("method", method.method), ("code", name)]).increment()
        registry.makeDurationHistogram(
            descriptor: ServerMetrics.descriptor("grpc_request_duration_seconds", "gRPC calls from their start to their last message."),
            labels: [("service", service), ("method", method.method)],
            buckets: [.milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
                      .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300)]
        ).record(ContinuousClock.now - started)
    }

    /// The HTTP status that says the same (the audit log's `status`).
    static func httpStatus(_ code: RPCError.Code) -> Int {
        switch code {
        case .invalidArgument, .outOfRange: return 400
        case .unauthenticated: return 401
        case .permissionDenied: return 403
        case .notFound: return 404
        case .failedPrecondition, .aborted, .alreadyExists: return 409
        case .resourceExhausted: return 429
        case .cancelled: return 499
        case .unimplemented: return 501
        case .unavailable: return 503
        case .deadlineExceeded: return 504
        default: return 500
        }
    }

    /// The status code as gRPC's documentation spells it (NOT_FOUND).
    static func name(_ code: RPCError.Code) -> String {
        switch code {
        case .cancelled: return "CANCELLED"
        case .unknown: return "UNKNOWN"
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .deadlineExceeded: return "DEADLINE_EXCEEDED"
        case .notFound: return "NOT_FOUND"
        case .alreadyExists: return "ALREADY_EXISTS"
        case .permissionDenied: return "PERMISSION_DENIED"
        case .resourceExhausted: return "RESOURCE_EXHAUSTED"
        case .failedPrecondition: return "FAILED_PRECONDITION"
        case .aborted: return "ABORTED"
        case .outOfRange: return "OUT_OF_RANGE"
        case .unimplemented: return "UNIMPLEMENTED"
        case .internalError: return "INTERNAL"
        case .unavailable: return "UNAVAILABLE"
        case .dataLoss: return "DATA_LOSS"
        case .unauthenticated: return "UNAUTHENTICATED"
        default: return "UNKNOWN"
        }
    }
}

/// The gRPC server as a service of `serve`'s group: it listens on server.grpc.port, and on shutdown stops
/// taking calls and lets those in flight finish (the engines drain before it: see AutoGLMServer.run).
public struct GRPCService: Service {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let host: String
    let port: Int
    let onListening: @Sendable (Int) async -> Void

    public func run() async throws {
        do {
            try await withGracefulShutdownHandler {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await server.serve() }
                    if let address = try? await server.listeningAddress {
                        await onListening(address.ipv4?.port ?? address.ipv6?.port ?? port)
                    }
                }
            } onGracefulShutdown: {
                server.beginGracefulShutdown()
            }
        } catch {
            // A taken port surfaces as the transport's error around NIO's.
            if "\(error)".contains("Address already in use") || "\(error)".contains("EADDRINUSE") {
                throw ServerStartError.portInUse(host: host, port: port)
            }
            throw error
        }
    }
}
