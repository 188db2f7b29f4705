import Foundation
import Testing
@testable import Ops

@Suite("Configuration: file, environment, flags")
struct ConfigTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let examplePath = repository.appendingPathComponent("config/autoglm.example.yaml").path
    static let environment = ["HOME": "/home/test"]

    func load(_ yaml: String, environment: [String: String] = environment, overrides: [ConfigOverride] = []) -> LoadedConfig {
        ConfigLoader(environment: environment).load(text: yaml, path: "test.yaml", overrides: overrides)
    }

    @Test("the documented example config passes `config check` with no errors or warnings")
    func examplePasses() throws {
        let loaded = ConfigLoader(environment: Self.environment).load(path: Self.examplePath)
        #expect(loaded.issues.isEmpty, "\(loaded.issues)")
        #expect(loaded.config.models.map(\.name) == ["smollm2-135m-instruct", "autoglm-phone-9b"])
        #expect(loaded.config.models[0].path == "/home/test/.cache/autoglm/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        #expect(loaded.config.models[1].url == "http://127.0.0.1:8000/v1")
        #expect(loaded.config.server.timeouts.requestSeconds == 600)
    }

    @Test("the example documents every key of the schema")
    func exampleCoversSchema() throws {
        let text = try String(contentsOfFile: Self.examplePath, encoding: .utf8)
        func walk(_ fields: [ConfigField]) {
            for f in fields {
                #expect(text.contains("\(f.name):"), "example does not mention '\(f.name)'")
                switch f.type {
                case .object(let children), .list(.object(let children)): walk(children)
                default: break
                }
            }
        }
        walk(ConfigSchema.root)
    }

    @Test("docs/operations.md lists the environment variable of every key outside models")
    func docsListEnvironment() throws {
        let text = try String(contentsOfFile: Self.repository.appendingPathComponent("docs/operations.md").path, encoding: .utf8)
        for (path, _) in ConfigSchema.scalarPaths {
            #expect(text.contains(ConfigSchema.environmentName(for: path)), "docs miss \(ConfigSchema.environmentName(for: path))")
        }
    }

    @Test("public paths and the metrics path: the router's spelling only, never an admin route")
    func accessPaths() {
        for (yaml, key) in [("auth: {public_paths: [/health, /admin/models]}", "auth.public_paths[1]"),
                            ("auth: {public_paths: [/health/]}", "auth.public_paths[0]"),
                            ("auth: {public_paths: [//ready]}", "auth.public_paths[0]"),
                            ("metrics: {path: /metrics/}", "metrics.path"),
                            ("metrics: {path: /admin/metrics}", "metrics.path")] {
            let loaded = load(yaml)
            #expect(loaded.errors.contains { $0.key == key }, "\(yaml): \(loaded.errors.map(\.key))")
        }
        #expect(load("auth: {public_paths: [/health, /ready, /v1/models]}\nmetrics: {path: /internal/metrics}").errors.isEmpty)
    }

    @Test("--model given more than once serves each model, in order; the multi-model keys are read")
    func severalModels() {
        let yaml = """
            server: {max_loaded_models: 2, keep_alive: 5m, admin_api_keys: [adm], models_memory_budget: 8GiB}
            models:
              - {name: a, path: /m/a.gguf}
              - {name: b, path: /m/b.gguf, pinned: true}
              - {name: c, url: "http://gpu:8000/v1"}
            """
        let flags = ["c", "/m/d.gguf", "a"].map { ConfigOverride(key: "model", value: $0, flag: "--model") }
        let loaded = load(yaml, overrides: flags)
        #expect(loaded.errors.isEmpty, "\(loaded.errors)")
        #expect(loaded.config.models.map(\.name) == ["c", "d", "a"])
        #expect(loaded.config.models[1].path == "/m/d.gguf")
        let plain = load(yaml)
        #expect(plain.config.models.map(\.pinned) == [nil, true, nil])
        #expect(plain.config.server.maxLoadedModels == 2 && plain.config.server.keepAliveSeconds == 300)
        #expect(plain.config.server.adminAPIKeys == ["adm"] && plain.config.server.modelsMemoryBudgetBytes == 8 << 30)
        // One bad name among several is an error naming it; the others are not silently served alone.
        let bad = load(yaml, overrides: [ConfigOverride(key: "model", value: "a", flag: "--model"),
                                         ConfigOverride(key: "model", value: "nope", flag: "--model")])
        #expect(bad.errors.contains { $0.message.contains("'nope'") })
    }

    @Test("server.grpc.port: read, off by default, and never server.port")
    func grpcPort() throws {
        #expect(load("server:\n  port: 9000\n").config.server.grpcPort == 0)
        let on = load("server:\n  port: 9000\n  grpc:\n    port: 9001\n")
        #expect(on.errors.isEmpty)
        #expect(on.config.server.grpcPort == 9001)
        let clash = load("server:\n  port: 9000\n  grpc:\n    port: 9000\n")
        let issue = try #require(clash.errors.first)
        #expect(issue.key == "server.grpc.port")
        #expect(issue.message.contains("its own port"))
    }

    @Test("a typo is an error naming the key, file:line:column, a suggestion and the allowed keys")
    func typo() throws {
        let loaded = load("""
            server:
              host: 127.0.0.1
              prot: 9000
            """)
        let issue = try #require(loaded.errors.first)
        #expect(loaded.errors.count == 1)
        #expect(issue.kind == .unknownKey)
        #expect(issue.key == "server.prot")
        #expect(issue.origin == .file(path: "test.yaml", line: 3, column: 3))
        #expect(issue.message.contains("did you mean 'port'?"))
        #expect(issue.allowed == "host, port, api_keys, tls, timeouts, drain, admin_api_keys, max_loaded_models, keep_alive, models_memory_budget, sse_heartbeat, grpc")
        #expect(issue.description == "test.yaml:3:3: error: server.prot: unknown key 'prot' in server; did you mean 'port'?; allowed: host, port, api_keys, tls, timeouts, drain, admin_api_keys, max_loaded_models, keep_alive, models_memory_budget, sse_heartbeat, grpc")
    }

    @Test("wrong types, out-of-range values and bad choices name the key, line and allowed values")
    func badValues() {
        let loaded = load("""
            server:
              port: "8080"
              drain: forever
            models:
              - name: m
                path: /m.gguf
                max_sequences: 0
                kv_memory_budget: lots
                device: tpu
                sha256: abc
            logging:
              level: verbose
            metrics:
              enabled: 1
              path: metrics
            """)
        let byKey = Dictionary(grouping: loaded.errors, by: \.key)
        #expect(byKey["server.port"]?.first?.kind == .wrongType)
        #expect(byKey["server.port"]?.first?.origin == .file(path: "test.yaml", line: 2, column: 9))
        #expect(byKey["server.port"]?.first?.allowed == "an integer in 1...65535")
        #expect(byKey["server.drain"]?.first?.kind == .wrongType)
        #expect(byKey["models[0].max_sequences"]?.first?.kind == .outOfRange)
        #expect(byKey["models[0].max_sequences"]?.first?.origin == .file(path: "test.yaml", line: 7, column: 20))
        #expect(byKey["models[0].kv_memory_budget"]?.first?.kind == .wrongType)
        #expect(byKey["models[0].device"]?.first?.allowed == "cpu, gpu")
        #expect(byKey["models[0].sha256"]?.first?.kind == .invalidValue)
        #expect(byKey["logging.level"]?.first?.allowed == "trace, debug, info, notice, warning, error, critical")
        #expect(byKey["metrics.enabled"]?.first?.kind == .wrongType)
        #expect(byKey["metrics.path"]?.first?.kind == .invalidValue)
        #expect(loaded.errors.count == 9)
    }

    @Test("YAML syntax errors and duplicate keys carry the line")
    func syntax() throws {
        let broken = load("server:\n  port: 80\n port: 2\n")
        let issue = try #require(broken.errors.first)
        #expect(issue.kind == .syntax)
        #expect(issue.origin == .file(path: "test.yaml", line: 3, column: 2))
        let duplicate = load("server:\n  port: 80\n  port: 81\n")
        #expect(duplicate.errors.first?.message == "duplicate key 'port': each key may appear once")
        #expect(duplicate.errors.first?.origin == .file(path: "test.yaml", line: 2, column: 3))
    }

    @Test("precedence: flags over environment over file over defaults, each with its origin")
    func precedence() {
        let file = "server:\n  port: 1000\n"
        #expect(load("").config.server.port == 8080)
        #expect(load(file).config.server.port == 1000)
        #expect(load(file).origins["server.port"] == .file(path: "test.yaml", line: 2, column: 3))
        let env = ["HOME": "/h", "AUTOGLM_SERVER_PORT": "2000"]
        #expect(load(file, environment: env).config.server.port == 2000)
        #expect(load(file, environment: env).origins["server.port"] == .environment("AUTOGLM_SERVER_PORT"))
        let flagged = load(file, environment: env, overrides: [ConfigOverride(key: "server.port", value: "3000", flag: "--port")])
        #expect(flagged.config.server.port == 3000)
        #expect(flagged.origins["server.port"] == .flag("--port"))
        let nested = load("", environment: ["AUTOGLM_SERVER_TIMEOUTS_REQUEST": "90s", "AUTOGLM_SERVER_API_KEYS": "a, b"])
        #expect(nested.config.server.timeouts.requestSeconds == 90)
        #expect(nested.config.server.apiKeys == ["a", "b"])
    }

    @Test("environment and flag values are validated like file values")
    func environmentErrors() throws {
        let loaded = load("", environment: ["AUTOGLM_SERVER_PORT": "http", "AUTOGLM_SEVRER_HOST": "x"],
                          overrides: [ConfigOverride(key: "logging.level", value: "loud", flag: "--log-level")])
        let port = try #require(loaded.errors.first { $0.key == "server.port" })
        #expect(port.origin == .environment("AUTOGLM_SERVER_PORT"))
        #expect(port.description == "environment AUTOGLM_SERVER_PORT: error: server.port: 'http' is text, expected an integer; allowed: an integer in 1...65535")
        let level = try #require(loaded.errors.first { $0.key == "logging.level" })
        #expect(level.origin == .flag("--log-level"))
        let unknown = try #require(loaded.warnings.first { $0.kind == .unknownEnvironment })
        #expect(unknown.message.contains("did you mean AUTOGLM_SERVER_HOST?"))
    }

    @Test("versions: a name may repeat with distinct version labels; the self-tests and the rollout section are read; a repeated label or a mix of local and upstream versions is an error")
    func versions() {
        let good = load("""
            models:
              - name: glm
                version: v1
                path: /a.gguf
                self_test:
                  - prompt: "2+2="
                    expect: "4"
                    max_tokens: 2
                    max_latency: 5s
                  - prompt: hi
                    chat: true
                    expect_regex: "^Hello"
                    expect_tokens: [1, 2]
              - name: glm
                version: v2
                path: /b.gguf
                canary_percent: 10
            rollout:
              state_file: /var/lib/autoglm/rollout.json
              on_reload: canary
              steps: [10, 50, 100]
              step_interval: 2m
              rollback_error_percent: 2
              rollback_p99_latency: 1500ms
            """)
        #expect(good.errors.isEmpty, "\(good.errors)")
        let m = good.config.models
        #expect(m.map(\.version) == ["v1", "v2"] && m[1].canaryPercent == 10 && m[0].canaryPercent == nil)
        #expect(m[0].selfTest.count == 2 && m[0].selfTest[0].expect == "4" && m[0].selfTest[0].maxTokens == 2 && m[0].selfTest[0].maxLatencySeconds == 5)
        #expect(m[0].selfTest[1].chat && m[0].selfTest[1].expectRegex == "^Hello" && m[0].selfTest[1].expectTokens == [1, 2] && m[0].selfTest[1].maxTokens == 16)
        let r = good.config.rollout
        #expect(r.stateFile == "/var/lib/autoglm/rollout.json" && r.onReload == "canary" && r.steps == [10, 50, 100] && r.stepIntervalSeconds == 120)
        #expect(r.rollbackErrorPercent == 2 && r.rollbackP99LatencySeconds == 1.5 && r.rollbackMinRequests == 20 && !r.watchConfig)
        let bad = load("""
            models:
              - name: glm
                version: v1
                path: /a.gguf
              - name: glm
                version: v1
                path: /b.gguf
              - name: glm
                version: v3
                url: http://h/v1
              - name: x
                path: /x.gguf
                self_test:
                  - expect: "4"
            """)
        let messages = bad.errors.map(\.description)
        #expect(messages.contains { $0.contains("models[1].version") && $0.contains("given twice") })
        #expect(messages.contains { $0.contains("models[2]") && $0.contains("mix a local file and an upstream") })
        #expect(messages.contains { $0.contains("models[3].self_test[0].prompt") && $0.contains("required") })
    }

    @Test("cross-field checks: path or url, unique names, both TLS files, open bind without keys")
    func crossField() {
        let loaded = load("""
            server:
              host: 0.0.0.0
              tls:
                cert_file: /c.pem
            models:
              - name: a
                path: /a.gguf
                url: http://h/v1
              - name: a
                path: /b.gguf
              - name: c
            """)
        let messages = loaded.issues.map(\.description)
        #expect(messages.contains("test.yaml:6:5: error: models[0]: give either path (local GGUF) or url (upstream), not both"))
        #expect(messages.contains("test.yaml:9:5: error: models[1].name: name 'a' is already used by models[0]; names must be unique, or each entry of the name needs its own version"))
        #expect(messages.contains("test.yaml:11:5: error: models[2]: needs path (a GGUF file) or url (an upstream server)"))
        #expect(messages.contains("test.yaml:3:3: error: server.tls.key_file: TLS needs both cert_file and key_file"))
        #expect(loaded.warnings.contains { $0.key == "server.host" })
    }

    @Test("api_key_env: the upstream key comes from the environment; unset, or beside api_key, is an error")
    func apiKeyFromEnvironment() {
        let yaml = """
            models:
              - name: gpu
                url: http://gpu-node:8000/v1
                api_key_env: GPU_POOL_KEY
            """
        var env = Self.environment
        env["GPU_POOL_KEY"] = "sk-from-env"
        let loaded = load(yaml, environment: env)
        #expect(loaded.issues.filter { $0.severity == .error }.isEmpty)
        #expect(loaded.config.models[0].apiKey == "sk-from-env")
        let unset = load(yaml)
        #expect(unset.issues.contains { $0.key == "models[0].api_key_env" && $0.description.contains("GPU_POOL_KEY is not set") })
        let both = load(yaml + "\n    api_key: sk-inline", environment: env)
        #expect(both.issues.contains { $0.key == "models[0].api_key_env" && $0.description.contains("not both") })
    }

    @Test("--model picks a configured model, a path, a URL or a local name; an unknown name is an error")
    func modelOverride() throws {
        let file = """
            models:
              - name: a
                path: /a.gguf
                context_length: 2048
              - name: b
                url: http://h/v1
            """
        #expect(load(file, overrides: [.init(key: "model", value: "b", flag: "--model")]).config.models.map(\.name) == ["b"])
        let path = load(file, overrides: [.init(key: "model", value: "/srv/m/Other-7B.Q4_K.gguf", flag: "--model")]).config.models
        #expect(path == [AutoGLMConfig.Model(name: "Other-7B.Q4_K", path: "/srv/m/Other-7B.Q4_K.gguf", contextLength: 2048)])
        let url = load("", overrides: [.init(key: "model", value: "https://up.example/v1", flag: "--model")]).config.models
        #expect(url.first?.url == "https://up.example/v1")
        let byName = load("", environment: ["HOME": "/h", "AUTOGLM_MODEL": "smollm2-135m-instruct"]).config.models
        #expect(byName.first?.path == "/h/.cache/autoglm/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let unknown = load(file, environment: ["HOME": "/h", "AUTOGLM_MODELS": "/nonexistent"],
                           overrides: [.init(key: "model", value: "glm-5", flag: "--model")])
        let issue = try #require(unknown.errors.first)
        #expect(issue.origin == .flag("--model"))
        #expect(issue.allowed == "a, b")
    }

    @Test("no models configured means the default model")
    func defaultModel() {
        let config = load("").config
        #expect(config.models == [AutoGLMConfig.Model(name: "smollm2-135m-instruct", path: "/home/test/.cache/autoglm/models/SmolLM2-135M-Instruct.Q4_1.gguf")])
    }

    @Test("config show masks secrets in YAML and JSON, and says where each value came from")
    func showMasksSecrets() {
        let loaded = load("""
            server:
              api_keys: [sk-live-123456, sk-live-abcdef]
            models:
              - name: up
                url: https://h/v1
                api_key: sk-upstream-999
            """, environment: ["HOME": "/h", "AUTOGLM_SERVER_PORT": "9000"])
        let yaml = ConfigRenderer.yaml(loaded)
        let json = ConfigRenderer.json(loaded)
        for secret in ["sk-live-123456", "sk-live-abcdef", "sk-upstream-999"] {
            #expect(!yaml.contains(secret))
            #expect(!json.contains(secret))
        }
        #expect(yaml.contains("api_keys: [\"********\", \"********\"]  # test.yaml:2:3"))
        #expect(yaml.contains("api_key: \"********\"  # test.yaml:6:5"))
        #expect(yaml.contains("port: 9000  # environment AUTOGLM_SERVER_PORT"))
        #expect(yaml.contains("host: 127.0.0.1  # default"))
        // What `show` prints loads again to the same configuration (apart from the masked secrets).
        let again = load(yaml)
        #expect(again.errors.isEmpty, "\(again.errors)")
        #expect(again.config.server == AutoGLMConfig.Server(host: "127.0.0.1", port: 9000, apiKeys: ["********", "********"], tls: nil,
                                                           timeouts: .init(requestSeconds: 600, firstTokenSeconds: 120, idleSeconds: 60),
                                                           drainSeconds: 30))
    }

    @Test("a missing file is an error that says so")
    func missingFile() throws {
        let loaded = ConfigLoader(environment: [:]).load(path: "/nonexistent/autoglm.yaml")
        let issue = try #require(loaded.errors.first)
        #expect(issue.kind == .unreadableFile)
        #expect(issue.message.contains("not found"))
    }
}
