import Foundation
import Yams

/// A flag that overrides a configuration key (`--port 9000` sets `server.port`).
public struct ConfigOverride: Sendable, Equatable {
    /// Dotted key path, or `model` for the model override (a name, a GGUF path or a URL).
    public var key: String
    public var value: String
    /// How the user spelled it, for messages ("--port").
    public var flag: String

    public init(key: String, value: String, flag: String) {
        self.key = key
        self.value = value
        self.flag = flag
    }
}

/// A configuration after loading: the typed value, the merged document, where each value came from and
/// every problem found.
public struct LoadedConfig: Sendable {
    public var config: AutoGLMConfig
    /// What was set explicitly (file, environment, flags), without defaults.
    public var document: [String: ConfigValue]
    /// Origin of each explicitly set key path ("server.port", "models[0].path").
    public var origins: [String: ConfigOrigin]
    public var issues: [ConfigIssue]
    /// The file that was read, if any.
    public var filePath: String?

    public var errors: [ConfigIssue] { issues.filter { $0.severity == .error } }
    public var warnings: [ConfigIssue] { issues.filter { $0.severity == .warning } }
}

/// Loads configuration with the precedence flags > environment (`AUTOGLM_*`) > file > defaults, and
/// validates every value against `ConfigSchema`, collecting all problems rather than stopping at the first.
public struct ConfigLoader: Sendable {
    public var environment: [String: String]

    public init(environment: [String: String]) {
        self.environment = environment
    }

    /// The file to read: `--config`, else `$AUTOGLM_CONFIG`, else none (defaults, environment and flags only).
    public func configPath(flag: String?) -> String? {
        if let flag, !flag.isEmpty { return flag }
        if let env = environment["AUTOGLM_CONFIG"], !env.isEmpty { return env }
        return nil
    }

    /// Loads from a file path (read here) plus environment and flags.
    public func load(path: String?, overrides: [ConfigOverride] = []) -> LoadedConfig {
        guard let path else { return load(text: nil, path: nil, overrides: overrides) }
        let expanded = Self.expandHome(path, environment: environment)
        guard let data = FileManager.default.contents(atPath: expanded) else {
            let exists = FileManager.default.fileExists(atPath: expanded)
            let issue = ConfigIssue(.error, .unreadableFile, key: "", origin: .file(path: path, line: 0, column: 0),
                                    message: exists ? "cannot read the configuration file (permission denied?)"
                                        : "configuration file not found; check the path, or start from config/autoglm.example.yaml")
            var loaded = load(text: nil, path: nil, overrides: overrides)
            loaded.issues.insert(issue, at: 0)
            loaded.filePath = path
            return loaded
        }
        return load(text: String(decoding: data, as: UTF8.self), path: path, overrides: overrides)
    }

    /// Loads from YAML text (nil: no file) plus environment and flags.
    public func load(text: String?, path: String?, overrides: [ConfigOverride] = []) -> LoadedConfig {
        var state = LoadState(path: path ?? "<config>", environment: environment)
        if let text { state.parseFile(text) }
        state.applyEnvironment()
        for o in overrides where o.key != "model" { state.applyOverride(o) }
        // The model override: the flag wins over AUTOGLM_MODEL; the flag repeated serves each model given.
        let modelFlags = overrides.filter { $0.key == "model" }
        if !modelFlags.isEmpty {
            let configured = state.document["models"]
            var chosen: [ConfigValue] = []
            for flag in modelFlags {
                state.document["models"] = configured
                let issues = state.issues.count
                state.overrideModel(flag.value, origin: .flag(flag.flag))
                if state.issues.count == issues, let one = state.document["models"]?.listValue?.first { chosen.append(one) }
            }
            if chosen.count > 1 {
                state.document["models"] = .list(chosen)
                for i in chosen.indices { state.origins["models[\(i)]"] = .flag(modelFlags[0].flag) }
            } else if let only = chosen.first {
                state.document["models"] = .list([only])
            }
        } else if let env = environment["AUTOGLM_MODEL"], !env.isEmpty {
            state.overrideModel(env, origin: .environment("AUTOGLM_MODEL"))
        }
        state.crossCheck()
        let config = AutoGLMConfig(document: state.document, environment: environment)
        return LoadedConfig(config: config, document: state.document, origins: state.origins, issues: state.issues, filePath: path)
    }

