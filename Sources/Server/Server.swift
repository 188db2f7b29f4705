import Foundation
public import Hummingbird
import HummingbirdCore
import HummingbirdTLS
public import Logging
import NIOCore
import NIOSSL
import Prometheus
import Serving
import ServiceLifecycle
import UnixSignals

/// How the HTTP side runs: address, keys, timeouts.
public struct ServerOptions: Sendable {
    public var host: String
    public var port: Int
    public var apiKeys: [String]
    public var requestTimeoutSeconds: Double?
    public var drainSeconds: Double
    public var idleTimeoutSeconds: Double?
    /// nil: no metrics endpoint.
    public var metricsPath: String?
    public var firstTokenTimeoutSeconds: Double?
    public var maxConcurrentRequests: Int?
    public var requestsPerMinute: Int
    /// HTTPS with this certificate and key; nil: plain HTTP.
    public var tls: ServerTLS?
    /// Bearer tokens for the /admin routes (server.admin_api_keys); empty: the admin routes are off.
    public var adminAPIKeys: [String] = []
    /// Images in chat messages.
    public var images = ImagePolicy()
    /// server.sse_heartbeat in seconds.
    public var heartbeatSeconds: Double = 10
    /// metrics.names: how /metrics names the series.
    public var metricNames = MetricNames.autoglm
    /// limits.max_body_bytes: the largest request body read; larger ones get 413 before they are read.
    public var maxBodyBytes = 16 << 20
    /// limits.max_messages and limits.max_string_length.
    public var inputShape = InputShape()
    /// The `auth` section, ready to use (AccessSetup.make).
    public var access = AccessSetup()
    /// server.grpc.port: the gRPC API's port on `host` (0: no gRPC API; in tests, -1: an ephemeral port).
    public var grpcPort = 0

    public init(host: String = "127.0.0.1", port: Int = 8080, apiKeys: [String] = [], requestTimeoutSeconds: Double? = 600,
                drainSeconds: Double = 30, idleTimeoutSeconds: Double? = 60, metricsPath: String? = "/metrics",
                firstTokenTimeoutSeconds: Double? = nil, maxConcurrentRequests: Int? = nil, requestsPerMinute: Int = 0) {
        self.firstTokenTimeoutSeconds = firstTokenTimeoutSeconds
        self.maxConcurrentRequests = maxConcurrentRequests
        self.requestsPerMinute = requestsPerMinute
        self.host = host
        self.port = port
        self.apiKeys = apiKeys
        self.requestTimeoutSeconds = requestTimeoutSeconds
        self.drainSeconds = drainSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.metricsPath = metricsPath
    }
}

