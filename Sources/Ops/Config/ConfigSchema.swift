import Foundation

/// The type of one configuration value, with its allowed range: what validation checks and what
/// error messages list as allowed.
public indirect enum ConfigType: Sendable {
    case string
    /// A string matching a simple character set (names).
    case identifier
    case integer(ClosedRange<Int>)
    case boolean
    case choice([String])
    /// Bytes: an integer, or a number with a unit ("512MiB", "2GB").
    case size(ClosedRange<Int>)
    /// Seconds: a number, or a number with a unit ("250ms", "30s", "5m", "1h").
    case duration(ClosedRange<Double>)
    /// An http(s) URL.
    case url
    /// A file path; `~/` expands to the home directory.
    case path
    /// 64 hexadecimal digits.
    case sha256
    /// A URL path starting with "/".
    case urlPath
    case stringList
    case object([ConfigField])
    case list(ConfigType)

    /// What the allowed values are, for error messages.
    public var allowed: String {
        switch self {
        case .string: return "a string"
        case .identifier: return "a name of letters, digits, '.', '_' or '-'"
        case .integer(let r): return "an integer in \(r.lowerBound)...\(r.upperBound)"
        case .boolean: return "true or false"
        case .choice(let values): return values.joined(separator: ", ")
        case .size(let r): return "a size in bytes, e.g. 512MiB or 2GB (\(ByteFormat.gib(r.lowerBound))...\(ByteFormat.gib(r.upperBound)))"
        case .duration(let r): return "a duration, e.g. 30s, 5m, 1h or a number of seconds (\(ConfigType.format(seconds: r.lowerBound))...\(ConfigType.format(seconds: r.upperBound)))"
        case .url: return "an http:// or https:// URL"
        case .path: return "a file path"
        case .sha256: return "64 hexadecimal digits (the file's SHA-256)"
        case .urlPath: return "a path starting with '/'"
        case .stringList: return "a list of strings"
        case .object(let fields): return "a mapping with keys " + fields.map(\.name).joined(separator: ", ")
        case .list: return "a list"
        }
    }

    static func format(seconds: Double) -> String {
        if seconds >= 3600, seconds.truncatingRemainder(dividingBy: 3600) == 0 { return "\(Int(seconds / 3600))h" }
        if seconds >= 60, seconds.truncatingRemainder(dividingBy: 60) == 0 { return "\(Int(seconds / 60))m" }
        if seconds == seconds.rounded() { return "\(Int(seconds))s" }
        return "\(seconds)s"
    }
}

/// One key of the configuration file.
public struct ConfigField: Sendable {
    public var name: String
    public var type: ConfigType
    public var help: String
    public var defaultValue: ConfigValue?
    /// Masked by `config show`.
    public var secret: Bool
    public var required: Bool

    public init(_ name: String, _ type: ConfigType, default defaultValue: ConfigValue? = nil, secret: Bool = false,
                required: Bool = false, help: String) {
        self.name = name
        self.type = type
        self.help = help
        self.defaultValue = defaultValue
        self.secret = secret
        self.required = required
    }
}

/// The configuration schema of `autoglm serve` and the tools. config/autoglm.example.yaml documents it
/// key by key; `ConfigTests` checks that the example passes and covers every key.
public enum ConfigSchema {
    public static let selfTestFields: [ConfigField] = [
        ConfigField("prompt", .string, required: true, help: "The prompt (raw text, or with chat: true a user message)."),
        ConfigField("chat", .boolean, default: .boolean(false), help: "Render the prompt with the model's chat template as one user message."),
        ConfigField("expect", .string, help: "The generated text, exactly (greedy)."),
        ConfigField("expect_regex", .string, help: "A regular expression the generated text must match."),
        ConfigField("expect_tokens", .list(.integer(0 ... Int(Int32.max))), help: "The generated token ids (local models)."),
        ConfigField("max_tokens", .integer(1 ... 4096), default: .integer(16), help: "Tokens to generate."),
        ConfigField("max_latency", .duration(0.01 ... 3600), default: .number(60), help: "The prompt must be answered within this."),
    ]

