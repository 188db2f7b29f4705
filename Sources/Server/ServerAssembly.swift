import Imaging
public import Ops

extension ServerOptions {
    /// The HTTP server's options from the effective configuration.
    public init(configuration config: AutoGLMConfig, tls: ServerTLS? = nil) {
        let timeouts = config.server.timeouts
        self.init(
            host: config.server.host, port: config.server.port, apiKeys: config.server.apiKeys,
            requestTimeoutSeconds: timeouts.requestSeconds > 0 ? timeouts.requestSeconds : nil,
            drainSeconds: config.server.drainSeconds, idleTimeoutSeconds: timeouts.idleSeconds,
            metricsPath: config.metrics.enabled ? (config.metrics.path.isEmpty ? "/metrics" : config.metrics.path) : nil,
            firstTokenTimeoutSeconds: timeouts.firstTokenSeconds > 0 ? timeouts.firstTokenSeconds : nil,
            maxConcurrentRequests: config.limits.maxConcurrentRequests, requestsPerMinute: config.limits.requestsPerMinute)
        self.tls = tls
        adminAPIKeys = config.server.adminAPIKeys
        heartbeatSeconds = config.server.sseHeartbeatSeconds
        metricNames = MetricNames(rawValue: config.metrics.names) ?? .autoglm
        let i = config.images
        images = ImagePolicy(maxImagesPerRequest: config.limits.maxImagesPerRequest, maxImageBytes: config.limits.maxImageBytes,
                             decodeLimits: ImageDecodeLimits(maxPixels: config.limits.maxImagePixels, maxSide: 16_384),
                             localDirectory: i.localDirectory, allowedDomains: i.allowedDomains, maxPixels: i.maxPixels,
                             minPixels: i.minPixels)
    }
}

extension UpstreamSettings {
    /// The gateway's timeouts, retries, breaker and balancing from the configuration's `upstream` section.
    public init(configuration u: AutoGLMConfig.Upstream) {
        self.init(
            connectSeconds: u.connectSeconds, firstByteSeconds: u.firstByteSeconds, readSeconds: u.readSeconds, retries: u.retries,
            breaker: CircuitBreaker.Settings(failureThreshold: u.failureThreshold, openSeconds: u.openSeconds),
            healthIntervalSeconds: u.healthIntervalSeconds, balance: UpstreamBalance(rawValue: u.balance) ?? .leastOutstanding)
    }
}

/// A `--upstream NAME=URL` that names a model served locally.
public struct UpstreamNameClash: Error, CustomStringConvertible {
    public let name: String
    public var description: String { "--upstream \(name)=... names a local model; give the upstream another name." }
}

extension UpstreamModel {
    /// The upstream models to serve: the configuration's `models` entries without a `path`, then the
    /// `--upstream NAME=URL` flags (a NAME already configured gains an endpoint; a new one is a new model).
    public static func assemble(configured: [AutoGLMConfig.Model], flags: [(name: String, url: String)],
                                localNames: Set<String>) throws(UpstreamNameClash) -> [UpstreamModel] {
        var models: [UpstreamModel] = configured.filter { $0.path == nil }.map { model in
            let urls = (model.url.map { [$0] } ?? []) + model.urls
            return UpstreamModel(name: model.name, upstreamName: model.upstreamModel,
                                 endpoints: urls.enumerated().map { i, url in
                                     Endpoint(baseURL: url, apiKey: model.apiKey, weight: i < model.weights.count ? model.weights[i] : 1)
                                 },
                                 fallback: model.fallback, contextLength: model.contextLength)
        }
        for (name, url) in flags {
            if let i = models.firstIndex(where: { $0.name == name }) {
                models[i].endpoints.append(Endpoint(baseURL: url))
            } else if localNames.contains(name) {
                throw UpstreamNameClash(name: name)
            } else {
                models.append(UpstreamModel(name: name, endpoints: [Endpoint(baseURL: url)]))
            }
        }
        return models
    }
}
