/// The effective configuration of `autoglm serve` and the tools, after file, environment and flags.
public struct AutoGLMConfig: Sendable, Equatable {
    public struct TLS: Sendable, Equatable {
        public var certificateFile: String
        public var keyFile: String
        /// CAs whose client certificates are accepted; the /admin routes need one (mTLS).
        public var clientCAFile: String? = nil
    }

    public struct Timeouts: Sendable, Equatable {
        public var requestSeconds: Double
        public var firstTokenSeconds: Double
        public var idleSeconds: Double
    }

    public struct Server: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var apiKeys: [String]
        public var tls: TLS?
        public var timeouts: Timeouts
        public var drainSeconds: Double
        public var sseHeartbeatSeconds: Double = 10
        /// server.grpc.port; 0: no gRPC API.
        public var grpcPort = 0
        public var adminAPIKeys: [String] = []
        public var maxLoadedModels = 0
        /// 0: never unload idle models.
        public var keepAliveSeconds = 0.0
        public var modelsMemoryBudgetBytes: Int?
    }

    public struct Model: Sendable, Equatable {
        public enum Device: String, Sendable { case cpu, gpu }
        public var name: String
        /// A GGUF file for the built-in engine; nil for an upstream.
        public var path: String?
        /// An upstream OpenAI-compatible base URL; nil for a local file.
        public var url: String?
        /// More base URLs of the same upstream model.
        public var urls: [String] = []
        /// Relative share of each endpoint (url, then urls); empty: 1 each.
        public var weights: [Int] = []
        /// The model name sent upstream (nil: `name`).
        public var upstreamModel: String?
        /// A served model that takes requests when no endpoint of this one can.
        public var fallback: String?
        public var apiKey: String?
        public var sha256: String?
        public var contextLength: Int?
        public var threads: Int?
        public var kvMemoryBudgetBytes: Int?
        public var maxSequences: Int
        /// The KV cache's element type for the built-in engine: "f16" (default), "bf16", "q8_0" or "f32".
        public var kvType: String
        public var device: Device
        public var preset: String?
        public var precision: String?
        /// nil: pinned when it is the first local model.
        public var pinned: Bool?
        /// The vision tower of a GGUF pair (llama.cpp's mmproj file) for a GLM-4.1V text GGUF.
        public var mmproj: String?
        /// models[].version; nil: a hash of the entry.
        public var version: String?
        /// models[].canary_percent.
        public var canaryPercent: Int?
        public var selfTest: [SelfTestPrompt] = []

        public init(name: String, path: String? = nil, url: String? = nil, apiKey: String? = nil, sha256: String? = nil,
                    contextLength: Int? = nil, threads: Int? = nil, kvMemoryBudgetBytes: Int? = nil, maxSequences: Int = 8,
                    kvType: String = "f16", device: Device = .cpu, preset: String? = nil, precision: String? = nil) {
            self.name = name
            self.path = path
            self.url = url
            self.apiKey = apiKey
            self.sha256 = sha256
            self.contextLength = contextLength
            self.threads = threads
            self.kvMemoryBudgetBytes = kvMemoryBudgetBytes
            self.maxSequences = maxSequences
            self.kvType = kvType
            self.device = device
            self.preset = preset
            self.precision = precision
        }
    }

    /// models[].self_test[].
    public struct SelfTestPrompt: Sendable, Equatable {
        public var prompt: String
        public var chat = false
        public var expect: String?
        public var expectRegex: String?
        public var expectTokens: [Int]?
        public var maxTokens = 16
        public var maxLatencySeconds = 60.0

        public init(prompt: String) { self.prompt = prompt }
    }

    /// The `rollout` section.
    public struct Rollout: Sendable, Equatable {
        public var stateFile: String?
        public var onReload = "switch"
        public var steps: [Int] = [5, 25, 50, 100]
        public var stepIntervalSeconds = 300.0
        public var stepMinRequests = 50
        public var autoPromote = true
        public var rollbackErrorPercent = 5
        public var rollbackWindowSeconds = 60.0
        public var rollbackMinRequests = 20
        public var rollbackP99LatencySeconds = 0.0
        public var rollbackP99FirstTokenSeconds = 0.0
        public var rollbackRestarts = 3
        public var watchConfig = false

        public init() {}
    }

    public struct Upstream: Sendable, Equatable {
        public var connectSeconds: Double
        public var firstByteSeconds: Double
        public var readSeconds: Double
        public var retries: Int
        public var healthIntervalSeconds: Double
        public var failureThreshold: Int
        public var openSeconds: Double
        /// least_outstanding, round_robin, power_of_two or consistent_hash.
        public var balance: String
    }

    public struct Limits: Sendable, Equatable {
        public var maxConcurrentRequests: Int
        public var maxQueue: Int
        public var maxPromptTokens: Int?
        public var maxTokens: Int
        public var requestsPerMinute: Int
        public var maxImagesPerRequest: Int = 10
        public var maxImageBytes: Int = 20 << 20
        public var maxImagePixels: Int = 50_000_000
        public var maxBodyBytes: Int = 16 << 20
        public var maxMessages: Int = 2048
        public var maxStringLength: Int = 1 << 20
    }

    /// Where images in chat messages may come from, and the image processor's pixel budget.
    public struct Images: Sendable, Equatable {
        public var localDirectory: String?
        public var allowedDomains: [String] = []
        public var maxPixels: Int?
        public var minPixels: Int?
    }

    public struct Logging: Sendable, Equatable {
        public var level: String
        public var format: String
    }

    /// OpenTelemetry export of traces (OTLP/HTTP).
    public struct Tracing: Sendable, Equatable {
        public var enabled = false
        public var endpoint = "http://127.0.0.1:4318"
        public var serviceName = "autoglm"
        public var samplePercent = 100
    }

    public struct Metrics: Sendable, Equatable {
        public var enabled: Bool
        public var path: String
        /// "autoglm" (autoglm_ + vLLM's names) or "vllm" (vLLM's exact vllm: names).
        public var names = "autoglm"
    }

    public var server: Server
    public var models: [Model]
    public var upstream: Upstream
    public var limits: Limits
    public var images = Images()
    public var logging: Logging
    public var tracing = Tracing()
    public var metrics: Metrics
    public var rollout = Rollout()
    public var auth = Auth()

    /// The `auth` section: keys autoglm issues, JWT issuers, roles' budgets, the audit log.
    public struct Auth: Sendable, Equatable {
        public struct Issuer: Sendable, Equatable {
            public var issuer: String
            public var audience: [String] = []
            public var jwksURL: String?
            public var jwksFile: String?
            public var publicKeyFile: String?
            /// The name of the environment variable holding an HS256 secret.
            public var secretEnv: String?
            public var roleClaim = "role"
            public var defaultRole: String?
            public var modelsClaim: String?
            public var leewaySeconds = 30.0
        }

        public struct RoleBudget: Sendable, Equatable {
            public var requestsPerMinute: Int?
            public var tokensPerMinute: Int?
            public var maxConcurrent: Int?
        }

        public var keysFile: String?
        public var publicPaths: [String] = ["/health", "/live", "/ready"]
        public var publicMetrics = false
        public var auditLog: String?
        public var jwt: [Issuer] = []
        public var roles: [String: RoleBudget] = [:]
    }
}