/// `autoglm serve`: the schedulers and the HTTP application in one service group that shuts down
/// gracefully on SIGTERM/SIGINT: stop admitting, finish in-flight requests (bounded by the drain
/// time), close the listener, return.
public enum AutoGLMServer {
    /// The HTTP application for models already loaded (the tests use it, on an ephemeral port).
    public static func application(
        models: [ServedModel], upstreams: UpstreamGateway? = nil, modelOrder: [String]? = nil, metrics: [String: ServerMetrics],
        registry: PrometheusCollectorRegistry, options: ServerOptions, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws(ServerStartError) -> some ApplicationProtocol {
        try application(locals: LocalModelPool(loaded: models), upstreams: upstreams, modelOrder: modelOrder, metrics: metrics,
                        registry: registry, options: options, logger: logger, onServerRunning: onServerRunning)
    }

    /// The HTTP application for local models (loaded on demand) and upstream ones; `releases`: their
    /// versions (default: one each), `reloader`: SIGHUP's and POST /admin/reload's work, `live`: the
    /// settings it changes.
    public static func application(
        locals: LocalModelPool, upstreams: UpstreamGateway? = nil, modelOrder: [String]? = nil, metrics: [String: ServerMetrics],
        registry: PrometheusCollectorRegistry, options: ServerOptions, logger: Logger, releases: ReleaseController? = nil,
        reloader: Reloader? = nil, live: LiveSettings? = nil,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws(ServerStartError) -> some ApplicationProtocol {
        let routes = routes(locals: locals, upstreams: upstreams, modelOrder: modelOrder, metrics: metrics, registry: registry, options: options,
                            releases: releases, reloader: reloader, live: live)
        return try httpApplication(routes, options: options, logger: logger, onServerRunning: onServerRunning)
    }

    /// The HTTP application and, when options.grpcPort is set, the gRPC API beside it, over the same models, keys
    /// and limits (the tests use it, on ephemeral ports).
    public static func applications(
        models: [ServedModel], metrics: [String: ServerMetrics], registry: PrometheusCollectorRegistry, options: ServerOptions, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }, onGRPCListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) throws(ServerStartError) -> (http: some ApplicationProtocol, grpc: GRPCService?) {
        let routes = routes(locals: LocalModelPool(loaded: models), metrics: metrics, registry: registry, options: options)
        let http = try httpApplication(routes, options: options, logger: logger, onServerRunning: onServerRunning)
        let grpc = options.grpcPort != 0 ? try grpcService(routes, options: options, logger: logger, onListening: onGRPCListening) : nil
        return (http, grpc)
    }

    /// The routes' shared parts: the models and their versions, the live settings, one access control (so that
    /// budgets count HTTP and gRPC requests together).
    static func routes(locals: LocalModelPool, upstreams: UpstreamGateway? = nil, modelOrder: [String]? = nil, metrics: [String: ServerMetrics],
                       registry: PrometheusCollectorRegistry, options: ServerOptions, releases: ReleaseController? = nil,
                       reloader: Reloader? = nil, live: LiveSettings? = nil) -> ServerRoutes {
        var routes = ServerRoutes(registry: ModelRegistry(locals, upstreams: upstreams, order: modelOrder, releases: releases), metrics: metrics,
                                  prometheus: registry, requestTimeout: options.requestTimeoutSeconds, maxBodyBytes: options.maxBodyBytes)
        let live = live ?? LiveSettings(options: options)
        routes.live = live
        routes.reloader = reloader
        routes.adminAPIKeys = options.adminAPIKeys
        routes.firstTokenTimeout = options.firstTokenTimeoutSeconds
        routes.maxConcurrentRequests = options.maxConcurrentRequests
        routes.requestsPerMinute = options.requestsPerMinute
        routes.images = options.images
        routes.heartbeatSeconds = options.heartbeatSeconds
        routes.metricNames = options.metricNames
        routes.access = options.access
        routes.access.adminNeedsClientCertificate = options.tls?.clientCAFile != nil
        routes.inputShape = options.inputShape
        routes.accessControl = AccessControl(keys: live.keys, setup: routes.access, metricsPath: options.metricsPath)
        return routes
    }

    static func httpApplication(
        _ routes: ServerRoutes, options: ServerOptions, logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void
    ) throws(ServerStartError) -> some ApplicationProtocol {
        let router = routes.router(metricsPath: options.metricsPath, apiKeys: options.apiKeys)
        let bodyLimit = options.maxBodyBytes
        let bodyAudit = options.access.audit
        var server = HTTPServerBuilder.http1(configuration: .init(
            additionalChannelHandlers: [BodyGuardHandler(limit: bodyLimit, audit: bodyAudit)],
            idleTimeout: options.idleTimeoutSeconds.map { .milliseconds(Int64($0 * 1000)) }))
        if let tls = options.tls {
            do {
                server = try .tls(server, tlsConfiguration: tls.configuration)
            } catch {
                throw .tls(file: tls.certificateFile, reason: "\(error)")
            }
        }
        return Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "autoglm"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? options.port) },
            logger: logger)
    }

    /// Runs until a termination signal, then drains. Returns normally after a graceful shutdown.
    public static func run(
        locals: LocalModelPool, upstreams: UpstreamGateway? = nil, modelOrder: [String]? = nil, metrics: [String: ServerMetrics],
        registry: PrometheusCollectorRegistry, options: ServerOptions, logger: Logger, releases: ReleaseController? = nil,
        reloader: Reloader? = nil, live: LiveSettings? = nil, watchConfig: Bool = false, telemetry: (any Service)? = nil,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
        onGRPCListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let releases = releases ?? ReleaseController(locals: locals, upstreams: upstreams)
        let routes = routes(locals: locals, upstreams: upstreams, modelOrder: modelOrder, metrics: metrics, registry: registry, options: options,
                            releases: releases, reloader: reloader, live: live)
        let app = try httpApplication(routes, options: options, logger: logger, onServerRunning: onServerRunning)
        let grpc = options.grpcPort != 0 ? try grpcService(routes, options: options, logger: logger, onListening: onGRPCListening) : nil
        // Shut down in reverse order: the schedulers and the upstream relays drain first (in-flight
        // requests finish), then the HTTP server closes its listener and connections.
        // The span exporter goes first, so it stops last and sends the spans of the drained requests.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = telemetry.map { [.init(service: $0)] } ?? []
        services.append(.init(service: app))
        // After the engines drain (they stop first), the gRPC server stops taking calls; while they drain, a new
        // generation gets UNAVAILABLE, as HTTP's gets 503.
        if let grpc { services.append(.init(service: grpc)) }
        services.append(.init(service: SchedulerService(locals: locals)))
        if let upstreams { services.append(.init(service: UpstreamService(gateway: upstreams, logger: logger))) }
        services.append(.init(service: ReleaseService(releases: releases, reloader: reloader, watchConfig: watchConfig, logger: logger)))
        var configuration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        configuration.maximumGracefulShutdownDuration = .milliseconds(Int64(options.drainSeconds * 1000))
        configuration.maximumCancellationDuration = .seconds(5)
        do {
            try await ServiceGroup(configuration: configuration).run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw ServerStartError.portInUse(host: options.host, port: options.port)
        }
    }
}

