import Foundation
public import Hummingbird
import Logging
import NIOCore
public import Prometheus
import InferenceCore
import OpenAIAPI
import Serving

/// The models this server answers for: local engines (loaded on demand) and upstream pools. The
/// first named in the configuration is the default when a request names none.
public struct ModelRegistry: Sendable {
    public let locals: LocalModelPool
    public let upstreams: UpstreamGateway?
    /// The versions of each served name and how traffic is split between them.
    public let releases: ReleaseController
    /// Every served name in configuration order.
    public let names: [String]

    public init(_ locals: LocalModelPool, upstreams: UpstreamGateway? = nil, order: [String]? = nil, releases: ReleaseController? = nil) {
        let releases = releases ?? ReleaseController(locals: locals, upstreams: upstreams)
        let all = releases.names
        precondition(!all.isEmpty, "a server needs at least one model")
        precondition(Set(all.map { $0.lowercased() }).count == all.count, "model names must be unique")
        self.locals = locals
        self.upstreams = upstreams
        self.releases = releases
        names = order.map { o in o.filter(all.contains) + all.filter { !o.contains($0) } } ?? all
    }

    public init(_ models: [ServedModel], upstreams: UpstreamGateway? = nil, order: [String]? = nil) {
        self.init(LocalModelPool(loaded: models), upstreams: upstreams, order: order)
    }

    /// Where a request for `name` goes.
    enum Route {
        case local(LocalModelSlot)
        case upstream(UpstreamPool)
    }

    static func route(_ version: ModelVersion) -> Route {
        switch version.target {
        case .local(let slot): return .local(slot)
        case .upstream(let pool): return .upstream(pool)
        }
    }

    /// The served name a request means (none: the first).
    func servedName(_ name: String?) throws(APIError) -> String {
        let wanted = (name?.isEmpty ?? true) ? names[0] : name!
        guard let canonical = releases.canonicalName(wanted) else { throw .modelNotFound(wanted, available: names) }
        return canonical
    }

    /// The stable version's engine or pool (admin routes).
    func route(_ name: String?) throws(APIError) -> Route {
        let served = try servedName(name)
        guard let v = releases.stable(served) else { throw .modelNotFound(served, available: names) }
        return Self.route(v)
    }

    /// The version a request goes to (the canary's share, sticky by `key`; `override`: the
    /// X-AutoGLM-Version header), held until the ticket ends.
    func pick(_ name: String?, key: String?, override: String?) throws(APIError) -> (Route, ReleaseController.Ticket) {
        let served = try servedName(name)
        if let caller = Principal.current, !caller.allows(model: served) {
            throw APIError(status: .forbidden, message: "This key may not use the model '\(served)' (it may use: \(caller.models.joined(separator: ", "))).",
                           type: "permission_error", param: "model", code: "model_not_allowed")
        }
        let ticket = try releases.pick(served, key: key, override: override)
        return (Self.route(ticket.version), ticket)
    }

    /// A local model by name (tokenizer routes and the native /generate).
    func resolve(_ name: String?, override: String? = nil) throws(APIError) -> (LocalModelSlot, ReleaseController.Ticket) {
        let (route, ticket) = try pick(name, key: nil, override: override)
        switch route {
        case .local(let m): return (m, ticket)
        case .upstream(let pool):
            ticket.end()
            let localNames = names.filter { if case .local? = releases.stable($0)?.target { return true } else { return false } }
            throw .invalidRequest("'\(pool.model.name)' is served by an upstream engine; this route serves the local models (\(localNames.joined(separator: ", "))). Use /v1/chat/completions or /v1/completions.", param: "model")
        }
    }

    /// Whether the server can take requests: every pinned local model loaded and admitting, each
    /// upstream model with an available endpoint.
    var isReady: Bool {
        locals.isAcceptingRequests && locals.pinnedReady
            && (upstreams.map { g in g.isAcceptingRequests && g.pools.allSatisfy(\.hasAvailableEndpoint) } ?? true)
    }
}