extension AutoGLMConfig {
    /// Builds the typed configuration from a validated document; absent keys take the schema's defaults.
    init(document: [String: ConfigValue], environment: [String: String]) {
        func value(_ path: String) -> ConfigValue? {
            var node: ConfigValue? = .object(document)
            for part in path.split(separator: ".") { node = node?.objectValue?[String(part)] }
            return node ?? ConfigSchema.field(at: path)?.defaultValue
        }
        func string(_ p: String) -> String { value(p)?.stringValue ?? "" }
        func int(_ p: String) -> Int { value(p)?.intValue ?? 0 }
        func double(_ p: String) -> Double { value(p)?.doubleValue ?? 0 }
        let tls: TLS? = {
            guard let cert = value("server.tls.cert_file")?.stringValue, let key = value("server.tls.key_file")?.stringValue else { return nil }
            return TLS(certificateFile: cert, keyFile: key, clientCAFile: value("server.tls.client_ca_file")?.stringValue)
        }()
        server = Server(
            host: string("server.host"), port: int("server.port"),
            apiKeys: value("server.api_keys")?.listValue?.compactMap(\.stringValue) ?? [], tls: tls,
            timeouts: Timeouts(requestSeconds: double("server.timeouts.request"), firstTokenSeconds: double("server.timeouts.first_token"),
                               idleSeconds: double("server.timeouts.idle")),
            drainSeconds: double("server.drain"),
            adminAPIKeys: value("server.admin_api_keys")?.listValue?.compactMap(\.stringValue) ?? [],
            maxLoadedModels: int("server.max_loaded_models"), keepAliveSeconds: double("server.keep_alive"),
            modelsMemoryBudgetBytes: value("server.models_memory_budget")?.intValue)
        server.sseHeartbeatSeconds = double("server.sse_heartbeat")
        server.grpcPort = int("server.grpc.port")
        let modelObjects = document["models"]?.listValue?.compactMap(\.objectValue) ?? []
        if modelObjects.isEmpty {
            models = [Model(name: ModelStore.defaultModelName, path: ModelStore.defaultModelPath(environment: environment))]
        } else {
            models = modelObjects.map { m in
                var model = Model(name: m["name"]?.stringValue ?? "", path: m["path"]?.stringValue, url: m["url"]?.stringValue,
                      apiKey: m["api_key"]?.stringValue ?? m["api_key_env"]?.stringValue.flatMap { environment[$0] }, sha256: m["sha256"]?.stringValue,
                      contextLength: m["context_length"]?.intValue, threads: m["threads"]?.intValue,
                      kvMemoryBudgetBytes: m["kv_memory_budget"]?.intValue, maxSequences: m["max_sequences"]?.intValue ?? 8,
                      kvType: m["kv_type"]?.stringValue ?? "f16", device: Model.Device(rawValue: m["device"]?.stringValue ?? "cpu") ?? .cpu,
                      preset: m["preset"]?.stringValue, precision: m["precision"]?.stringValue)
                model.urls = m["urls"]?.listValue?.compactMap(\.stringValue) ?? []
                model.weights = m["weights"]?.listValue?.compactMap(\.intValue) ?? []
                model.upstreamModel = m["upstream_model"]?.stringValue
                model.fallback = m["fallback"]?.stringValue
                model.pinned = m["pinned"]?.boolValue
                model.mmproj = m["mmproj"]?.stringValue
                model.version = m["version"]?.stringValue
                model.canaryPercent = m["canary_percent"]?.intValue
                model.selfTest = (m["self_test"]?.listValue ?? []).compactMap(\.objectValue).map { t in
                    var p = SelfTestPrompt(prompt: t["prompt"]?.stringValue ?? "")
                    p.chat = t["chat"]?.boolValue ?? false
                    p.expect = t["expect"]?.stringValue
                    p.expectRegex = t["expect_regex"]?.stringValue
                    p.expectTokens = t["expect_tokens"]?.listValue?.compactMap(\.intValue)
                    p.maxTokens = t["max_tokens"]?.intValue ?? 16
                    p.maxLatencySeconds = t["max_latency"]?.doubleValue ?? 60
                    return p
                }
                return model
            }
        }
        upstream = Upstream(connectSeconds: double("upstream.connect_timeout"), firstByteSeconds: double("upstream.first_byte_timeout"),
                            readSeconds: double("upstream.read_timeout"), retries: int("upstream.retries"),
                            healthIntervalSeconds: double("upstream.health_interval"), failureThreshold: int("upstream.failure_threshold"),
                            openSeconds: double("upstream.open_duration"), balance: string("upstream.balance"))
        limits = Limits(maxConcurrentRequests: int("limits.max_concurrent_requests"), maxQueue: int("limits.max_queue"),
                        maxPromptTokens: value("limits.max_prompt_tokens")?.intValue, maxTokens: int("limits.max_tokens"),
                        requestsPerMinute: int("limits.requests_per_minute"),
                        maxImagesPerRequest: int("limits.max_images_per_request"), maxImageBytes: int("limits.max_image_bytes"),
                        maxImagePixels: int("limits.max_image_pixels"), maxBodyBytes: int("limits.max_body_bytes"),
                        maxMessages: int("limits.max_messages"), maxStringLength: int("limits.max_string_length"))
        images = Images(localDirectory: value("images.local_directory")?.stringValue,
                        allowedDomains: value("images.allowed_domains")?.listValue?.compactMap(\.stringValue) ?? [],
                        maxPixels: value("images.max_pixels")?.intValue, minPixels: value("images.min_pixels")?.intValue)
        logging = Logging(level: string("logging.level"), format: string("logging.format"))
        tracing = Tracing(enabled: value("tracing.enabled")?.boolValue ?? false, endpoint: string("tracing.endpoint"),
                          serviceName: string("tracing.service_name"), samplePercent: int("tracing.sample_percent"))
        metrics = Metrics(enabled: value("metrics.enabled")?.boolValue ?? true, path: string("metrics.path"),
                          names: value("metrics.names")?.stringValue ?? "autoglm")
        rollout.stateFile = value("rollout.state_file")?.stringValue
        rollout.onReload = string("rollout.on_reload")
        rollout.steps = value("rollout.steps")?.listValue?.compactMap(\.intValue) ?? [5, 25, 50, 100]
        rollout.stepIntervalSeconds = double("rollout.step_interval")
        rollout.stepMinRequests = int("rollout.step_min_requests")
        rollout.autoPromote = value("rollout.auto_promote")?.boolValue ?? true
        rollout.rollbackErrorPercent = int("rollout.rollback_error_percent")
        rollout.rollbackWindowSeconds = double("rollout.rollback_window")
        rollout.rollbackMinRequests = int("rollout.rollback_min_requests")
        rollout.rollbackP99LatencySeconds = double("rollout.rollback_p99_latency")
        rollout.rollbackP99FirstTokenSeconds = double("rollout.rollback_p99_first_token")
        rollout.rollbackRestarts = int("rollout.rollback_restarts")
        rollout.watchConfig = value("rollout.watch_config")?.boolValue ?? false
        auth.keysFile = value("auth.keys_file")?.stringValue
        auth.publicPaths = value("auth.public_paths")?.listValue?.compactMap(\.stringValue) ?? ["/health", "/live", "/ready"]
        auth.publicMetrics = value("auth.public_metrics")?.boolValue ?? false
        auth.auditLog = value("auth.audit_log")?.stringValue
        auth.jwt = (value("auth.jwt")?.listValue ?? []).compactMap(\.objectValue).map { j in
            var issuer = Auth.Issuer(issuer: j["issuer"]?.stringValue ?? "")
            issuer.audience = j["audience"]?.listValue?.compactMap(\.stringValue) ?? j["audience"]?.stringValue.map { [$0] } ?? []
            issuer.jwksURL = j["jwks_url"]?.stringValue
            issuer.jwksFile = j["jwks_file"]?.stringValue
            issuer.publicKeyFile = j["public_key_file"]?.stringValue
            issuer.secretEnv = j["secret_env"]?.stringValue
            issuer.roleClaim = j["role_claim"]?.stringValue ?? "role"
            issuer.defaultRole = j["default_role"]?.stringValue
            issuer.modelsClaim = j["models_claim"]?.stringValue
            issuer.leewaySeconds = j["leeway"]?.doubleValue ?? 30
            return issuer
        }
        for role in ["admin", "user", "viewer"] {
            guard let r = value("auth.roles.\(role)")?.objectValue else { continue }
            auth.roles[role] = Auth.RoleBudget(requestsPerMinute: r["requests_per_minute"]?.intValue, tokensPerMinute: r["tokens_per_minute"]?.intValue,
                                               maxConcurrent: r["max_concurrent"]?.intValue)
        }
    }
}
