import Engine
import Foundation
public import Hummingbird
import Logging
import NIOCore
public import Prometheus
import Runtime
import Tokenizer

/// The models this server answers for; the first is the default when a request names none.
public struct ModelRegistry: Sendable {
    public let models: [ServedModel]

    public init(_ models: [ServedModel]) {
        precondition(!models.isEmpty)
        self.models = models
    }

    func resolve(_ name: String?) throws(APIError) -> ServedModel {
        guard let name, !name.isEmpty else { return models[0] }
        if let m = models.first(where: { $0.name == name }) ?? models.first(where: { $0.name.lowercased() == name.lowercased() }) {
            return m
        }
        throw .modelNotFound(name, available: models.map(\.name))
    }
}

/// Builds the router: OpenAI routes, native /generate, tokenizer routes, health, readiness, metrics.
public struct ServerRoutes: Sendable {
    public let registry: ModelRegistry
    public let metrics: [String: ServerMetrics]
    public let prometheus: PrometheusCollectorRegistry
    public let requestTimeout: Double?
    public let maxBodyBytes: Int
    /// server.timeouts.first_token in seconds; nil: none.
    public var firstTokenTimeout: Double?
    /// limits.max_concurrent_requests (nil: none) and limits.requests_per_minute (0: none).
    public var maxConcurrentRequests: Int?
    public var requestsPerMinute = 0

    public init(registry: ModelRegistry, metrics: [String: ServerMetrics], prometheus: PrometheusCollectorRegistry,
                requestTimeout: Double?, maxBodyBytes: Int = 16 << 20) {
        self.registry = registry
        self.metrics = metrics
        self.prometheus = prometheus
        self.requestTimeout = requestTimeout
        self.maxBodyBytes = maxBodyBytes
    }

