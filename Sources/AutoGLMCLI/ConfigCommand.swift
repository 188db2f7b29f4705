import ArgumentParser
import Foundation
import Ops

/// Flags that override configuration keys, shared by `config show`, `doctor` (and later `serve`).
struct ConfigOverrideOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "Configuration file (default: $AUTOGLM_CONFIG, else none).")
    var configFile: String?

    @Option(help: "Model to use: a configured name, a local model name, a .gguf path or an upstream URL. `serve` takes it more than once: each is served, the first is the default.")
    var model: [String] = []

    @Option(help: "Address to listen on (server.host).")
    var host: String?

    @Option(help: "TCP port (server.port).")
    var port: String?

    @Option(help: "TCP port of the gRPC API (server.grpc.port; 0 = off).")
    var grpcPort: String?

    var overrides: [ConfigOverride] {
        var list: [ConfigOverride] = []
        if let host { list.append(ConfigOverride(key: "server.host", value: host, flag: "--host")) }
        if let port { list.append(ConfigOverride(key: "server.port", value: port, flag: "--port")) }
        if let grpcPort { list.append(ConfigOverride(key: "server.grpc.port", value: grpcPort, flag: "--grpc-port")) }
        for m in model { list.append(ConfigOverride(key: "model", value: m, flag: "--model")) }
        return list
    }

    func load() -> LoadedConfig {
        let loader = ConfigLoader(environment: ProcessInfo.processInfo.environment)
        return loader.load(path: loader.configPath(flag: configFile), overrides: overrides)
    }
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check a configuration file, or show the effective configuration.",
        subcommands: [Check.self, Show.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration file (and the AUTOGLM_* environment): every error with file:line and the allowed values.")

        @Argument(help: "The YAML file to check.")
        var file: String

        @Flag(help: "Print the findings as JSON.")
        var json = false

        func run() throws {
            let loaded = ConfigLoader(environment: ProcessInfo.processInfo.environment).load(path: file)
            if json {
                print(ConfigReport.json(loaded))
            } else {
                print(ConfigReport.text(loaded))
            }
            if !loaded.errors.isEmpty { throw ExitCode(1) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the effective configuration (flags > environment > file > defaults), secrets masked.")

        @OptionGroup var options: ConfigOverrideOptions

        @Flag(help: "Print JSON instead of YAML.")
        var json = false

        func run() throws {
            let loaded = options.load()
            if !loaded.issues.isEmpty {
                FileHandle.standardError.write(Data((loaded.issues.map(\.description).joined(separator: "\n") + "\n").utf8))
            }
            print(json ? ConfigRenderer.json(loaded) : ConfigRenderer.yaml(loaded))
            if !loaded.errors.isEmpty { throw ExitCode(1) }
        }
    }
}