/// Why the server could not start listening.
public enum ServerStartError: Error, CustomStringConvertible {
    case portInUse(host: String, port: Int)
    /// server.tls: a certificate or key file that cannot be used.
    case tls(file: String, reason: String)

    public var description: String {
        switch self {
        case .tls(let file, let reason):
            return "cannot use \(file) for HTTPS (server.tls): \(reason). Give a PEM certificate chain in server.tls.cert_file and its PEM private key in server.tls.key_file (`autoglm doctor` checks both)."
        case .portInUse(let host, let port):
            return "port \(port) on \(host) is already in use. Stop the other server (`autoglm doctor --port \(port)` names it) or pass --port."
        }
    }
}

/// HTTPS for `serve`: a PEM certificate chain and private key, read and checked when the options are
/// built (before the model loads), so a wrong path or a key that does not match fails at once.
public struct ServerTLS: Sendable {
    public let certificateFile: String
    public let keyFile: String
    /// server.tls.client_ca_file: clients may present a certificate, which must be signed by one of these CAs (the
    /// handshake fails otherwise); the /admin routes need one.
    public let clientCAFile: String?
    let configuration: TLSConfiguration

    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) throws(ServerStartError) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
        let chain = try Self.certificates(certificateFile, unreadable: "not a readable PEM certificate", empty: "the file holds no certificate")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw .tls(file: keyFile, reason: "not a readable PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        if let clientCAFile {
            let authorities = try Self.certificates(clientCAFile, unreadable: "not a readable PEM certificate bundle (server.tls.client_ca_file)",
                                                    empty: "the file holds no CA certificate (server.tls.client_ca_file)")
            // Optional at the handshake (inference clients need none), verified when presented; the admin routes
            // then require one.
            configuration.certificateVerification = .optionalVerification
            configuration.trustRoots = .certificates(authorities)
            configuration.sendCANameList = true
        }
        // Building a context checks that the key belongs to the certificate.
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw .tls(file: keyFile, reason: "the key does not match the certificate or is unusable (\(error))")
        }
        self.configuration = configuration
    }

    /// The certificates of a PEM file, or the start error naming the file and why.
    private static func certificates(_ file: String, unreadable: String, empty: String) throws(ServerStartError) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(file)
        } catch {
            throw .tls(file: file, reason: "\(unreadable) (\(error))")
        }
        guard !certificates.isEmpty else { throw .tls(file: file, reason: empty) }
        return certificates
    }
}
