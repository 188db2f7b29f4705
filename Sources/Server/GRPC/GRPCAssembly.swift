import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtocols
import Logging

extension AutoGLMServer {
    /// The gRPC API over the HTTP side's routes (the same models, request reading, keys, budgets and limits) on
    /// options.grpcPort (-1: an ephemeral port), with HTTPS's certificate when server.tls is set.
    static func grpcService(_ routes: ServerRoutes, options: ServerOptions, logger: Logger,
                            onListening: @escaping @Sendable (Int) async -> Void) throws(ServerStartError) -> GRPCService {
        let live = routes.live ?? LiveSettings(options: options)
        let endpoint = GRPCEndpoint(
            registry: routes.registry, api: routes.completionsAPI,
            access: routes.accessControl ?? AccessControl(keys: live.keys, setup: routes.access, metricsPath: options.metricsPath),
            live: live, prometheus: routes.prometheus)
        let names = [SGL.descriptor, KServe.descriptor, Grpc_Health_V1_Health.descriptor, Grpc_Reflection_V1_ServerReflection.descriptor,
                     Grpc_Reflection_V1alpha_ServerReflection.descriptor].map(\.fullyQualifiedService)
        let index = ReflectionIndex(services: names)
        let services: [any RegistrableRPCService] = [
            SGLangService(endpoint: endpoint), KServeService(endpoint: endpoint),
            HealthService(endpoint: endpoint, services: Set(names)),
            ReflectionV1Service(index: index), ReflectionV1AlphaService(index: index),
        ]
        var security = HTTP2ServerTransport.Posix.TransportSecurity.plaintext
        if let tls = options.tls {
            // Clients are not asked for certificates here: they guard HTTP's /admin routes, which gRPC does not have.
            security = .tls(certificateChain: [.file(path: tls.certificateFile, format: .pem)], privateKey: .file(path: tls.keyFile, format: .pem))
        }
        let port = max(0, options.grpcPort)
        let host = options.host == "localhost" ? "127.0.0.1" : options.host
        let address: GRPCNIOTransportCore.SocketAddress = host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port)
        let transport = HTTP2ServerTransport.Posix(
            address: address, transportSecurity: security,
            config: .defaults { $0.rpc.maxRequestPayloadSize = options.maxBodyBytes })
        let server = GRPCServer(transport: transport, services: services,
                                interceptors: [GRPCAccessInterceptor(endpoint: endpoint, metrics: GRPCMetrics(registry: routes.prometheus))])
        return GRPCService(server: server, host: options.host, port: port, onListening: onListening)
    }
}
