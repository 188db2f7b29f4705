import Foundation

/// What `autoglm doctor` was asked to check.
public struct DoctorOptions: Sendable {
    /// `--config`; nil falls back to `$AUTOGLM_CONFIG`, then to defaults.
    public var configPath: String?
    /// `--model`, `--port`, `--host`, as `serve` takes them.
    public var overrides: [ConfigOverride]
    /// `--python PATH`: a Python environment whose torch/vLLM to check against the driver.
    public var python: String?

    public init(configPath: String? = nil, overrides: [ConfigOverride] = [], python: String? = nil) {
        self.configPath = configPath
        self.overrides = overrides
        self.python = python
    }
}

/// Runs every preflight check through a `SystemProbe` and reports findings with fixes.
public struct Doctor: Sendable {
    public let probe: any SystemProbe

    public init(probe: any SystemProbe = LiveSystemProbe()) {
        self.probe = probe
    }

    public func run(_ options: DoctorOptions) -> DoctorReport {
        var findings: [DoctorFinding] = []
        let environment = probe.environment

        // Configuration first: everything else reads it.
        let loader = ConfigLoader(environment: environment)
        let path = loader.configPath(flag: options.configPath)
        let loaded = loader.load(path: path, overrides: options.overrides)
        findings.append(contentsOf: configFindings(loaded))
        let config = loaded.config

        // Host.
        let host = HostChecks(probe: probe)
        let (cpuFinding, cpu) = host.cpu()
        findings.append(cpuFinding)
        let (memoryFinding, memory) = host.memory()
        findings.append(memoryFinding)
        let modelDirectory = config.models.compactMap(\.path).first.map { ($0 as NSString).deletingLastPathComponent }
            ?? ModelStore.directory(environment: environment)
        findings.append(host.disk(directory: modelDirectory))
        findings.append(host.numa())
        findings.append(host.openFiles())

        // GPU, CUDA, Python.
        let gpuModels = config.models.filter { $0.device == .gpu }
        let (gpuFindings, gpuState) = GPUChecks(probe: probe).run(
            needGPU: gpuModels.map(\.name), python: options.python, gpuPresets: gpuModels.compactMap(\.preset))
        findings.append(contentsOf: gpuFindings)

        // Network.
        let portOrigin = loaded.origins["server.port"]?.description ?? "default"
        findings.append(NetworkChecks(probe: probe).port(host: config.server.host, port: config.server.port, origin: portOrigin))
        if let tls = config.server.tls {
            for (key, file) in [("cert_file", tls.certificateFile), ("key_file", tls.keyFile)] + (tls.clientCAFile.map { [("client_ca_file", $0)] } ?? []) {
                let error = probe.openForReading(file)
                findings.append(error == 0
                    ? DoctorFinding("tls.\(key)", "TLS \(key)", .ok, found: "\(file) readable")
                    : DoctorFinding("tls.\(key)", "TLS \(key)", .fail, found: "\(file): \(String(cString: strerror(error)))",
                                    fix: "check server.tls.\(key); the server cannot start HTTPS without it"))
            }
        }

        // Models.
        let checks = ModelChecks(probe: probe, environment: environment)
        let context = ModelChecks.Context(memory: memory, cpu: cpu, gpu: gpuState)
        for (i, model) in config.models.enumerated() {
            findings.append(contentsOf: checks.check(model, index: i, context: context))
        }
        return DoctorReport(findings: findings)
    }

    func configFindings(_ loaded: LoadedConfig) -> [DoctorFinding] {
        if loaded.issues.isEmpty {
            let source = loaded.filePath.map { "\($0) is valid" } ?? "no config file (defaults, AUTOGLM_* and flags)"
            return [DoctorFinding("config", "config", .ok, found: "\(source); \(loaded.config.models.count) model(s): \(loaded.config.models.map(\.name).joined(separator: ", "))")]
        }
        return loaded.issues.map { issue in
            var fix: String?
            switch issue.kind {
            case .unknownKey:
                fix = issue.message.contains("did you mean") ? "correct the key" : "remove the key"
                if let allowed = issue.allowed { fix! += "; allowed keys: \(allowed)" }
            case .unknownEnvironment:
                fix = "unset it or correct the name"
            case .unreadableFile:
                fix = "pass --config with a readable file (start from config/autoglm.example.yaml)"
            case .syntax:
                fix = "fix the YAML at that line (indentation, a missing ':' or quote)"
            default:
                fix = issue.allowed.map { "use \($0)" } ?? "correct the value"
            }
            return DoctorFinding("config", "config", issue.severity == .error ? .fail : .warn, found: issue.description, fix: fix)
        }
    }
}