/// Builds the router: OpenAI routes, native /generate, tokenizer routes, health, readiness, metrics.
public struct ServerRoutes: Sendable {
    public let registry: ModelRegistry
    public let metrics: [String: ServerMetrics]
    public let prometheus: PrometheusCollectorRegistry
    public let requestTimeout: Double?
    public let maxBodyBytes: Int
    /// limits.max_messages and limits.max_string_length.
    public var inputShape = InputShape()
    /// server.timeouts.first_token in seconds; nil: none.
    public var firstTokenTimeout: Double?
    /// limits.max_concurrent_requests (nil: none) and limits.requests_per_minute (0: none).
    public var maxConcurrentRequests: Int?
    public var requestsPerMinute = 0
    /// server.admin_api_keys: the only keys the /admin routes take; empty: those routes are off.
    public var adminAPIKeys: [String] = []
    /// Images in chat messages (limits.max_images_per_request, images.*).
    public var images = ImagePolicy()
    /// server.sse_heartbeat: a stream silent this long (a long prefill, images being encoded) gets an SSE comment.
    public var heartbeatSeconds: Double = 10
    /// How /metrics names the series.
    public var metricNames = MetricNames.autoglm
    /// Key file, JWT issuers, public paths, role budgets and the audit log (the `auth` section).
    public var access = AccessSetup()
    /// The engine loops' progress, for /live.
    public var liveness = EngineLiveness()
    /// What a reload changes without a restart (keys, admission limits); nil: made from the fields above.
    public var live: LiveSettings?
    /// SIGHUP's and POST /admin/reload's work; nil: reloads are off (no configuration file).
    public var reloader: Reloader?
    /// Who may call what, shared with the gRPC API; nil: made from `access` and the keys.
    var accessControl: AccessControl?

    public init(registry: ModelRegistry, metrics: [String: ServerMetrics], prometheus: PrometheusCollectorRegistry,
                requestTimeout: Double?, maxBodyBytes: Int = 16 << 20) {
        self.registry = registry
        self.metrics = metrics
        self.prometheus = prometheus
        self.requestTimeout = requestTimeout
        self.maxBodyBytes = maxBodyBytes
    }

    /// Reads and runs generation requests (shared by the HTTP routes and the gRPC services).
    var completionsAPI: CompletionsAPI {
        var api = CompletionsAPI(models: registry, requestTimeout: requestTimeout, firstTokenTimeout: firstTokenTimeout)
        api.images = images
        api.heartbeatSeconds = heartbeatSeconds
        return api
    }

