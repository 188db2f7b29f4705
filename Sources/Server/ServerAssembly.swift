import Foundation
import Imaging
public import Ops
import Serving
import Synchronization

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
        maxBodyBytes = config.limits.maxBodyBytes
        grpcPort = config.server.grpcPort
        inputShape = InputShape(maxMessages: config.limits.maxMessages, maxStringLength: config.limits.maxStringLength)
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
        var models: [UpstreamModel] = configured.filter { $0.path == nil }.map(UpstreamModel.init(configuration:))
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

extension UpstreamModel {
    /// An upstream model from its configuration entry (url, then urls, with their weights).
    public init(configuration model: AutoGLMConfig.Model) {
        let urls = (model.url.map { [$0] } ?? []) + model.urls
        self.init(name: model.name, upstreamName: model.upstreamModel,
                  endpoints: urls.enumerated().map { i, url in
                      Endpoint(baseURL: url, apiKey: model.apiKey, weight: i < model.weights.count ? model.weights[i] : 1)
                  },
                  fallback: model.fallback, contextLength: model.contextLength)
    }
}

extension ModelVersion {
    /// A configuration entry's version: its label (models[].version), else "h" and 8 hex digits of a hash
    /// of its settings; and the fingerprint a reload compares (a local file's size and modification
    /// time included, so a file replaced at the same path is a new version).
    public static func identity(of model: AutoGLMConfig.Model) -> (id: String, fingerprint: String) {
        var parts: [String] = [model.name]
        if let path = model.path {
            parts.append("path=\(path)")
            parts.append("file=\(FileStamp.of(path) ?? "missing")")
            parts.append("mmproj=\(model.mmproj ?? "")")
        } else {
            parts.append("urls=\(((model.url.map { [$0] } ?? []) + model.urls).joined(separator: ","))")
            parts.append("weights=\(model.weights)")
            parts.append("upstream_model=\(model.upstreamModel ?? "")")
            parts.append("fallback=\(model.fallback ?? "")")
            parts.append("key=\(CanarySplit.bucket(model: "key", key: model.apiKey ?? ""))")
        }
        parts.append("context=\(model.contextLength.map(String.init) ?? "")")
        parts.append("threads=\(model.threads.map(String.init) ?? "")")
        parts.append("kv=\(model.kvMemoryBudgetBytes.map(String.init) ?? "")/\(model.kvType)/\(model.maxSequences)")
        let fingerprint = parts.joined(separator: ";")
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in fingerprint.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return (model.version ?? "h" + String(String(hash, radix: 16).suffix(8)), fingerprint)
    }
}

extension LocalModelSpec {
    /// The same model, its load followed by the self-test: a model that fails it is stopped and the
    /// load fails with the reason, so it never serves a request (at start, on demand and on reload).
    public func guarded(by test: SelfTest) -> LocalModelSpec {
        guard !test.cases.isEmpty else { return self }
        var spec = self
        let load = self.load
        let name = self.name
        spec.load = {
            let model = try load()
            model.backend.start()
            let result = Mutex<Result<Void, SelfTest.Failure>?>(nil)
            let done = DispatchSemaphore(value: 0)
            Task {
                do throws(SelfTest.Failure) {
                    try await test.run(on: model)
                    result.withLock { $0 = .success(()) }
                } catch {
                    result.withLock { $0 = .failure(error) }
                }
                done.signal()
            }
            done.wait()
            if case .failure(let failure)? = result.withLock({ $0 }) {
                model.backend.shutdown()
                throw SelfTestRefusal(model: name, failure: failure)
            }
            return model
        }
        return spec
    }
}

/// A model whose self-test failed: it does not serve.
public struct SelfTestRefusal: Error, CustomStringConvertible {
    public let model: String
    public let failure: SelfTest.Failure

    public init(model: String, failure: SelfTest.Failure) {
        self.model = model
        self.failure = failure
    }

    public var description: String {
        "'\(model)' failed its self-test (\(failure)); it serves no request. Fix the model or models[].self_test."
    }
}

extension AccessSetup {
    /// The `auth` section made ready to use: the key file's path, each JWT issuer's keys (a JWKS URL fetched now),
    /// the audit log opened for appending. What cannot be used stops the start with the reason.
    public static func make(configuration auth: AutoGLMConfig.Auth, environment: [String: String]) async throws(AccessSetupError) -> AccessSetup {
        var setup = AccessSetup()
        if let path = auth.keysFile {
            let store = KeyStore(path: path)
            do { _ = try store.current() } catch { throw AccessSetupError(key: "auth.keys_file", message: error.description) }
            setup.store = store
        }
        var issuers: [JWTIssuer] = []
        for (i, j) in auth.jwt.enumerated() {
            let key = "auth.jwt[\(i)]"
            guard !j.issuer.isEmpty else { throw AccessSetupError(key: key + ".issuer", message: "each JWT issuer needs its `issuer` (the iss its tokens carry)") }
            var secret: JWTIssuer.KeySource?
            if let name = j.secretEnv {
                guard let value = environment[name], value.utf8.count >= 32 else {
                    throw AccessSetupError(key: key + ".secret_env", message: "the environment variable \(name) must hold the HS256 secret, at least 32 bytes")
                }
                secret = .secret(value)
            }
            let sources: [JWTIssuer.KeySource] = [
                j.jwksURL.map { .jwksURL($0) }, j.jwksFile.map { .jwksFile($0) }, j.publicKeyFile.map { .pemFile($0) }, secret,
            ].compactMap { $0 }
            guard sources.count == 1 else {
                throw AccessSetupError(key: key, message: "give exactly one of jwks_url, jwks_file, public_key_file, secret_env (got \(sources.count))")
            }
            var role: Role?
            if let name = j.defaultRole { role = Role(rawValue: name) }
            issuers.append(JWTIssuer(issuer: j.issuer, audiences: j.audience, keys: sources[0], roleClaim: j.roleClaim, defaultRole: role,
                                     modelsClaim: j.modelsClaim, leewaySeconds: Int(j.leewaySeconds)))
        }
        if !issuers.isEmpty {
            do { setup.jwt = try await JWTVerifier.make(issuers: issuers) } catch {
                throw AccessSetupError(key: "auth.jwt", message: "cannot load an issuer's keys: \(error)")
            }
        }
        if let path = auth.auditLog {
            do { setup.audit = try AuditLog(path: path) } catch { throw AccessSetupError(key: "auth.audit_log", message: error.description) }
        }
        setup.publicPaths = auth.publicPaths
        setup.publicMetrics = auth.publicMetrics
        for (name, b) in auth.roles {
            guard let role = Role(rawValue: name) else { continue }
            setup.roleBudgets[role] = Budgets(requestsPerMinute: b.requestsPerMinute, tokensPerMinute: b.tokensPerMinute, maxConcurrent: b.maxConcurrent)
        }
        return setup
    }
}

/// A part of the `auth` section that cannot be used.
public struct AccessSetupError: Error, CustomStringConvertible {
    public let key: String
    public let message: String
    public var description: String { "\(key): \(message)" }
}