    static func expandHome(_ path: String, environment: [String: String]) -> String {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return home + path.dropFirst()
    }
}

/// The mutable state of one load.
struct LoadState {
    let path: String
    let environment: [String: String]
    var document: [String: ConfigValue] = [:]
    var origins: [String: ConfigOrigin] = [:]
    var issues: [ConfigIssue] = []

    init(path: String, environment: [String: String]) {
        self.path = path
        self.environment = environment
    }

    // MARK: file

    mutating func parseFile(_ text: String) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            issues.append(Self.syntaxIssue(error, path: path))
            return
        } catch {
            issues.append(ConfigIssue(.error, .syntax, key: "", origin: .file(path: path, line: 0, column: 0), message: "\(error)"))
            return
        }
        guard let root else { return }  // An empty file: all defaults.
        if case .scalar(let s) = root, s.string.isEmpty { return }
        guard case .mapping = root else {
            issues.append(ConfigIssue(.error, .wrongType, key: "", origin: origin(root),
                                      message: "the file's top level must be a mapping of sections",
                                      allowed: ConfigSchema.root.map(\.name).joined(separator: ", ")))
            return
        }
        if let value = validate(root, type: .object(ConfigSchema.root), key: ""), let object = value.objectValue {
            document = object
        }
    }

    static func syntaxIssue(_ error: YamlError, path: String) -> ConfigIssue {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let where_ = context.map { " (\($0.text))" } ?? ""
            return ConfigIssue(.error, .syntax, key: "", origin: .file(path: path, line: mark.line, column: mark.column),
                               message: "YAML syntax: \(problem)\(where_)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigIssue(.error, .syntax, key: "", origin: .file(path: path, line: context.mark.line, column: context.mark.column),
                               message: "duplicate key\(duplicates.count == 1 ? "" : "s") \(duplicates.map { "'\($0)'" }.joined(separator: ", ")): each key may appear once")
        default:
            return ConfigIssue(.error, .syntax, key: "", origin: .file(path: path, line: 0, column: 0), message: "YAML: \(error)")
        }
    }

    func origin(_ node: Node) -> ConfigOrigin {
        .file(path: path, line: node.mark?.line ?? 0, column: node.mark?.column ?? 0)
    }

    /// Validates a YAML node against a type; records issues and returns the value when valid.
    mutating func validate(_ node: Node, type: ConfigType, key: String) -> ConfigValue? {
        let where_ = origin(node)
        switch type {
        case .object(let fields):
            guard case .mapping(let mapping) = node else {
                if node.null != nil { return nil }
                issues.append(ConfigIssue(.error, .wrongType, key: key, origin: where_,
                                          message: "expected a mapping, found \(Self.describe(node))", allowed: type.allowed))
                return nil
            }
            origins[key] = where_
            var object: [String: ConfigValue] = [:]
            for (k, v) in mapping {
                guard let name = k.string else { continue }
                let childKey = key.isEmpty ? name : "\(key).\(name)"
                guard let field = fields.first(where: { $0.name == name }) else {
                    let names = fields.map(\.name)
                    var message = "unknown key '\(name)'" + (key.isEmpty ? "" : " in \(key)")
                    if let guess = Suggest.closest(to: name, in: names) { message += "; did you mean '\(guess)'?" }
                    issues.append(ConfigIssue(.error, .unknownKey, key: childKey, origin: origin(k), message: message,
                                              allowed: names.joined(separator: ", ")))
                    continue
                }
                if let value = validate(v, type: field.type, key: childKey) {
                    object[name] = value
                    origins[childKey] = origin(k)
                }
            }
            for field in fields where field.required && object[field.name] == nil && !issues.contains(where: { $0.key == "\(key).\(field.name)" }) {
                issues.append(ConfigIssue(.error, .missingKey, key: key.isEmpty ? field.name : "\(key).\(field.name)", origin: where_,
                                          message: "required key '\(field.name)' is missing", allowed: field.type.allowed))
            }
            return .object(object)
        case .list(let element):
            guard case .sequence(let sequence) = node else {
                if node.null != nil { return nil }
                issues.append(ConfigIssue(.error, .wrongType, key: key, origin: where_,
                                          message: "expected a list (lines starting with '- '), found \(Self.describe(node))"))
                return nil
            }
            var values: [ConfigValue] = []
            for (i, item) in sequence.enumerated() {
                let itemKey = "\(key)[\(i)]"
                origins[itemKey] = origin(item)
                values.append(validate(item, type: element, key: itemKey) ?? .object([:]))
            }
            return .list(values)
        case .stringList:
            guard case .sequence(let sequence) = node else {
                if node.null != nil { return nil }
                issues.append(ConfigIssue(.error, .wrongType, key: key, origin: where_,
                                          message: "expected a list of strings, found \(Self.describe(node))", allowed: type.allowed))
                return nil
            }
            var values: [ConfigValue] = []
            for item in sequence {
                guard case .scalar = item, let s = item.string, item.tag.rawValue != Tag.Name.null.rawValue else {
                    issues.append(ConfigIssue(.error, .wrongType, key: key, origin: origin(item),
                                              message: "list entries must be strings, found \(Self.describe(item))"))
                    continue
                }
                values.append(.string(s))
            }
            return .list(values)
        default:
            guard case .scalar(let scalar) = node else {
                issues.append(ConfigIssue(.error, .wrongType, key: key, origin: where_,
                                          message: "expected a single value, found \(Self.describe(node))", allowed: type.allowed))
                return nil
            }
            let kind = ScalarKind(Tag.Name(rawValue: node.tag.rawValue), quoted: scalar.style == .singleQuoted || scalar.style == .doubleQuoted)
            if kind == .null {
                issues.append(ConfigIssue(.error, .invalidValue, key: key, origin: where_,
                                          message: "has no value; give one, or remove the key to use the default", allowed: type.allowed))
                return nil
            }
            switch ScalarParser.parse(scalar.string, kind: kind, type: type, environment: environment) {
            case .success(let value): return value
            case .failure(let failure):
                issues.append(ConfigIssue(.error, failure.kind, key: key, origin: where_, message: failure.message, allowed: type.allowed))
                return nil
            }
        }
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let s):
            if node.tag.rawValue == Tag.Name.null.rawValue { return "nothing" }
            return "'\(s.string)'"
        }
    }

    // MARK: environment and flags

    mutating func applyEnvironment() {
        let known = Dictionary(uniqueKeysWithValues: ConfigSchema.scalarPaths.map { (ConfigSchema.environmentName(for: $0.path), $0) })
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix("AUTOGLM_") {
            if ConfigSchema.otherEnvironmentVariables.contains(name) { continue }
            guard let entry = known[name] else {
                var message = "unknown environment variable \(name) is ignored"
                let candidates = Array(known.keys) + Array(ConfigSchema.otherEnvironmentVariables)
                if let guess = Suggest.closest(to: name, in: candidates) { message += "; did you mean \(guess)?" }
                issues.append(ConfigIssue(.warning, .unknownEnvironment, key: "", origin: .environment(name), message: message))
                continue
            }
            set(entry.path, text: value, field: entry.field, origin: .environment(name))
        }
    }

    mutating func applyOverride(_ o: ConfigOverride) {
        guard let field = ConfigSchema.field(at: o.key) else {
            issues.append(ConfigIssue(.error, .unknownKey, key: o.key, origin: .flag(o.flag), message: "not a configuration key"))
            return
        }
        set(o.key, text: o.value, field: field, origin: .flag(o.flag))
    }

    mutating func set(_ path: String, text: String, field: ConfigField, origin: ConfigOrigin) {
        switch ScalarParser.parse(text, kind: nil, type: field.type, environment: environment) {
        case .failure(let failure):
            issues.append(ConfigIssue(.error, failure.kind, key: path, origin: origin, message: failure.message, allowed: field.type.allowed))
        case .success(let value):
            document = Self.setting(value, at: path.split(separator: ".").map(String.init), in: document)
            origins[path] = origin
        }
    }

    static func setting(_ value: ConfigValue, at path: [String], in object: [String: ConfigValue]) -> [String: ConfigValue] {
        var object = object
        guard let head = path.first else { return object }
        if path.count == 1 {
            object[head] = value
        } else {
            object[head] = .object(setting(value, at: Array(path.dropFirst()), in: object[head]?.objectValue ?? [:]))
        }
        return object
    }

    /// `--model` / `AUTOGLM_MODEL`: a configured model's name keeps only that model; a URL or a GGUF path
    /// replaces the list with one model that keeps the first model's serving settings; a bare name is
    /// looked up in the model directory.
    mutating func overrideModel(_ value: String, origin: ConfigOrigin) {
        let models = document["models"]?.listValue?.compactMap(\.objectValue) ?? []
        if let match = models.first(where: { $0["name"]?.stringValue == value }) {
            document["models"] = .list([.object(match)])
            return
        }
        var model: [String: ConfigValue] = [:]
        if let first = models.first {
            for key in ["context_length", "threads", "kv_memory_budget", "max_sequences", "device"] { model[key] = first[key] }
        }
        let lower = value.lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            guard case .success(let url) = ScalarParser.parse(value, kind: nil, type: .url, environment: environment) else {
                issues.append(ConfigIssue(.error, .invalidValue, key: "models", origin: origin, message: "'\(value)' is not a valid URL", allowed: ConfigType.url.allowed))
                return
            }
            model["name"] = .string(URL(string: value)?.host ?? "upstream")
            model["url"] = url
        } else if value.contains("/") || lower.hasSuffix(".gguf") {
            let expanded = ConfigLoader.expandHome(value, environment: environment)
            model["name"] = .string(Suggest.identifier(from: URL(fileURLWithPath: expanded).deletingPathExtension().lastPathComponent))
            model["path"] = .string(expanded)
        } else if let path = ModelStore.resolve(name: value, environment: environment) {
            model["name"] = .string(value)
            model["path"] = .string(path)
        } else {
            let names = models.compactMap { $0["name"]?.stringValue } + ModelStore.localNames(environment: environment)
            issues.append(ConfigIssue(.error, .invalidValue, key: "models", origin: origin,
                                      message: "'\(value)' is not a configured model, a GGUF path, a URL, or a model in \(ModelStore.directory(environment: environment)); `autoglm models pull \(value)` fetches known models",
                                      allowed: names.isEmpty ? nil : names.joined(separator: ", ")))
            return
        }
        document["models"] = .list([.object(model)])
        origins["models[0]"] = origin
        for key in model.keys { origins["models[0].\(key)"] = origin }
    }

    // MARK: cross-field checks

    mutating func crossCheck() {
        let models = document["models"]?.listValue ?? []
        var seen: [String: Int] = [:]
        for (i, value) in models.enumerated() {
            guard let m = value.objectValue else { continue }
            let key = "models[\(i)]"
            let where_ = origins[key] ?? .file(path: path, line: 0, column: 0)
            let hasPath = m["path"] != nil, hasURL = m["url"] != nil || !(m["urls"]?.listValue ?? []).isEmpty
            for (j, item) in (m["urls"]?.listValue ?? []).enumerated() {
                let text = item.stringValue ?? ""
                if case .failure = ScalarParser.parse(text, kind: nil, type: .url, environment: environment) {
                    issues.append(ConfigIssue(.error, .invalidValue, key: "\(key).urls[\(j)]", origin: origins["\(key).urls"] ?? where_,
                                              message: "'\(text)' is not an http:// or https:// URL", allowed: ConfigType.url.allowed))
                }
            }
            if let weights = m["weights"]?.listValue {
                let endpoints = (m["url"] != nil ? 1 : 0) + (m["urls"]?.listValue ?? []).count
                if weights.count != endpoints {
                    issues.append(ConfigIssue(.error, .conflict, key: "\(key).weights", origin: origins["\(key).weights"] ?? where_,
                                              message: "has \(weights.count) entries for \(endpoints) endpoints (url, then urls): give one weight per endpoint"))
                }
            }
            if let variable = m["api_key_env"]?.stringValue {
                if m["api_key"] != nil {
                    issues.append(ConfigIssue(.error, .conflict, key: "\(key).api_key_env", origin: origins["\(key).api_key_env"] ?? where_,
                                              message: "give either api_key or api_key_env, not both"))
                } else if (environment[variable] ?? "").isEmpty {
                    issues.append(ConfigIssue(.error, .missingKey, key: "\(key).api_key_env", origin: origins["\(key).api_key_env"] ?? where_,
                                              message: "the environment variable \(variable) is not set (or empty): export it with the upstream's API key"))
                }
            }
            if let fallback = m["fallback"]?.stringValue {
                let names = models.compactMap { $0.objectValue?["name"]?.stringValue }
                if fallback == m["name"]?.stringValue || !names.contains(fallback) {
                    issues.append(ConfigIssue(.error, .invalidValue, key: "\(key).fallback", origin: origins["\(key).fallback"] ?? where_,
                                              message: "fallback must name another configured model", allowed: names.joined(separator: ", ")))
                }
            }
            if hasPath && hasURL {
                issues.append(ConfigIssue(.error, .conflict, key: key, origin: where_, message: "give either path (local GGUF) or url (upstream), not both"))
            } else if !hasPath && !hasURL && !issues.contains(where: { $0.key.hasPrefix(key + ".path") || $0.key.hasPrefix(key + ".url") }) {
                issues.append(ConfigIssue(.error, .missingKey, key: key, origin: where_, message: "needs path (a GGUF file) or url (an upstream server)"))
            }
            if let name = m["name"]?.stringValue {
                if let previous = seen[name] {
                    // Versions of one served model share its name, each with its own version label.
                    let earlier = models[previous].objectValue ?? [:]
                    let versions = models.compactMap(\.objectValue).filter { $0["name"]?.stringValue == name }.map { $0["version"]?.stringValue }
                    if m["version"] == nil || earlier["version"] == nil {
                        issues.append(ConfigIssue(.error, .conflict, key: "\(key).name", origin: origins["\(key).name"] ?? where_,
                                                  message: "name '\(name)' is already used by models[\(previous)]; names must be unique, or each entry of the name needs its own version"))
                    } else if versions.filter({ $0 == m["version"]?.stringValue }).count > 1 {
                        issues.append(ConfigIssue(.error, .conflict, key: "\(key).version", origin: origins["\(key).version"] ?? where_,
                                                  message: "version '\(m["version"]?.stringValue ?? "")' of '\(name)' is given twice; each version needs its own label"))
                    } else if (earlier["path"] == nil) != (m["path"] == nil) {
                        issues.append(ConfigIssue(.error, .conflict, key: key, origin: where_,
                                                  message: "the versions of '\(name)' mix a local file and an upstream; give every version a path, or every version a url"))
                    }
                } else {
                    seen[name] = i
                }
            }

            if m["device"]?.stringValue == "gpu", m["preset"] == nil, m["path"] == nil {
                issues.append(ConfigIssue(.warning, .missingKey, key: "\(key).preset", origin: where_,
                                          message: "a GPU model given by url needs a preset for doctor to check that it fits the GPU",
                                          allowed: ModelPresets.names.joined(separator: ", ")))
            }
        }
        let tls = document["server"]?.objectValue?["tls"]?.objectValue ?? [:]
        if (tls["cert_file"] == nil) != (tls["key_file"] == nil), !tls.isEmpty {
            let missing = tls["cert_file"] == nil ? "cert_file" : "key_file"
            issues.append(ConfigIssue(.error, .missingKey, key: "server.tls.\(missing)", origin: origins["server.tls"] ?? .file(path: path, line: 0, column: 0),
                                      message: "TLS needs both cert_file and key_file"))
        } else if tls["client_ca_file"] != nil, tls["cert_file"] == nil {
            issues.append(ConfigIssue(.error, .missingKey, key: "server.tls.cert_file", origin: origins["server.tls"] ?? .file(path: path, line: 0, column: 0),
                                      message: "client certificates (client_ca_file) need HTTPS: set cert_file and key_file too"))
        }
        if let grpc = document["server"]?.objectValue?["grpc"]?.objectValue?["port"]?.intValue, grpc != 0,
           grpc == (document["server"]?.objectValue?["port"]?.intValue ?? 8080) {
            issues.append(ConfigIssue(.error, .conflict, key: "server.grpc.port", origin: origins["server.grpc.port"] ?? .file(path: path, line: 0, column: 0),
                                      message: "the gRPC API needs its own port: \(grpc) is server.port"))
        }
        // Paths the access checks compare as written: only the spelling the router serves (it refuses others with 404),
        // and never an admin route made public.
        let canonical = PathSpelling.isCanonical
        for (i, entry) in (document["auth"]?.objectValue?["public_paths"]?.listValue ?? []).enumerated() {
            guard let path = entry.stringValue else { continue }
            let key = "auth.public_paths[\(i)]"
            if path == "/admin" || path.hasPrefix("/admin/") {
                issues.append(ConfigIssue(.error, .invalidValue, key: key, origin: origins[key] ?? origins["auth.public_paths"] ?? .defaultValue,
                                          message: "the admin routes cannot be public: remove '\(path)'"))
            } else if !canonical(path) {
                issues.append(ConfigIssue(.error, .invalidValue, key: key, origin: origins[key] ?? origins["auth.public_paths"] ?? .defaultValue,
                                          message: "'\(path)' is not a path the server serves: one '/' between segments, none at the end, no '.' or '..'"))
            }
        }
        if let path = document["metrics"]?.objectValue?["path"]?.stringValue, !path.isEmpty, !canonical(path) || path.hasPrefix("/admin") {
            issues.append(ConfigIssue(.error, .invalidValue, key: "metrics.path", origin: origins["metrics.path"] ?? .defaultValue,
                                      message: "'\(path)' cannot be the metrics path: one '/' between segments, none at the end, no '.' or '..', not under /admin"))
        }
        let server = document["server"]?.objectValue ?? [:]
        let host = server["host"]?.stringValue ?? "127.0.0.1"
        let keys = server["api_keys"]?.listValue ?? []
        if ["0.0.0.0", "::", ""].contains(host), keys.isEmpty {
            issues.append(ConfigIssue(.warning, .conflict, key: "server.host", origin: origins["server.host"] ?? .defaultValue,
                                      message: "listening on all interfaces without api_keys: anyone who can reach this host can use the models; set server.api_keys or bind 127.0.0.1"))
        }
    }
}