    /// `metricsPath` nil: no metrics endpoint (metrics.enabled = false).
    public func router(metricsPath: String? = "/metrics", apiKeys: [String] = []) -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: APIErrorMiddleware(registry: prometheus, logRequests: true, audit: access.audit))
        router.add(middleware: CanonicalPathMiddleware())
        router.add(middleware: TracingMiddleware(recordingHeaders: [.init("x-request-id")!]))
        router.add(middleware: TraceNoteMiddleware())
        let live = self.live ?? LiveSettings(apiKeys: apiKeys, adminKeys: adminAPIKeys, maxConcurrent: maxConcurrentRequests,
                                             perMinute: requestsPerMinute)
        // Added even when off now: a reload may turn configured keys on.
        let generation: Set<String> = ["/v1/chat/completions", "/v1/completions", "/generate"]
        router.add(middleware: AccessMiddleware(access: accessControl ?? AccessControl(keys: live.keys, setup: access, metricsPath: metricsPath),
                                                budgetedPaths: generation))
        router.add(middleware: AdmissionMiddleware(limits: live.admission, paths: ["/v1/chat/completions", "/v1/completions", "/generate"]))

        router.get("/health") { _, _ in Self.json(.object([("status", .string("ok"))])) }
        // Liveness: the HTTP server answers and no engine loop with work pending has gone without completing a step
        // for liveness.stallSeconds (a Kubernetes livenessProbe; /ready is for readiness, /health for the process).
        let liveness = self.liveness
        router.get("/live") { _, _ in
            let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
            var stalled: [(String, Double)] = []
            for model in registry.locals.loaded {
                let s = model.backend.statistics
                if let seconds = liveness.observe(model: model.name, steps: s.steps, pendingWork: s.running + s.waiting > 0, now: now) {
                    stalled.append((model.name, seconds))
                }
            }
            if stalled.isEmpty { return Self.json(.object([("status", .string("live"))])) }
            let which = stalled.map { "\($0.0) (no engine step for \(Int($0.1)) s with requests pending)" }.joined(separator: ", ")
            return APIError(status: .serviceUnavailable, message: "Engine loop stalled: \(which).", type: "server_unavailable",
                            param: nil, code: "engine_stalled", retryAfter: nil).response()
        }
        router.get("/ready") { _, _ in
            if registry.isReady { return Self.json(.object([("status", .string("ready")), ("models", .array(registry.names.map { .string($0) }))])) }
            let draining = !registry.locals.isAcceptingRequests || !(registry.upstreams?.isAcceptingRequests ?? true)
            if draining { return APIError.unavailable("The server is shutting down.", retryAfter: 5).response() }
            let down = registry.upstreams?.pools.filter { !$0.hasAvailableEndpoint }.map { "\($0.model.name): \($0.unavailableReasons)" } ?? []
            if !down.isEmpty {
                return APIError.unavailable("Not ready: no endpoint available for \(down.joined(separator: "; ")).", retryAfter: 5).response()
            }
            return APIError.unavailable("Not ready: a pinned model is still loading.", retryAfter: 5).response()
        }
        if let metricsPath { router.get(RouterPath(metricsPath)) { _, _ in
            for model in registry.locals.loaded { metrics[model.name]?.update(model.backend.statistics) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: metricNames.exposition(prometheus.emitToBuffer()))))
        } }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: PackageResources.openapi_json)))
        }
        let started = Int(Date().timeIntervalSince1970)
        router.get("/v1/models") { _, _ in
            // A caller limited to some models sees those.
            Self.json(ModelList(data: registry.names.filter { Principal.current?.allows(model: $0) ?? true }.map { name in
                switch registry.releases.stable(name)?.target {
                case .local(let slot)?:
                    return ModelList.Model(id: name, created: slot.created, ownedBy: "autoglm", maxModelLen: slot.spec.contextLength)
                case .upstream(let pool)?:
                    return ModelList.Model(id: name, created: started, ownedBy: "upstream", maxModelLen: pool.model.contextLength)
                case nil:
                    return ModelList.Model(id: name, created: started, ownedBy: "autoglm", maxModelLen: nil)
                }
            }))
        }
        let api = completionsAPI
        router.post("/v1/chat/completions") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes, shape: inputShape)
            // Remote images (only from images.allowed_domains) are downloaded before the request is read.
            let remote = ImageInputs.remoteURLs(in: body, policy: api.images)
            let fetched = remote.isEmpty ? [:] : try await ImageInputs.fetch(remote, policy: api.images)
            return try await Self.dispatch(body, path: "/chat/completions", registry: registry, affinity: Self.affinity(request),
                                           override: Self.versionOverride(request), context: context) { body, model throws(APIError) in
                try api.chatJob(body, model: model, fetched: fetched)
            } local: { job in try await Self.run(api, job, context: context) }
        }
        router.post("/v1/completions") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes, shape: inputShape)
            return try await Self.dispatch(body, path: "/completions", registry: registry, affinity: Self.affinity(request),
                                           override: Self.versionOverride(request), context: context) { body, model throws(APIError) in
                try api.completionJob(body, model: model)
            } local: { job in try await Self.run(api, job, context: context) }
        }
        router.post("/generate") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes, shape: inputShape)
            let (slot, ticket) = try registry.resolve(try FieldReader(body).string("model"), override: Self.versionOverride(request))
            defer { ticket.end() }
            context.note.serve(ticket.version, by: registry.releases)
            let lease = try await registry.locals.acquire(slot)
            defer { lease.end() }
            return try await Self.run(api, try api.completionJob(body, model: lease.model, native: true), context: context)
        }
        addAdminRoutes(to: router, keys: live.keys)
        router.post("/tokenize") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes, shape: inputShape)
            if case .upstream = try registry.route(try FieldReader(body).string("model")), let gateway = registry.upstreams {
                // The version that counts the request is the one that serves it (a canary's pool, or the header's pick).
                let (route, ticket) = try registry.pick(try FieldReader(body).string("model"), key: nil, override: Self.versionOverride(request))
                defer { ticket.end() }
                guard case .upstream(let pool) = route else {
                    throw APIError.invalidRequest("This version of the model is served locally; ask /tokenize without X-AutoGLM-Version.", param: "model")
                }
                // vLLM and llama-server serve /tokenize at their root, beside /v1.
                context.note.setModel(pool.model.name)
                do throws(UpstreamGateway.Failure) {
                    return try await gateway.forward(pool, path: "/tokenize", body: body, stream: false, root: true, context: context)
                } catch {
                    throw error.error
                }
            }
            let (slot, ticket) = try registry.resolve(try FieldReader(body).string("model"), override: Self.versionOverride(request))
            defer { ticket.end() }
            let lease = try await registry.locals.acquire(slot)
            defer { lease.end() }
            return Self.json(try Self.tokenize(body, model: lease.model))
        }
        router.post("/detokenize") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes, shape: inputShape)
            let (slot, ticket) = try registry.resolve(try FieldReader(body).string("model"), override: Self.versionOverride(request))
            defer { ticket.end() }
            let lease = try await registry.locals.acquire(slot)
            defer { lease.end() }
            return Self.json(try Self.detokenize(body, model: lease.model))
        }
        return router
    }

    /// `GET /admin/models`, `POST /admin/models/{name}/load` and `/unload`, for `server.admin_api_keys` only.
    func addAdminRoutes(to router: Router<ServerContext>, keys: LiveKeys) {
        let registry = registry
        let admin = router.group("admin")
        addRolloutRoutes(to: admin)
        addKeyRoutes(to: admin)
        admin.get("models") { _, _ in
            Self.json(AdminModels(data: registry.locals.status().map(AdminModels.Model.init)
                + (registry.upstreams?.pools.map { pool in
                    AdminModels.Model(name: pool.model.name, kind: "upstream", state: pool.hasAvailableEndpoint ? "available" : "unavailable")
                } ?? [])))
        }
        admin.post("models/{name}/load") { _, context in
            let slot = try Self.adminSlot(context, registry: registry)
            try await registry.locals.load(slot)
            context.logger.notice("model loaded by an admin", metadata: ["model": .string(slot.name)])
            return Self.json(AdminModels(data: registry.locals.status(of: slot).map(AdminModels.Model.init)))
        }
        admin.post("models/{name}/unload") { _, context in
            let slot = try Self.adminSlot(context, registry: registry)
            try registry.locals.unload(slot)
            context.logger.notice("model unloaded by an admin", metadata: ["model": .string(slot.name)])
            return Self.json(AdminModels(data: registry.locals.status(of: slot).map(AdminModels.Model.init)))
        }
    }

    static func adminSlot(_ context: ServerContext, registry: ModelRegistry) throws(APIError) -> LocalModelSlot {
        let name = context.parameters.get("name") ?? ""
        switch try registry.route(name) {
        case .local(let slot): return slot
        case .upstream:
            throw .invalidRequest("'\(name)' is served by an upstream engine; only local models are loaded and unloaded.", param: "name")
        }
    }

    /// The key consistent-hash balancing keeps on one endpoint: the X-Session-Id header, else the bearer
    /// API key (the body's `user`, when present, is preferred in `dispatch`).
    /// The X-AutoGLM-Version header: a request that names the version to serve it (testing a canary).
    static func versionOverride(_ request: Request) -> String? {
        request.headers[ServedVersion.header].flatMap { $0.isEmpty ? nil : $0 }
    }

    static func affinity(_ request: Request) -> String? {
        if let session = request.headers[.init("X-Session-Id")!], !session.isEmpty { return "session:" + session }
        if let auth = request.headers[.authorization], auth.lowercased().hasPrefix("bearer ") { return "key:" + auth.dropFirst(7) }
        return nil
    }

    /// Sends a generation request to its model: the local engine, or the upstream pool (and, when no
    /// endpoint of that pool can take it, to its configured fallback model).
    static func dispatch(_ body: JSON, path: String, registry: ModelRegistry, affinity: String? = nil, override: String? = nil,
                         context: ServerContext,
                         job: (JSON, ServedModel) throws(APIError) -> CompletionsAPI.Job,
                         local: (CompletionsAPI.Job) async throws -> Response) async throws -> Response {
        var body = body
        var visited: [String] = []
        while true {
            let reader = try FieldReader(body)
            let user = try reader.string("user").map { "user:" + $0 }
            // The canary's share is sticky by the request's user, else its API key.
            let (route, ticket) = try registry.pick(try reader.string("model"), key: user ?? affinity.flatMap { $0.hasPrefix("key:") ? $0 : nil },
                                                    override: visited.isEmpty ? override : nil)
            defer { ticket.end() }
            context.note.serve(ticket.version, by: registry.releases)
            switch route {
            case .local(let slot):
                let lease = try await registry.locals.acquire(slot)
                defer { lease.end() }
                return try await local(try job(body, lease.model))
            case .upstream(let pool):
                guard let gateway = registry.upstreams else { throw APIError.internalError("no upstream gateway") }
                context.note.setModel(pool.model.name)
                if visited.isEmpty {
                    // An upstream's usage is not read back: its charge is an estimate (a token per 4 bytes, plus max_tokens).
                    let maxTokens = try reader.integer("max_completion_tokens", in: 0 ... Int.max) ?? reader.integer("max_tokens", in: 0 ... Int.max) ?? 256
                    context.note.chargeTokens(estimate: body.text.utf8.count / 4 + maxTokens)
                }
                visited.append(pool.model.name)
                let stream = try reader.bool("stream") ?? false
                let key = affinity?.hasPrefix("session:") == true ? affinity : user ?? affinity
                do throws(UpstreamGateway.Failure) {
                    return try await gateway.forward(pool, path: path, body: body, stream: stream, affinity: key, context: context)
                } catch {
                    guard let fallback = pool.model.fallback, !visited.contains(fallback), visited.count < 4 else { throw error.error }
                    // The failed attempts already count against the version; the fallback names its own.
                    context.note.clearServed()
                    context.logger.warning("upstream unavailable; using the fallback model", metadata: [
                        "model": .string(pool.model.name), "fallback": .string(fallback), "error": .string(error.error.message)])
                    guard case .object(let pairs) = body else { throw error.error }
                    body = .object(pairs.map { $0.0 == "model" ? ("model", .string(fallback)) : $0 }
                                   + (pairs.contains { $0.0 == "model" } ? [] : [("model", .string(fallback))]))
                }
            }
        }
    }

    static func run(_ api: CompletionsAPI, _ job: CompletionsAPI.Job, context: ServerContext) async throws -> Response {
        var noted = job
        noted.note = context.note
        let job = noted
        context.note.setModel(job.model.name)
        // The caller's tokens per minute: the most this request can use now, its real usage when it ends.
        context.note.chargeTokens(estimate: job.prompts.reduce(0) { $0 + $1.tokens.count + job.parameters.n * job.maxTokens })
        let choices = try api.submit(job)
        if job.parameters.stream { return api.stream(job, choices: choices) }
        return try await withTaskCancellationHandler {
            json(try await api.complete(job, choices: choices))
        } onCancel: {
            for c in choices { job.model.backend.cancel(c.requestID) }
        }
    }

    static func json(_ value: JSON, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: value.text)))
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAIJSON.text(value))))
    }

    static func body(_ request: Request, context: ServerContext, limit: Int, emptyIsObject: Bool = false,
                     shape: InputShape? = nil) async throws -> JSON {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError.bodyTooLarge(limit: limit, configurable: limit > 1 << 16)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: limit, configurable: limit > 1 << 16)
        }
        if emptyIsObject && buffer.readableBytes == 0 { return .object([]) }
        let body = try JSON.parse(Array(buffer.readableBytesView))
        try shape?.check(body)
        return body
    }

    static func tokenize(_ body: JSON, model: ServedModel) throws(APIError) -> JSON {
        let r = try FieldReader(body)
        let tokens: [Int]
        if let messages = r.value("messages") {
            guard case .array(let list) = messages else { throw .invalidRequest("'messages' must be a list.", param: "messages") }
            var values: [JinjaValue] = []
            for (i, m) in list.enumerated() { values.append(try CompletionsAPI.chatMessage(m, index: i)) }
            let text: String
            do {
                text = try model.backend.renderChat(values, extra: [:], addGenerationPrompt: try r.bool("add_generation_prompt") ?? true)
            } catch {
                throw .invalidRequest("The chat template rejected these messages: \(error)", param: "messages")
            }
            tokens = model.backend.tokens(forRenderedChat: text)
        } else if let text = try Self.firstString(r, "prompt", "content") {
            tokens = model.backend.encode(text, addSpecial: try r.bool("add_special_tokens") ?? true)
        } else {
            throw .invalidRequest("Give 'prompt' (text) or 'messages' to tokenize.", param: "prompt")
        }
        var fields: [(String, JSON)] = [("tokens", .array(tokens.map { .int($0) })), ("count", .int(tokens.count)),
                                        ("max_model_len", .int(model.contextLength))]
        if try r.bool("return_token_strs") ?? false {
            fields.append(("token_strs", .array(tokens.map { .string(model.backend.piece(of: $0) ?? "") })))
        }
        return .object(fields)
    }

    static func firstString(_ r: FieldReader, _ keys: String...) throws(APIError) -> String? {
        for key in keys { if let s = try r.string(key) { return s } }
        return nil
    }

    static func detokenize(_ body: JSON, model: ServedModel) throws(APIError) -> JSON {
        let r = try FieldReader(body)
        guard case .array(let items)? = r.value("tokens") else {
            throw .invalidRequest("'tokens' is required: a list of token ids.", param: "tokens")
        }
        let size = model.backend.vocabularySize
        var ids: [Int] = []
        for item in items {
            guard case .number(let d) = item, d == d.rounded(), d >= 0, d < Double(size) else {
                throw .invalidRequest("'tokens' must hold integers in 0..<\(size).", param: "tokens")
            }
            ids.append(Int(d))
        }
        let text = model.backend.decode(ids)
        return .object([("prompt", .string(text)), ("content", .string(text))])
    }
}

/// The body of the /admin/models routes.
struct AdminModels: Encodable, Sendable {
    struct Model: Encodable, Sendable {
        var name: String
        var kind: String
        var state: String
        var pinned = false
        var estimatedBytes: Int?
        var running = 0
        var waiting = 0
        var idleSeconds: Double?
        var loads = 0
        var lastError: String?

        init(name: String, kind: String, state: String) {
            self.name = name
            self.kind = kind
            self.state = state
        }

        init(_ s: LocalModelPool.Status) {
            name = s.name
            kind = "local"
            state = s.state
            pinned = s.pinned
            estimatedBytes = s.estimatedBytes
            running = s.running
            waiting = s.waiting
            idleSeconds = (s.idleSeconds * 10).rounded() / 10
            loads = s.loads
            lastError = s.lastError
        }

        enum CodingKeys: String, CodingKey {
            case name, kind, state, pinned, estimatedBytes = "estimated_bytes", running, waiting, idleSeconds = "idle_seconds", loads
            case lastError = "last_error"
        }
    }

    var object = "list"
    var data: [Model]
}