    /// `metricsPath` nil: no metrics endpoint (metrics.enabled = false).
    public func router(metricsPath: String? = "/metrics", apiKeys: [String] = []) -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: APIErrorMiddleware(metrics: metrics.values.first, logRequests: true))
        if !apiKeys.isEmpty {
            router.add(middleware: BearerAuthMiddleware(keys: Set(apiKeys), openPaths: Set(["/health", "/ready"] + (metricsPath.map { [$0] } ?? []))))
        }
        if maxConcurrentRequests != nil || requestsPerMinute > 0 {
            router.add(middleware: AdmissionMiddleware(
                limits: AdmissionLimits(maxConcurrent: maxConcurrentRequests, perMinute: requestsPerMinute),
                paths: ["/v1/chat/completions", "/v1/completions", "/generate"]))
        }

        router.get("/health") { _, _ in Self.json(.object([("status", .string("ok"))])) }
        router.get("/ready") { _, _ in
            let accepting = registry.models.allSatisfy { $0.scheduler.isAcceptingRequests }
            if accepting { return Self.json(.object([("status", .string("ready")), ("models", .array(registry.models.map { .string($0.name) }))])) }
            return APIError.unavailable("The server is shutting down.", retryAfter: 5).response()
        }
        if let metricsPath { router.get(RouterPath(metricsPath)) { _, _ in
            for model in registry.models { metrics[model.name]?.update(model.scheduler.currentStatistics) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: prometheus.emitToBuffer())))
        } }
        router.get("/v1/models") { _, _ in
            Self.json(.object([("object", .string("list")), ("data", .array(registry.models.map { m in
                .object([("id", .string(m.name)), ("object", .string("model")), ("created", .int(m.created)),
                         ("owned_by", .string("autoglm")), ("max_model_len", .int(m.contextLength))])
            }))]))
        }
        let api = CompletionsAPI(models: registry, metrics: metrics.values.first!, requestTimeout: requestTimeout,
                                 firstTokenTimeout: firstTokenTimeout)
        router.post("/v1/chat/completions") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes)
            return try await Self.run(api, try api.chatJob(body), context: context)
        }
        router.post("/v1/completions") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes)
            return try await Self.run(api, try api.completionJob(body), context: context)
        }
        router.post("/generate") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes)
            return try await Self.run(api, try api.completionJob(body, native: true), context: context)
        }
        router.post("/tokenize") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes)
            return Self.json(try Self.tokenize(body, registry: registry))
        }
        router.post("/detokenize") { request, context in
            let body = try await Self.body(request, context: context, limit: maxBodyBytes)
            return Self.json(try Self.detokenize(body, registry: registry))
        }
        return router
    }

    static func run(_ api: CompletionsAPI, _ job: CompletionsAPI.Job, context: ServerContext) async throws -> Response {
        context.note.setModel(job.model.name)
        let choices = try api.submit(job)
        if job.parameters.stream { return api.stream(job, choices: choices) }
        return try await withTaskCancellationHandler {
            json(try await api.complete(job, choices: choices))
        } onCancel: {
            for c in choices { job.model.scheduler.cancel(c.requestID) }
        }
    }

    static func json(_ value: JSON, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: value.text)))
    }

    static func body(_ request: Request, context: ServerContext, limit: Int) async throws -> JSON {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(status: .contentTooLarge, message: "The request body is larger than \(limit) bytes.",
                           type: "invalid_request_error", param: nil, code: "request_too_large")
        }
        return try JSON.parse(Array(buffer.readableBytesView))
    }

    static func tokenize(_ body: JSON, registry: ModelRegistry) throws(APIError) -> JSON {
        let r = try FieldReader(body)
        let model = try registry.resolve(try r.string("model"))
        let tokens: [Int]
        if let messages = r.value("messages") {
            guard case .array(let list) = messages else { throw .invalidRequest("'messages' must be a list.", param: "messages") }
            var values: [JinjaValue] = []
            for (i, m) in list.enumerated() { values.append(try CompletionsAPI.chatMessage(m, index: i)) }
            let text: String
            do {
                text = try model.formatter.render(messageValues: values, addGenerationPrompt: try r.bool("add_generation_prompt") ?? true)
            } catch {
                throw .invalidRequest("The chat template rejected these messages: \(error)", param: "messages")
            }
            tokens = model.formatter.tokens(forRendered: text)
        } else if let text = try Self.firstString(r, "prompt", "content") {
            tokens = model.tokenizer.encode(text, addSpecial: try r.bool("add_special_tokens") ?? true, parseSpecial: true)
        } else {
            throw .invalidRequest("Give 'prompt' (text) or 'messages' to tokenize.", param: "prompt")
        }
        var fields: [(String, JSON)] = [("tokens", .array(tokens.map { .int($0) })), ("count", .int(tokens.count)),
                                        ("max_model_len", .int(model.contextLength))]
        if try r.bool("return_token_strs") ?? false {
            fields.append(("token_strs", .array(tokens.map { .string(model.tokenizer.token(for: $0) ?? "") })))
        }
        return .object(fields)
    }

    static func firstString(_ r: FieldReader, _ keys: String...) throws(APIError) -> String? {
        for key in keys { if let s = try r.string(key) { return s } }
        return nil
    }

    static func detokenize(_ body: JSON, registry: ModelRegistry) throws(APIError) -> JSON {
        let r = try FieldReader(body)
        let model = try registry.resolve(try r.string("model"))
        guard case .array(let items)? = r.value("tokens") else {
            throw .invalidRequest("'tokens' is required: a list of token ids.", param: "tokens")
        }
        let size = model.scheduler.model.configuration.vocabularySize
        var ids: [Int] = []
        for item in items {
            guard case .number(let d) = item, d == d.rounded(), d >= 0, d < Double(size) else {
                throw .invalidRequest("'tokens' must hold integers in 0..<\(size).", param: "tokens")
            }
            ids.append(Int(d))
        }
        let text = model.tokenizer.decode(ids)
        return .object([("prompt", .string(text)), ("content", .string(text))])
    }
}