/// The YAML type of a scalar after tag resolution.
enum ScalarKind: Equatable {
    case string, integer, float, boolean, null

    init(_ tag: Tag.Name, quoted: Bool) {
        if quoted { self = .string; return }
        switch tag {
        case .int: self = .integer
        case .float: self = .float
        case .bool: self = .boolean
        case .null: self = .null
        default: self = .string
        }
    }
}

struct ScalarFailure: Error {
    var kind: ConfigIssue.Kind
    var message: String
}

/// Converts scalar text to a typed value. `kind` is the YAML type for file values, nil for environment and
/// flags (plain text, parsed by the field's type).
enum ScalarParser {
    static func parse(_ text: String, kind: ScalarKind?, type: ConfigType, environment: [String: String]) -> Result<ConfigValue, ScalarFailure> {
        func wrong(_ expected: String) -> Result<ConfigValue, ScalarFailure> {
            .failure(ScalarFailure(kind: .wrongType, message: "'\(text)' is \(kind.map(describe) ?? "text"), expected \(expected)"))
        }
        switch type {
        case .string:
            if kind == .boolean { return wrong("a string (quote it: \"\(text)\")") }
            return .success(.string(text))
        case .identifier:
            let ok = !text.isEmpty && text.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" }
            return ok ? .success(.string(text)) : .failure(ScalarFailure(kind: .invalidValue, message: "'\(text)' is not a valid name"))
        case .integer(let range):
            if let kind, kind != .integer { return wrong("an integer") }
            guard let n = Int(text.replacingOccurrences(of: "_", with: "")) else { return wrong("an integer") }
            guard range.contains(n) else { return .failure(ScalarFailure(kind: .outOfRange, message: "\(n) is out of range")) }
            return .success(.integer(n))
        case .boolean:
            if let kind, kind != .boolean { return wrong("true or false") }
            switch text.lowercased() {
            case "true", "yes", "on", "1": return .success(.boolean(true))
            case "false", "no", "off", "0": return .success(.boolean(false))
            default: return wrong("true or false")
            }
        case .choice(let values):
            if let kind, kind != .string { return wrong("one of the listed values") }
            guard let match = values.first(where: { $0.lowercased() == text.lowercased() }) else {
                var message = "'\(text)' is not one of the allowed values"
                if let guess = Suggest.closest(to: text, in: values) { message += "; did you mean '\(guess)'?" }
                return .failure(ScalarFailure(kind: .invalidValue, message: message))
            }
            return .success(.string(match))
        case .size(let range):
            if kind == .boolean || kind == .float && Double(text).map({ $0 != $0.rounded() }) == true { return wrong("a size") }
            guard let bytes = ByteFormat.parse(text) else { return wrong("a size such as 512MiB") }
            guard range.contains(bytes) else { return .failure(ScalarFailure(kind: .outOfRange, message: "\(text) (\(bytes) bytes) is out of range")) }
            return .success(.integer(bytes))
        case .duration(let range):
            if kind == .boolean { return wrong("a duration") }
            guard let seconds = parseDuration(text) else { return wrong("a duration such as 30s") }
            guard range.contains(seconds) else { return .failure(ScalarFailure(kind: .outOfRange, message: "\(text) is out of range")) }
            return .success(.number(seconds))
        case .url:
            if let kind, kind != .string { return wrong("a URL") }
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
                  let host = url.host, !host.isEmpty else {
                return .failure(ScalarFailure(kind: .invalidValue, message: "'\(text)' is not an http(s) URL with a host"))
            }
            return .success(.string(text))
        case .path:
            if let kind, kind != .string { return wrong("a file path") }
            guard !text.isEmpty else { return .failure(ScalarFailure(kind: .invalidValue, message: "the path is empty")) }
            return .success(.string(ConfigLoader.expandHome(text, environment: environment)))
        case .sha256:
            let ok = text.count == 64 && text.allSatisfy(\.isHexDigit)
            return ok ? .success(.string(text.lowercased()))
                : .failure(ScalarFailure(kind: .invalidValue, message: "'\(text)' is not a SHA-256 (\(text.count) characters)"))
        case .urlPath:
            if let kind, kind != .string { return wrong("a URL path") }
            return text.hasPrefix("/") ? .success(.string(text))
                : .failure(ScalarFailure(kind: .invalidValue, message: "'\(text)' does not start with '/'"))
        case .stringList:
            return .success(.list(text.split(separator: ",").map { .string($0.trimmingCharacters(in: .whitespaces)) }))
        case .object, .list:
            return .failure(ScalarFailure(kind: .wrongType, message: "'\(text)' is a single value, expected \(type.allowed)"))
        }
    }

    static func describe(_ kind: ScalarKind) -> String {
        switch kind {
        case .string: "a string"
        case .integer: "an integer"
        case .float: "a number"
        case .boolean: "a boolean"
        case .null: "empty"
        }
    }

    /// "30", "30s", "250ms", "5m", "1h", "1.5h" -> seconds.
    static func parseDuration(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            if let v = Double(t.dropLast(suffix.count)), v >= 0 { return v * scale }
        }
        if let v = Double(t), v >= 0 { return v }
        return nil
    }
}

/// "Did you mean" suggestions.
enum Suggest {
    /// The closest candidate within an edit distance of 2 (or a third of the word), if any.
    static func closest(to word: String, in candidates: [String]) -> String? {
        let lower = word.lowercased()
        let scored = candidates.map { ($0, distance(lower, $0.lowercased())) }.min { $0.1 < $1.1 }
        guard let (best, d) = scored, d > 0, d <= max(2, word.count / 3) else { return nil }
        return best
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0 ... b.count)
        for i in 1 ... a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1 ... b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// A file stem turned into a model name.
    static func identifier(from text: String) -> String {
        let cleaned = String(text.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" ? $0 : "-" })
        return cleaned.isEmpty ? "model" : cleaned
    }
}
