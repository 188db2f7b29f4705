import Foundation
public import Hummingbird
public import Logging
import NIOCore
import Prometheus
public import Runtime
public import ServiceLifecycle
import UnixSignals

/// How the HTTP side runs: address, keys, timeouts.
public struct ServerOptions: Sendable {
    public var host: String
    public var port: Int
    public var apiKeys: [String]
    public var requestTimeoutSeconds: Double?
    public var drainSeconds: Double
    public var idleTimeoutSeconds: Double?
    public var metricsPath: String

    public init(host: String = "127.0.0.1", port: Int = 8080, apiKeys: [String] = [], requestTimeoutSeconds: Double? = 600,
                drainSeconds: Double = 30, idleTimeoutSeconds: Double? = 60, metricsPath: String = "/metrics") {
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
    /// The HTTP application for `models` (also used by the tests, on an ephemeral port).
    public static func application(
        models: [ServedModel], metrics: [String: ServerMetrics], registry: PrometheusCollectorRegistry,
        options: ServerOptions, logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let routes = ServerRoutes(registry: ModelRegistry(models), metrics: metrics, prometheus: registry,
                                  requestTimeout: options.requestTimeoutSeconds)
        let router = routes.router(metricsPath: options.metricsPath, apiKeys: options.apiKeys)
        return Application(
            router: router,
            server: .http1(configuration: .init(idleTimeout: options.idleTimeoutSeconds.map { .milliseconds(Int64($0 * 1000)) })),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "autoglm"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? options.port) },
            logger: logger)
    }

    /// Runs until a termination signal, then drains. Returns normally after a graceful shutdown.
    public static func run(
        models: [ServedModel], metrics: [String: ServerMetrics], registry: PrometheusCollectorRegistry,
        options: ServerOptions, logger: Logger, onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let app = application(models: models, metrics: metrics, registry: registry, options: options, logger: logger,
                              onServerRunning: onServerRunning)
        var configuration = ServiceGroupConfiguration(
            services: [
                // Shut down in reverse order: the schedulers drain first (in-flight requests finish),
                // then the HTTP server closes its listener and connections.
                .init(service: app),
                .init(service: SchedulerService(schedulers: models.map(\.scheduler))),
            ],
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

    public var description: String {
        switch self {
        case .portInUse(let host, let port):
            return "port \(port) on \(host) is already in use. Stop the other server (`autoglm doctor --port \(port)` names it) or pass --port."
        }
    }
}