    public static let modelFields: [ConfigField] = [
        ConfigField("name", .identifier, required: true, help: "Name clients send as `model`."),
        ConfigField("path", .path, help: "GGUF file served by the built-in CPU engine (or give url)."),
        ConfigField("url", .url, help: "Base URL of an upstream OpenAI-compatible server (vLLM, SGLang, llama.cpp)."),
        ConfigField("urls", .stringList, help: "More base URLs of the same upstream model: requests go to the one with fewest in flight; each has its own circuit breaker and health checks."),
        ConfigField("weights", .list(.integer(1 ... 1000)), help: "Relative share of requests of each endpoint (url, then urls, in order); default 1 each."),
        ConfigField("upstream_model", .string, help: "Model name sent to the upstream (default: name)."),
        ConfigField("fallback", .identifier, help: "Another served model that takes a request when no endpoint of this upstream model can."),
        ConfigField("api_key", .string, secret: true, help: "Bearer token for the upstream (prefer api_key_env: a key in a file leaks with it)."),
        ConfigField("api_key_env", .string, help: "The environment variable holding the upstream's bearer token (the key itself never appears in the configuration)."),
        ConfigField("sha256", .sha256, help: "Expected SHA-256 of the GGUF file; doctor checks it."),
        ConfigField("context_length", .integer(1 ... 1 << 20), help: "Tokens of context per sequence (default: the model's trained context)."),
        ConfigField("threads", .integer(1 ... 1024), help: "Engine threads (default: physical cores)."),
        ConfigField("kv_memory_budget", .size(1 << 20 ... 1 << 50), help: "Memory for the KV cache (default: context_length x max_sequences, at most 1 GiB)."),
        ConfigField("max_sequences", .integer(1 ... 4096), default: .integer(8), help: "Sequences decoded together."),
        ConfigField("kv_type", .choice(["f16", "bf16", "q8_0", "f32"]), default: .string("f16"),
                    help: "How the built-in engine's KV cache stores keys and values (f16: half of f32's memory, perplexity within 0.1%)."),
        ConfigField("device", .choice(["cpu", "gpu"]), default: .string("cpu"), help: "Where the model runs: the CPU engine, or a GPU (an upstream on this host)."),
        ConfigField("mmproj", .string, help: "For a GLM-4.1V / AutoGLM-Phone text GGUF: its vision tower, llama.cpp's mmproj GGUF (as llama-server's --mmproj). A Hugging Face directory brings its own."),
        ConfigField("pinned", .boolean, help: "A local model loaded at start and never unloaded (default: true for the first local model, false for the others, which load on their first request)."),
        ConfigField("version", .identifier, help: "This entry's version label; several entries may share a name with different versions (the first is stable; default: a hash of the entry's settings, so a changed entry is a new version on reload)."),
        ConfigField("canary_percent", .integer(0 ... 100), help: "A further version of a name starts as its canary with this share of requests (0: loaded, idle); on reload, a changed entry with it starts as the canary."),
        ConfigField("self_test", .list(.object(selfTestFields)), help: "Golden prompts a new version must pass before it takes any traffic (at start and on reload)."),
        ConfigField("preset", .choice(ModelPresets.names), help: "Planner preset for models given by url (sizes the GPU check)."),
        ConfigField("precision", .choice(Precision.allCases.map(\.rawValue)), help: "Weight precision of a preset model (default bf16)."),
    ]

