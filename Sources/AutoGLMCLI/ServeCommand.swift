import ArgumentParser
import Engine
import Kernels
import Foundation
import GGUF
import Logging
import Metrics
import Ops
import Prometheus
import Runtime
import Server
import ServiceLifecycle
import Tokenizer

/// `autoglm serve`: the OpenAI-compatible server over the built-in engine with continuous batching.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the model over an OpenAI-compatible HTTP API (default: the default model on 127.0.0.1:8080).",
        discussion: """
            Routes: POST /v1/chat/completions, /v1/completions, /generate, /tokenize, /detokenize; GET /v1/models,
            /health, /ready, /metrics. Settings come from flags > AUTOGLM_* environment > --config file > defaults
            (`autoglm config show` prints them). SIGTERM drains: no new requests, in-flight ones finish (server.drain).
            """)

    @OptionGroup var options: ConfigOverrideOptions

    @Option(name: .shortAndLong, help: "Engine threads (default: models[].threads, else the number of cores).")
    var threads: Int?

    @Option(help: "Sequences decoded together (default: models[].max_sequences, else 8).")
    var maxSequences: Int?

    @Option(help: "Tokens of context per sequence (default: models[].context_length, else the model's).")
    var context: Int?

    @Option(help: "KV cache size, e.g. 512MiB (default: models[].kv_memory_budget, else context x sequences up to 1 GiB).")
    var kvMemory: String?

    @Option(help: "How the KV cache stores keys and values: f16, bf16, q8_0 or f32 (default: models[].kv_type, else f16).")
    var kvType: String?

    @Option(name: .customLong("upstream"), parsing: .singleValue,
            help: ArgumentHelp("An OpenAI-compatible engine to serve a model from: NAME=URL, URL being the base URL an OpenAI client would use (http://gpu-node:8000/v1). Repeat it: the same NAME twice load-balances. Without --model, only the upstreams are served.", valueName: "NAME=URL"))
    var upstreams: [String] = []

    @Option(help: "Most tokens per engine step: prefill chunks plus one per decoding sequence.")
    var maxBatchTokens: Int = 512

    @Flag(help: "Do not share KV blocks between requests with a common prefix.")
    var noPrefixCaching = false

    @Option(help: "For a Hugging Face directory: quantize the weights at load time to q8_0, q4_0 or q4_k (also f16, bf16, f32).")
    var quantize: String?

    @Option(help: "The name clients send as \"model\" for the first local model (vLLM's --served-model-name), e.g. autoglm-phone-9b.")
    var servedModelName: String?

    @Option(help: "The vision tower (llama.cpp's mmproj GGUF) of a GLM-4.1V / AutoGLM-Phone text GGUF, for the first local model (models[].mmproj).")
    var mmproj: String?

    var quantizeType: GGUFTensorType? {
        get throws { try ModelOptions.quantizeType(quantize) }
    }

    func validate() throws {
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be in 1...1024 (got \(threads)).") }
        if let maxSequences, maxSequences < 1 || maxSequences > 4096 { throw ValidationError("--max-sequences must be in 1...4096 (got \(maxSequences)).") }
        if let context, context < 16 { throw ValidationError("--context must be at least 16 (got \(context)).") }
        _ = try quantizeType
        _ = try ModelOptions.kvCacheType(kvType)
        if maxBatchTokens < 1 { throw ValidationError("--max-batch-tokens must be positive (got \(maxBatchTokens)).") }
        _ = try Self.parseUpstreams(upstreams)
    }

    /// The configuration as serve uses it: the loaded one, with --upstream and --served-model-name applied
    /// (at start and on every reload).
    func effective(_ loaded: LoadedConfig, flagUpstreams: [(String, String)]) throws -> AutoGLMConfig {
        var config = loaded.config
        // --upstream without --model (or a models list): serve the upstreams only, not the implicit default model.
        if !flagUpstreams.isEmpty && loaded.document["models"] == nil { config.models = [] }
        if let servedModelName, let first = config.models.firstIndex(where: { $0.path != nil }) {
            guard !config.models.contains(where: { $0.name == servedModelName && $0.path == nil }) else {
                throw ValidationError("--served-model-name \(servedModelName) is already an upstream model's name.")
            }
            let original = config.models[first].name
            for i in config.models.indices where config.models[i].name == original { config.models[i].name = servedModelName }
        }
        if let mmproj, let first = config.models.firstIndex(where: { $0.path != nil }) {
            for i in config.models.indices where config.models[i].name == config.models[first].name && config.models[i].mmproj == nil {
                config.models[i].mmproj = mmproj
            }
        }
        return config
    }

    func run() async throws {
        let loaded = options.load()
        for issue in loaded.issues { printError(issue.description) }
        guard loaded.errors.isEmpty else { throw ExitCode(1) }
        let flagUpstreams = try Self.parseUpstreams(upstreams)
        let config = try effective(loaded, flagUpstreams: flagUpstreams)

        let logging = config.logging
        LiveLogLevel.level = Logger.Level(rawValue: logging.level) ?? .info
        LoggingSystem.bootstrap { label in
            let handler: any LogHandler = logging.format == "json"
                ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            // The level is read at each log call: a reload changes it.
            return LiveLevelLogHandler(handler)
        }
        let logger = Logger(label: "autoglm")

        // Fail fast, before minutes of model loading, when the port is taken.
        let origin = loaded.origins["server.port"].map { "\($0)" } ?? "default"
        if let problem = PortPreflight.problem(host: config.server.host, port: config.server.port, origin: origin) {
            printError("error: cannot listen on \(config.server.host):\(config.server.port): \(problem.found).")
            if let fix = problem.fix { printError("fix: \(fix)") }
            throw ExitCode(1)
        }
        if config.server.grpcPort > 0 {
            let grpcOrigin = loaded.origins["server.grpc.port"].map { "\($0)" } ?? "default"
            if config.server.grpcPort == config.server.port {
                printError("error: server.grpc.port (\(grpcOrigin)) is server.port (\(config.server.port)): the gRPC API needs a port of its own.")
                throw ExitCode(1)
            }
            if let problem = PortPreflight.problem(host: config.server.host, port: config.server.grpcPort, origin: grpcOrigin) {
                printError("error: cannot listen for gRPC on \(config.server.host):\(config.server.grpcPort): \(problem.found).")
                if let fix = problem.fix { printError("fix: \(fix)") }
                throw ExitCode(1)
            }
        }

        // HTTPS files are checked before the model loads, too.
        var tls: ServerTLS?
        if let files = config.server.tls {
            do throws(ServerStartError) {
                tls = try ServerTLS(certificateFile: files.certificateFile, keyFile: files.keyFile, clientCAFile: files.clientCAFile)
            } catch {
                printError("error: \(error)")
                throw ExitCode(1)
            }
        }

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        // Before the upstream gateway's HTTP client is made: it takes the tracer it finds then.
        let telemetry: (any Service)?
        do {
            telemetry = try Telemetry.start(config.tracing)
        } catch {
            printError("error: cannot start tracing (tracing.*): \(error)")
            throw ExitCode(1)
        }
        if config.tracing.enabled {
            logger.info("tracing", metadata: ["otlp_endpoint": .string(UpstreamModel.redacted(config.tracing.endpoint)),
                                              "sample_percent": .stringConvertible(config.tracing.samplePercent)])
        }
        var slots: [LocalModelSlot] = []
        var metrics: [String: ServerMetrics] = [:]
        var versions: [(version: ModelVersion, canaryPercent: Int?)] = []
        for model in config.models {
            guard let path = model.path else { continue }
            let (id, fingerprint) = ModelVersion.identity(of: model)
            // A further version of a name is loaded at start beside the first (it is a canary or may become one).
            let further = slots.contains { $0.name == model.name }
            let m = try spec(model, path: path, pinned: further || (model.pinned ?? slots.isEmpty), config: config, registry: registry, logger: logger)
            let test = SelfTest(configuration: model.selfTest)
            let slot = LocalModelSlot(spec: m.0.guarded(by: test), key: further ? "\(model.name)@\(id)" : nil)
            slots.append(slot)
            metrics[model.name] = metrics[model.name] ?? m.1
            versions.append((ModelVersion(model: model.name, id: id, fingerprint: fingerprint, target: .local(slot), selfTest: test),
                             further ? model.canaryPercent : nil))
        }
        let locals = LocalModelPool(slots: slots, policy: LocalModelPolicy(
            maxLoadedModels: config.server.maxLoadedModels,
            keepAliveSeconds: config.server.keepAliveSeconds > 0 ? config.server.keepAliveSeconds : nil,
            memoryBudgetBytes: config.server.modelsMemoryBudgetBytes), logger: logger)
        do {
            try await locals.preloadPinned()
        } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
        let served = slots
        let upstreamModels: [UpstreamModel]
        do throws(UpstreamNameClash) {
            upstreamModels = try UpstreamModel.assemble(configured: config.models, flags: flagUpstreams.map { ($0.0, $0.1) },
                                                        localNames: Set(served.map(\.name)))
        } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
        let upstreamEntries = config.models.filter { $0.path == nil }
        guard !served.isEmpty || !upstreamModels.isEmpty else {
            printError("error: no model to serve. Give --model PATH|NAME, --upstream NAME=URL, or models[] in the configuration.")
            throw ExitCode(1)
        }
        var gateway: UpstreamGateway?
        if !upstreamModels.isEmpty {
            gateway = UpstreamGateway(models: upstreamModels, settings: UpstreamSettings(configuration: config.upstream), registry: registry)
            for m in upstreamModels {
                logger.info("upstream model", metadata: [
                    "model": .string(m.name), "upstream_model": .string(m.upstreamName ?? m.name),
                    "endpoints": .string(m.endpoints.map { UpstreamModel.redacted($0.baseURL) }.joined(separator: ",")),
                    "fallback": .string(m.fallback ?? "")])
            }
        }
        // The upstream versions: one per configured entry (the pools are in the same order), then the --upstream-only names.
        for (i, pool) in (gateway?.pools ?? []).enumerated() {
            let entry = i < upstreamEntries.count ? upstreamEntries[i] : nil
            let identity = entry.map(ModelVersion.identity) ?? (id: "v1", fingerprint: "flag:\(pool.model.endpoints.map(\.baseURL))")
            let test = SelfTest(configuration: entry?.selfTest ?? [])
            if !test.cases.isEmpty, let gateway {
                do throws(SelfTest.Failure) {
                    try await gateway.selfTest(test, model: pool.model)
                } catch {
                    printError("error: \(SelfTestRefusal(model: pool.model.name, failure: error))")
                    throw ExitCode(1)
                }
            }
            let further = versions.contains { $0.version.model == pool.model.name }
            versions.append((ModelVersion(model: pool.model.name, id: identity.id, fingerprint: identity.fingerprint, target: .upstream(pool),
                                          selfTest: test), further ? entry?.canaryPercent : nil))
        }
        var restored: RolloutState?
        if let file = config.rollout.stateFile {
            do {
                restored = try RolloutState.read(file)
            } catch {
                printError("error: cannot read the rollout state \(file) (rollout.state_file): \(error). Fix or remove the file (the configuration's first version of each model is then stable).")
                throw ExitCode(1)
            }
        }
        let releases = ReleaseController(versions: versions, locals: locals, upstreams: gateway, policy: RolloutPolicy(configuration: config.rollout),
                                         stateFile: config.rollout.stateFile, restored: restored, prometheus: registry, logger: logger)
        for status in releases.status() where status.versions.count > 1 || status.canary != nil {
            logger.notice("versions", metadata: ["model": .string(status.model), "stable": .string(status.stable),
                                                 "canary": .string(status.canary.map { "\($0) at \(Int(status.canaryPercent))%" } ?? "none"),
                                                 "loaded": .string(status.versions.map(\.id).joined(separator: ","))])
        }
        var seen = Set<String>()
        let order = (config.models.map(\.name) + flagUpstreams.map(\.0)).filter { seen.insert($0).inserted }
        let live = LiveSettings(options: ServerOptions(configuration: config))
        var reloader: Reloader?
        if loaded.filePath != nil {
            let command = self
            let flags = flagUpstreams
            let path = loaded.filePath!
            reloader = Reloader(releases: releases, live: live, environment: Reloader.Environment(
                readConfig: {
                    var again = command.options.load()
                    if again.errors.isEmpty {
                        do { again.config = try command.effective(again, flagUpstreams: flags) } catch {
                            again.issues.append(ConfigIssue(.error, .conflict, key: "models", origin: .defaultValue, message: "\(error)"))
                        }
                    }
                    return again
                },
                localSpec: { model, config in
                    guard let path = model.path else { throw CLIError("model '\(model.name)' has no path") }
                    return try command.spec(model, path: path, pinned: true, config: config, registry: registry, logger: logger).0
                },
                configModified: { FileStamp.of(path) }),
                current: config, logger: logger)
        }
        var serverOptions = ServerOptions(configuration: config, tls: tls)
        do {
            serverOptions.access = try await AccessSetup.make(configuration: config.auth, environment: ProcessInfo.processInfo.environment)
        } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
        let scheme = tls == nil ? "http" : "https"
        do {
            let names = (served.map(\.name) + upstreamModels.map(\.name)).joined(separator: ",")
            let host = config.server.host
            try await AutoGLMServer.run(locals: locals, upstreams: gateway, modelOrder: order, metrics: metrics, registry: registry,
                                        options: serverOptions, logger: logger, releases: releases, reloader: reloader, live: live,
                                        watchConfig: config.rollout.watchConfig, telemetry: telemetry, onServerRunning: { port in
                logger.info("listening", metadata: ["address": .string("\(scheme)://\(host):\(port)"),
                                                    "models": .string(names)])
            }, onGRPCListening: { port in
                logger.info("listening for gRPC", metadata: ["address": .string("\(host):\(port)"), "tls": .string(scheme == "https" ? "yes" : "no"),
                                                            "services": .string("sglang.grpc.scheduler.SglangScheduler, inference.GRPCInferenceService, grpc.health.v1.Health, reflection")])
            })
        } catch let error as ServerStartError {
            printError("error: \(error)")
            throw ExitCode(1)
        }
        logger.info("stopped")
    }

    /// A local model's plan (read from its header now: a missing or corrupt file stops serve here)
    /// and its loader, which the pool runs at start for a pinned model, else on the first request.
    private func spec(_ model: AutoGLMConfig.Model, path: String, pinned: Bool, config: AutoGLMConfig,
                      registry: PrometheusCollectorRegistry, logger: Logger) throws -> (LocalModelSpec, ServerMetrics) {
        let threadCount = threads ?? model.threads ?? ProcessInfo.processInfo.activeProcessorCount
        let type = try quantizeType
        var settings = LocalServingSettings(
            contextLength: context ?? model.contextLength, maxSequences: maxSequences ?? model.maxSequences,
            maxBatchTokens: maxBatchTokens, maxQueue: config.limits.maxQueue,
            kvType: try ModelOptions.kvCacheType(kvType, fallback: model.kvType), kvMemoryBytes: model.kvMemoryBudgetBytes,
            prefixCaching: !noPrefixCaching)
        if let kvMemory {
            guard let bytes = Self.parseSize(kvMemory) else { throw ValidationError("--kv-memory: '\(kvMemory)' is not a size (e.g. 512MiB, 2GB).") }
            settings.kvMemoryBytes = bytes
        }
        let plan: LocalModelPlan
        do throws(ModelLoadError) {
            plan = try settings.plan(path: path)
        } catch {
            if case .gguf(let g) = error, case .fileNotFound = g,
               path == ModelStore.defaultModelPath(environment: ProcessInfo.processInfo.environment) {
                throw CLIError("the default model is not installed at \(path). Fetch it with `scripts/setup-model.sh` (or `autoglm models pull \(ModelStore.defaultModelName)`), or pass --model PATH.")
            }
            throw CLIError("cannot load model '\(model.name)' from \(path): \(error.description)")
        }
        let metrics = ServerMetrics(registry: registry, model: model.name)
        let name = model.name
        let limits = config.limits
        let finalSettings = settings
        let mmproj = model.mmproj
        if let mmproj, !FileManager.default.fileExists(atPath: mmproj) {
            throw CLIError("the mmproj file of model '\(model.name)' does not exist: \(mmproj)")
        }
        let load: @Sendable () throws -> ServedModel = {
            let loaded: LoadedModel
            do throws(ModelLoadError) {
                loaded = try ModelLoader.load(path: path, options: ModelLoadOptions(threads: threadCount, quantize: type, mmproj: mmproj))
            } catch {
                logger.error("cannot load a model", metadata: ["model": .string(name), "error": .string(error.description)])
                throw CLIError("cannot load model '\(name)' from \(path): \(error.description)")
            }
            if let report = loaded.conversion {
                logger.info("converted a Hugging Face directory in memory", metadata: ["summary": .string(report.summary)])
            }
            if let problem = finalSettings.kvType.problem(headDimension: loaded.model.configuration.headDimension) {
                logger.error("cannot serve a model", metadata: ["model": .string(name), "error": .string(problem)])
                throw CLIError("model '\(name)': \(problem)")
            }
            let backend = LocalBackend(model: loaded.model, tokenizer: loaded.tokenizer, settings: finalSettings, observer: metrics,
                                       vision: loaded.vision)
            let scheduler = backend.scheduler
            logger.info("model loaded", metadata: [
                "model": .string(name), "path": .string(path), "architecture": .string(loaded.model.configuration.architecture),
                "threads": .stringConvertible(threadCount), "context": .stringConvertible(scheduler.contextLength),
                "max_sequences": .stringConvertible(finalSettings.maxSequences), "kv_cache_tokens": .stringConvertible(scheduler.cacheTokenCapacity),
                "kv_cache_mib": .string(String(format: "%.0f", Double(scheduler.cacheBytes) / 1048576)),
                "kv_type": .string(finalSettings.kvType.rawValue),
                "chat_template": .string(backend.formatter.fallbackReason ?? "the model's own"),
                "images": .string(loaded.vision.map { "yes (vision tower of \($0.encoder.configuration.blockCount) blocks)" } ?? "no"),
            ])
            return ServedModel(name: name, backend: backend, maxTokensLimit: limits.maxTokens, maxPromptTokens: limits.maxPromptTokens)
        }
        logger.info(pinned ? "local model (pinned: loads now)" : "local model (loads on its first request)", metadata: [
            "model": .string(name), "path": .string(path),
            "planned_mib": .string(String(format: "%.0f", Double(plan.bytes) / 1048576)), "context": .stringConvertible(plan.context)])
        return (LocalModelSpec(name: name, pinned: pinned, estimatedBytes: plan.bytes, contextLength: plan.context, load: load), metrics)
    }

    /// `--upstream NAME=URL` values, checked.
    static func parseUpstreams(_ values: [String]) throws -> [(String, String)] {
        try values.map { value in
            guard let eq = value.firstIndex(of: "="), eq != value.startIndex else {
                throw ValidationError("--upstream takes NAME=URL, e.g. glm=http://gpu-node:8000/v1 (got '\(value)').")
            }
            let name = String(value[..<eq]), url = String(value[value.index(after: eq)...])
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || "._-".contains($0) }) else {
                throw ValidationError("--upstream: '\(name)' is not a model name (letters, digits, '.', '_', '-').")
            }
            if let problem = UpstreamModel.problem(with: url) { throw ValidationError("--upstream \(name): \(problem).") }
            return (name, url)
        }
    }

    static func parseSize(_ text: String) -> Int? {
        let units: [(String, Double)] = [("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("B", 1)]
        let t = text.trimmingCharacters(in: .whitespaces)
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            return Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)).map { Int($0 * factor) }
        }
        return Int(t)
    }
}
