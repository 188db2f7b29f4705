import ArgumentParser
import Foundation
import Ops
import Server

/// `autoglm keys create|list|revoke|rotate`: the key file (auth.keys_file) a server authenticates against.
/// The file holds salted hashes only; a new key is printed once. A running server sees changes at its next request.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "API keys: create, list, revoke, rotate (in the key file, auth.keys_file).",
        discussion: """
            Keys carry a role (admin, user, viewer), the models they may use (glob patterns), an expiry and budgets.
            A running server re-reads the file at its next request, so a revoked key stops working at once.
            The same operations are at /admin/keys on a running server.
            """,
        subcommands: [Create.self, List.self, Revoke.self, Rotate.self])

    struct FileOption: ParsableArguments {
        @Option(help: "The key file (default: auth.keys_file of the configuration, $AUTOGLM_CONFIG or --config).")
        var file: String?

        @Option(name: .customLong("config"), help: "Configuration file whose auth.keys_file to use.")
        var configFile: String?

        func store() throws -> KeyStore {
            if let file { return KeyStore(path: file) }
            let loader = ConfigLoader(environment: ProcessInfo.processInfo.environment)
            let loaded = loader.load(path: loader.configPath(flag: configFile), overrides: [])
            for issue in loaded.errors { printError("error: \(issue)") }
            guard loaded.errors.isEmpty else { throw ExitCode(1) }
            guard let path = loaded.config.auth.keysFile else {
                printError("error: no key file: pass --file PATH, or set auth.keys_file in the configuration (--config or $AUTOGLM_CONFIG).")
                throw ExitCode(1)
            }
            return KeyStore(path: path)
        }
    }

    static func run<T>(_ body: () throws(KeyStoreError) -> T) throws -> T {
        do {
            return try body()
        } catch {
            printError("error: \(error)")
            throw ExitCode(1)
        }
    }

    static func describe(_ r: APIKeyRecord) -> String {
        var parts = ["\(r.id)  \(r.name)  role=\(r.role.rawValue)  models=\(r.models.isEmpty ? "*" : r.models.joined(separator: ","))"]
        if let e = r.expires { parts.append("expires=\(Self.date(e))") }
        if let v = r.revoked { parts.append("REVOKED \(Self.date(v))") }
        if let v = r.budgets.requestsPerMinute { parts.append("rpm=\(v)") }
        if let v = r.budgets.tokensPerMinute { parts.append("tpm=\(v)") }
        if let v = r.budgets.maxConcurrent { parts.append("concurrent=\(v)") }
        if r.secrets.count > 1, let until = r.secrets.compactMap(\.validUntil).max() { parts.append("previous secret valid until \(Self.date(until))") }
        return parts.joined(separator: "  ")
    }

    static func date(_ seconds: Int) -> String {
        ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; it is printed once (only its hash is kept).")
        @OptionGroup var file: FileOption
        @Option(help: "A name for the key (who or what uses it).") var name: String
        @Option(help: "admin, user or viewer.") var role: String = "user"
        @Option(help: "A model name pattern (`*`, `?`) the key may use; repeat for more (default: all).") var model: [String] = []
        @Option(help: "Lifetime: a duration such as 30d, 12h, 90m (default: none).") var expiresIn: String?
        @Option(help: "Requests per minute.") var requestsPerMinute: Int?
        @Option(help: "Tokens per minute (prompt plus generated).") var tokensPerMinute: Int?
        @Option(help: "Requests at once.") var maxConcurrent: Int?

        func run() throws {
            guard let role = Role(rawValue: role) else { throw ValidationError("--role must be admin, user or viewer") }
            var expires: Int?
            if let expiresIn {
                guard let seconds = Duration.seconds(parsing: expiresIn), seconds > 0 else {
                    throw ValidationError("--expires-in takes a duration such as 30d, 12h, 90m or 3600s")
                }
                expires = Int(Date().timeIntervalSince1970) + seconds
            }
            for (flag, v) in [("--requests-per-minute", requestsPerMinute), ("--tokens-per-minute", tokensPerMinute), ("--max-concurrent", maxConcurrent)] {
                if let v, v < 1 { throw ValidationError("\(flag) must be at least 1") }
            }
            let store = try file.store()
            let budgets = Budgets(requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute, maxConcurrent: maxConcurrent)
            let issued = try KeysCommand.run { () throws(KeyStoreError) in
                try store.create(name: name, role: role, models: model, expires: expires, budgets: budgets)
            }
            printError("created in \(store.path): \(KeysCommand.describe(issued.record))")
            printError("the key is shown once; keep it now:")
            print(issued.token)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys (never their secrets).")
        @OptionGroup var file: FileOption

        func run() throws {
            let store = try file.store()
            let keys = try KeysCommand.run { () throws(KeyStoreError) in try store.current() }.keys
            if keys.isEmpty { printError("no keys in \(store.path)") }
            for k in keys { print(KeysCommand.describe(k)) }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key at once (a running server refuses it at its next request).")
        @OptionGroup var file: FileOption
        @Argument(help: "The key's id (`autoglm keys list`).") var id: String

        func run() throws {
            let store = try file.store()
            let record = try KeysCommand.run { () throws(KeyStoreError) in try store.revoke(id: id) }
            print(KeysCommand.describe(record))
        }
    }

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A new secret for a key; the old one keeps working for the grace period.")
        @OptionGroup var file: FileOption
        @Argument(help: "The key's id.") var id: String
        @Option(help: "How long the old secret stays valid (default 24h; 0 ends it now).") var grace: String = "24h"

        func run() throws {
            guard let seconds = Duration.seconds(parsing: grace), seconds >= 0 else { throw ValidationError("--grace takes a duration such as 24h, 30m or 0") }
            let store = try file.store()
            let issued = try KeysCommand.run { () throws(KeyStoreError) in try store.rotate(id: id, grace: seconds) }
            printError("rotated: \(KeysCommand.describe(issued.record))")
            printError("the new key is shown once; keep it now:")
            print(issued.token)
        }
    }
}

/// `autoglm audit verify FILE`: checks the audit log's hash chain.
struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "The audit log (auth.audit_log): verify its hash chain.", subcommands: [Verify.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check that no line of an audit log was changed, removed, inserted or reordered.")
        @Argument(help: "The audit log.") var file: String

        func run() throws {
            guard let data = FileManager.default.contents(atPath: file) else {
                printError("error: cannot read \(file)")
                throw ExitCode(2)
            }
            let result = AuditLog.verify(contents: [UInt8](data))
            if let broken = result.broken {
                printError("BROKEN at line \(broken.line) of \(result.lines): \(broken.reason)")
                throw ExitCode(1)
            }
            print("ok: \(result.lines) lines, the chain holds")
        }
    }
}

extension Duration {
    /// "30d", "12h", "90m", "45s" or plain seconds, in whole seconds; nil when not one of those.
    static func seconds(parsing text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Int)] = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            return Int(t.dropLast()).map { $0 * factor }
        }
        return Int(t)
    }
}
