import ArgumentParser
import Foundation
import Server

/// `autoglm rollout status|start|promote|abort|set-weight|reload`: the admin API of a running server.
struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Versions and canaries of a running server: status, start, promote, abort, set-weight, reload.",
        discussion: """
            Talks to the admin API (server.admin_api_keys) of `autoglm serve`. Versions come from the configuration:
            entries that share a name with different `version` labels, or a changed entry after a reload.
            """,
        subcommands: [Status.self, Start.self, Promote.self, Abort.self, SetWeight.self, Reload.self])

    struct Connection: ParsableArguments {
        @Option(help: "The server's base URL (default: $AUTOGLM_URL, else http://127.0.0.1:8080).")
        var url: String?

        @Option(help: "An admin key (server.admin_api_keys; default: $AUTOGLM_ADMIN_KEY).")
        var adminKey: String?

        @Flag(help: "Print the server's JSON answer as it is.")
        var json = false

        var client: AdminClient {
            let env = ProcessInfo.processInfo.environment
            return AdminClient(baseURL: url ?? env["AUTOGLM_URL"] ?? "http://127.0.0.1:8080", key: adminKey ?? env["AUTOGLM_ADMIN_KEY"])
        }

        /// Sends the request and prints the answer: the status table, or the error's message (exit 1).
        func run(_ method: String, _ path: String, body: String? = nil) async throws {
            let (status, text) = try await client.send(method, path, body: body)
            if json {
                print(text)
            } else if let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] {
                if let error = object["error"] as? [String: Any], status >= 400 {
                    printError("error (\(status)): \(error["message"] as? String ?? text)")
                } else if object["object"] as? String == "rollout" {
                    print(Self.table(object))
                } else {
                    for key in ["changes", "warnings", "errors"] {
                        for line in object[key] as? [String] ?? [] { print("\(key.dropLast()): \(line)") }
                    }
                    if (object["changes"] as? [String] ?? []).isEmpty && status < 400 { print("nothing changed") }
                }
            } else {
                print(text)
            }
            if status >= 400 { throw ExitCode(1) }
        }

        static func table(_ object: [String: Any]) -> String {
            var lines: [String] = []
            for model in object["models"] as? [[String: Any]] ?? [] {
                lines.append("\(model["model"] as? String ?? "?"): stable \(model["stable"] as? String ?? "?"), last good \(model["last_good"] as? String ?? "?")")
                for v in model["versions"] as? [[String: Any]] ?? [] {
                    let percent = (v["percent"] as? Double).map { String(format: "%5.1f%%", $0) } ?? "     ?"
                    lines.append("  \(v["id"] as? String ?? "?")  \(v["role"] as? String ?? "?")  \(percent)  \(v["kind"] as? String ?? "")"
                        + "  window: \(v["window_errors"] as? Int ?? 0)/\(v["window_requests"] as? Int ?? 0) failed  in flight: \(v["in_flight"] as? Int ?? 0)")
                }
            }
            let events = (object["events"] as? [[String: Any]] ?? []).suffix(10)
            if !events.isEmpty { lines.append("recent events:") }
            for e in events {
                let time = Date(timeIntervalSince1970: e["time"] as? Double ?? 0).formatted(.iso8601)
                lines.append("  \(time) \(e["model"] as? String ?? "") \(e["kind"] as? String ?? "") \(e["version"] as? String ?? ""): \(e["detail"] as? String ?? "")")
            }
            return lines.joined(separator: "\n")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Each model's versions, their share and health, and recent events.")
        @OptionGroup var connection: Connection
        func run() async throws { try await connection.run("GET", "/admin/rollout") }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a loaded version as the canary of MODEL.")
        @OptionGroup var connection: Connection
        @Argument(help: "The served model.") var model: String
        @Argument(help: "The version to start as the canary.") var version: String
        @Option(help: "Its share of requests, 0...100 (default: the first of rollout.steps).") var percent: Double?
        func run() async throws {
            let percent = self.percent.map { #","percent":\#($0)"# } ?? ""
            try await connection.run("POST", "/admin/rollout/\(model)/start", body: #"{"version":"\#(version)"\#(percent)}"#)
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The canary of MODEL takes all traffic and becomes stable.")
        @OptionGroup var connection: Connection
        @Argument(help: "The served model.") var model: String
        func run() async throws { try await connection.run("POST", "/admin/rollout/\(model)/promote", body: "{}") }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "All traffic of MODEL back to its last good version; the canary stays loaded, idle.")
        @OptionGroup var connection: Connection
        @Argument(help: "The served model.") var model: String
        @Flag(help: "Also unload the versions that take no traffic.") var unload = false
        func run() async throws { try await connection.run("POST", "/admin/rollout/\(model)/abort", body: #"{"unload":\#(unload)}"#) }
    }

    struct SetWeight: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-weight", abstract: "Set the canary's share of MODEL's requests.")
        @OptionGroup var connection: Connection
        @Argument(help: "The served model.") var model: String
        @Argument(help: "The canary's share, 0...100.") var percent: Double
        func run() async throws { try await connection.run("POST", "/admin/rollout/\(model)/weight", body: #"{"percent":\#(percent)}"#) }
    }

    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Re-read the server's configuration file (as SIGHUP), and say what changed.")
        @OptionGroup var connection: Connection
        func run() async throws { try await connection.run("POST", "/admin/reload") }
    }
}