    public static let root: [ConfigField] = [
        ConfigField("server", .object([
            ConfigField("host", .string, default: .string("127.0.0.1"), help: "Address to listen on; 0.0.0.0 for all interfaces."),
            ConfigField("port", .integer(1 ... 65535), default: .integer(8080), help: "TCP port."),
            ConfigField("api_keys", .stringList, default: .list([]), secret: true, help: "Accepted bearer tokens; empty = no authentication."),
            ConfigField("tls", .object([
                ConfigField("cert_file", .path, help: "PEM certificate chain."),
                ConfigField("key_file", .path, help: "PEM private key."),
                ConfigField("client_ca_file", .path, help: "PEM CA bundle for client certificates (mTLS): presented ones must verify; the /admin routes need one."),
            ]), help: "Serve HTTPS with these files (both or neither)."),
            ConfigField("timeouts", .object([
                ConfigField("request", .duration(1 ... 86400), default: .number(600), help: "Longest a request may take end to end."),
                ConfigField("first_token", .duration(1 ... 3600), default: .number(120), help: "Longest a request may wait in the queue before the engine starts on it; then it is aborted."),
                ConfigField("idle", .duration(1 ... 3600), default: .number(60), help: "Idle keep-alive connections close after this."),
            ]), help: "Time limits."),
            ConfigField("drain", .duration(0 ... 3600), default: .number(30), help: "On shutdown, finish in-flight requests for this long."),
            ConfigField("admin_api_keys", .stringList, default: .list([]), secret: true, help: "Bearer tokens for GET /admin/models and POST /admin/models/{name}/load|unload; empty = those routes are off."),
            ConfigField("max_loaded_models", .integer(0 ... 1024), default: .integer(0), help: "Local models loaded at once; loading another unloads the least recently used idle one (0 = no limit)."),
            ConfigField("keep_alive", .duration(0 ... 604_800), default: .number(0), help: "A local model idle this long is unloaded (not pinned ones); 0 = never."),
            ConfigField("models_memory_budget", .size(1 << 20 ... 1 << 50), help: "The loaded local models' planned memory together stays under this (default: only the machine's available memory is checked before a load)."),
            ConfigField("sse_heartbeat", .duration(0.1 ... 3600), default: .number(10), help: "A streamed response silent this long (a long prefill, images being encoded) gets an SSE comment line, so that clients and proxies keep the connection."),
            ConfigField("grpc", .object([
                ConfigField("port", .integer(0 ... 65535), default: .integer(0), help: "TCP port of the gRPC API (SGLang's scheduler protocol, KServe/Triton's inference protocol, grpc.health.v1, reflection) on server.host, with the same TLS, keys and limits as HTTP; 0 = off."),
            ]), help: "The gRPC API."),
        ]), help: "HTTP server."),
        ConfigField("models", .list(.object(modelFields)), help: "Models to serve (default: the default model)."),
        ConfigField("upstream", .object([
            ConfigField("connect_timeout", .duration(0.1 ... 600), default: .number(5), help: "TCP connect limit per attempt."),
            ConfigField("first_byte_timeout", .duration(1 ... 86400), default: .number(300), help: "Longest wait for an upstream's response head (its queue plus prefill); then 504 or the next endpoint."),
            ConfigField("read_timeout", .duration(1 ... 86400), default: .number(600), help: "Longest silence inside a response body."),
            ConfigField("retries", .integer(0 ... 10), default: .integer(2), help: "Further attempts (another endpoint first) while nothing has reached the client."),
            ConfigField("health_interval", .duration(0 ... 3600), default: .number(10), help: "Seconds between health checks (GET {url}/models); 0 turns them off."),
            ConfigField("failure_threshold", .integer(1 ... 1000), default: .integer(5), help: "Consecutive failures (connection errors, timeouts, 5xx; never 4xx) that open an endpoint's circuit."),
            ConfigField("open_duration", .duration(0 ... 3600), default: .number(30), help: "How long an open circuit sends nothing before one probe request."),
            ConfigField("balance", .choice(["least_outstanding", "round_robin", "power_of_two", "consistent_hash"]), default: .string("least_outstanding"),
                        help: "How a model's endpoints share requests: fewest in flight; in turn; the less busy of two at random; or by X-Session-Id, else the request's user, else its API key (the same key keeps its endpoint and prefix cache)."),
        ]), help: "How autoglm talks to upstream engines (models given by url)."),
        ConfigField("limits", .object([
            ConfigField("max_concurrent_requests", .integer(1 ... 100_000), default: .integer(64), help: "Requests in flight at once."),
            ConfigField("max_queue", .integer(0 ... 1_000_000), default: .integer(256), help: "Requests waiting; beyond it 429 with Retry-After."),
            ConfigField("max_prompt_tokens", .integer(1 ... 1 << 20), help: "Longest prompt accepted (default: the context length)."),
            ConfigField("max_tokens", .integer(1 ... 1 << 20), default: .integer(4096), help: "Most tokens generated per request."),
            ConfigField("requests_per_minute", .integer(0 ... 10_000_000), default: .integer(0), help: "Per API key; 0 = unlimited."),
            ConfigField("max_body_bytes", .size(1024 ... 1 << 30), default: .integer(16 << 20), help: "Largest request body read; larger ones get 413 before being read."),
            ConfigField("max_messages", .integer(1 ... 1_000_000), default: .integer(2048), help: "Entries of a chat's messages or a completion's prompt list (400 array_above_max_length)."),
            ConfigField("max_string_length", .integer(1 ... 1 << 30), default: .integer(1 << 20), help: "Characters of any one string in a request body, image URLs aside (400 string_above_max_length)."),
            ConfigField("max_images_per_request", .integer(0 ... 1000), default: .integer(10), help: "Images in one chat request (vision models)."),
            ConfigField("max_image_bytes", .size(1024 ... 1 << 30), default: .integer(20 << 20), help: "Encoded size of one image."),
            ConfigField("max_image_pixels", .integer(1 ... 1 << 32), default: .integer(50_000_000), help: "Pixels an image may declare; larger ones are refused before decoding (decompression bombs)."),
        ]), help: "Admission limits."),
        ConfigField("images", .object([
            ConfigField("local_directory", .string, help: "file:// image URLs are read only under this directory (default: refused)."),
            ConfigField("allowed_domains", .stringList, help: "Hosts http(s) image URLs may name, subdomains included (default: none, remote URLs refused)."),
            ConfigField("max_pixels", .integer(1 ... 1 << 32), help: "The image processor's pixel budget (both temporal copies counted, as vLLM's mm_processor_kwargs) and the most a request may ask for (default: the model's)."),
            ConfigField("min_pixels", .integer(1 ... 1 << 32), help: "The image processor's lower pixel bound (default: the model's)."),
        ]), help: "Images in chat messages (vision-language models)."),
        ConfigField("tracing", .object([
            ConfigField("enabled", .boolean, default: .boolean(false), help: "Export a span per request, with its queue, prefill and decode phases, by OTLP/HTTP (OpenTelemetry)."),
            ConfigField("endpoint", .url, default: .string("http://127.0.0.1:4318"), help: "The collector's OTLP/HTTP address; spans go to its /v1/traces."),
            ConfigField("service_name", .string, default: .string("autoglm"), help: "service.name of the exported spans."),
            ConfigField("sample_percent", .integer(0 ... 100), default: .integer(100), help: "Share of traces recorded, chosen by trace id (a caller's sampled flag is not followed)."),
        ]), help: "Distributed tracing (OpenTelemetry). The standard OTEL_* environment variables also apply."),
        ConfigField("logging", .object([
            ConfigField("level", .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]), default: .string("info"), help: "Lowest level logged."),
            ConfigField("format", .choice(["text", "json"]), default: .string("text"), help: "Line format."),
        ]), help: "Logs (to standard error)."),
        ConfigField("rollout", .object([
            ConfigField("state_file", .path, help: "Where the rollout state (stable and canary versions, weights, the last good version, rollbacks) is kept across restarts (default: none kept)."),
            ConfigField("on_reload", .choice(["switch", "canary"]), default: .string("switch"),
                        help: "A model changed by a reload: switch all traffic once the new version passes its self-test, or start it as a canary at the first step."),
            ConfigField("steps", .list(.integer(1 ... 100)), default: .list([.integer(5), .integer(25), .integer(50), .integer(100)]),
                        help: "Canary percentages, in order; at 100 the canary is promoted."),
            ConfigField("step_interval", .duration(0 ... 604_800), default: .number(300), help: "Each step lasts at least this long..."),
            ConfigField("step_min_requests", .integer(0 ... 100_000_000), default: .integer(50), help: "...and sees at least this many canary requests."),
            ConfigField("auto_promote", .boolean, default: .boolean(true), help: "Take the steps automatically (false: only `autoglm rollout promote` and set-weight move traffic)."),
            ConfigField("rollback_error_percent", .integer(1 ... 100), default: .integer(5), help: "A canary whose failed requests (5xx, timeouts, engine or upstream failures) pass this share of its window is rolled back."),
            ConfigField("rollback_window", .duration(1 ... 86400), default: .number(60), help: "The sliding window the rollback rule looks at."),
            ConfigField("rollback_min_requests", .integer(1 ... 1_000_000), default: .integer(20), help: "No verdict on fewer requests than this in the window."),
            ConfigField("rollback_p99_latency", .duration(0 ... 3600), default: .number(0), help: "Roll back when the canary's p99 end-to-end latency (non-streamed) passes this; 0: off."),
            ConfigField("rollback_p99_first_token", .duration(0 ... 3600), default: .number(0), help: "Roll back when the canary's p99 time to its response head (streamed: the first token) passes this; 0: off."),
            ConfigField("rollback_restarts", .integer(0 ... 1000), default: .integer(3), help: "Roll back an upstream canary whose endpoints' circuits open this many times in the window; 0: off."),
            ConfigField("watch_config", .boolean, default: .boolean(false), help: "Reload when the configuration file changes (besides SIGHUP and POST /admin/reload)."),
        ]), help: "Versions, canaries, reloads and automatic rollback."),
        ConfigField("auth", .object([
            ConfigField("keys_file", .path, help: "The key file `autoglm keys` writes (salted hashes only); keys in it authenticate, with their role, models and budgets. Re-read when it changes."),
            ConfigField("public_paths", .stringList, default: .list([.string("/health"), .string("/live"), .string("/ready")]),
                        help: "Paths served without credentials when auth is on (probes)."),
            ConfigField("public_metrics", .boolean, default: .boolean(false), help: "Serve /metrics without credentials (else it needs the viewer role)."),
            ConfigField("audit_log", .path, help: "Append one hash-chained JSON line per request on a protected route and per admin action (`autoglm audit verify FILE`)."),
            ConfigField("jwt", .list(.object(jwtIssuerFields)), help: "Trusted JWT issuers (HS256, RS256, ES256)."),
            ConfigField("roles", .object(Role.allNames.map { role in
                ConfigField(role, .object(budgetFields), help: "Budgets of each \(role) caller whose key sets none (per server process).")
            }), help: "Per-role budgets."),
        ]), help: "Authentication and authorization beyond server.api_keys: issued keys, JWT, roles, budgets, audit log."),
        ConfigField("metrics", .object([
            ConfigField("enabled", .boolean, default: .boolean(true), help: "Serve Prometheus metrics."),
            ConfigField("path", .urlPath, default: .string("/metrics"), help: "URL path of the metrics endpoint."),
            ConfigField("names", .choice(["autoglm", "vllm"]), default: .string("autoglm"),
                        help: "Series names: autoglm (autoglm_ + vLLM's names, valid Prometheus names) or vllm (vLLM's exact vllm: names, for dashboards written for vLLM)."),
        ]), help: "Prometheus metrics."),
    ]

    enum Role { static let allNames = ["admin", "user", "viewer"] }

    static let budgetFields: [ConfigField] = [
        ConfigField("requests_per_minute", .integer(1 ... 10_000_000), help: "Requests a minute."),
        ConfigField("tokens_per_minute", .integer(1 ... 1_000_000_000), help: "Prompt plus generated tokens a minute (charged at admission as prompt + max_tokens, corrected to the real usage)."),
        ConfigField("max_concurrent", .integer(1 ... 100_000), help: "Requests at once."),
    ]

    static let jwtIssuerFields: [ConfigField] = [
        ConfigField("issuer", .string, help: "The `iss` its tokens carry (required)."),
        ConfigField("audience", .stringList, help: "Accepted `aud` values; a token must name one (default: not checked)."),
        ConfigField("jwks_url", .url, help: "Its JWKS: fetched at start and again when a token names an unknown kid (at most every 30 s)."),
        ConfigField("jwks_file", .path, help: "Its JWKS on disk."),
        ConfigField("public_key_file", .path, help: "A PEM RSA (RS256) or P-256 (ES256) public key or certificate."),
        ConfigField("secret_env", .identifier, help: "The environment variable that holds its HS256 secret."),
        ConfigField("role_claim", .string, default: .string("role"), help: "The claim (dotted path) naming the role: a string or list of admin, user, viewer."),
        ConfigField("default_role", .choice(["admin", "user", "viewer"]), help: "The role of a token without one (default: refused)."),
        ConfigField("models_claim", .string, help: "A claim listing the model patterns the caller may use (default: all)."),
        ConfigField("leeway", .duration(0 ... 600), default: .number(30), help: "Clock difference allowed on exp and nbf."),
    ]

    /// Environment variables that are not configuration keys but are known to autoglm.
    public static let otherEnvironmentVariables: Set<String> = ["AUTOGLM_MODELS", "AUTOGLM_CONFIG", "AUTOGLM_MODEL"]

    /// Every scalar key outside lists, with its dotted path ("server.timeouts.request"): the keys
    /// environment variables and flags can set.
    public static var scalarPaths: [(path: String, field: ConfigField)] {
        var out: [(String, ConfigField)] = []
        func walk(_ fields: [ConfigField], prefix: String) {
            for f in fields {
                let path = prefix.isEmpty ? f.name : prefix + "." + f.name
                switch f.type {
                case .object(let children): walk(children, prefix: path)
                case .list: continue
                default: out.append((path, f))
                }
            }
        }
        walk(root, prefix: "")
        return out
    }

    /// The environment variable for a dotted key: "server.port" -> AUTOGLM_SERVER_PORT.
    public static func environmentName(for path: String) -> String {
        "AUTOGLM_" + path.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    /// The field at a dotted path outside lists.
    public static func field(at path: String) -> ConfigField? {
        scalarPaths.first { $0.path == path }?.field
    }
}
