import Foundation
import Testing
@testable import Ops
#if canImport(Glibc)
import Glibc
#endif

/// A TCP listener on 127.0.0.1 held by this test process.
final class Listener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    /// A port that was free a moment ago.
    static func freePort() throws -> Int {
        try Listener().port
    }
}

/// Real faults on this machine, through the live probe: a port really held, files really missing,
/// truncated, not GGUF, a config with a typo, a file really unreadable.
@Suite("Doctor on this machine: real faults", .serialized)
struct DoctorLiveTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let repository = fixtures.deletingLastPathComponent().deletingLastPathComponent()

    let directory: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("autoglm-doctor-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
    }

    /// The doctor on this machine with a controlled environment (no AUTOGLM_* from the caller).
    func doctor(model: String, port: Int, config: String? = nil) -> DoctorReport {
        let probe = LiveSystemProbe(environment: ["HOME": directory, "PATH": "/usr/local/bin:/usr/bin:/bin", "AUTOGLM_MODELS": directory])
        return Doctor(probe: probe).run(DoctorOptions(configPath: config, overrides: [
            ConfigOverride(key: "model", value: model, flag: "--model"),
            ConfigOverride(key: "server.port", value: String(port), flag: "--port"),
        ]))
    }

    func copyFixture(_ name: String, to file: String, keep fraction: Double = 1) throws -> String {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent(name))
        let path = directory + "/" + file
        try data.prefix(Int(Double(data.count) * fraction)).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("an mmproj is checked like a model file: a pair passes; missing, not a projector, or a text model without M-RoPE fail")
    func mmproj() throws {
        let text = Self.fixtures.appendingPathComponent("glm4v-tiny/glm4v-tiny-f32.gguf").path
        let projector = Self.fixtures.appendingPathComponent("glm4v-tiny/mmproj-glm4v-tiny-f32.gguf").path
        func run(model: String, mmproj: String) throws -> DoctorFinding? {
            let config = directory + "/vision-\(UUID().uuidString).yaml"
            try "models:\n  - name: phone\n    path: \(model)\n    mmproj: \(mmproj)\n".write(toFile: config, atomically: true, encoding: .utf8)
            let probe = LiveSystemProbe(environment: ["HOME": directory, "PATH": "/usr/local/bin:/usr/bin:/bin", "AUTOGLM_MODELS": directory])
            return Doctor(probe: probe).run(DoctorOptions(configPath: config, overrides: [
                ConfigOverride(key: "server.port", value: String(try Listener.freePort()), flag: "--port"),
            ])).finding("model.phone.mmproj")
        }
        let ok = try run(model: text, mmproj: projector)
        #expect(ok?.status == .ok, "\(String(describing: ok))")
        #expect(try run(model: text, mmproj: directory + "/missing.gguf")?.status == .fail)
        #expect(try run(model: text, mmproj: text)?.status == .fail)  // a GGUF, but not a projector
        let plain = Self.fixtures.appendingPathComponent("glm4-tiny/glm4-tiny-f32.gguf").path
        let noMRoPE = try run(model: plain, mmproj: projector)
        #expect(noMRoPE?.status == .fail && (noMRoPE?.found.contains("projects to") == true || noMRoPE?.found.contains("M-RoPE") == true))
    }

    @Test("a model that parses, on a free port: exit 0")
    func healthy() throws {
        let model = try copyFixture("tiny-llama-f32.gguf", to: "tiny.gguf")
        let report = doctor(model: model, port: try Listener.freePort())
        #expect(report.finding("model.tiny.gguf")?.status == .ok)
        #expect(report.finding("model.tiny.fits")?.status == .ok)
        #expect(report.finding("port")?.status == .ok)
        #expect(report.findings.filter { $0.status == .fail }.isEmpty, "\(report.text)")
    }

    @Test("the port is really in use: fail, naming this test process as the holder")
    func portInUse() throws {
        let listener = try Listener()
        let model = try copyFixture("tiny-llama-f32.gguf", to: "tiny.gguf")
        let report = doctor(model: model, port: listener.port)
        let port = try #require(report.finding("port"))
        #expect(port.status == .fail)
        #expect(port.found.hasPrefix("127.0.0.1:\(listener.port) is in use by pid \(getpid()) "), "\(port.found)")
        #expect(port.fix?.contains("--port \(listener.port + 1)") == true)
        #expect(report.exitCode == 1)
        withExtendedLifetime(listener) {}
    }

    @Test("the model file is missing: fail with a fix")
    func missing() throws {
        let report = doctor(model: directory + "/absent.gguf", port: try Listener.freePort())
        let file = try #require(report.finding("model.absent.file"))
        #expect(file.status == .fail)
        #expect(file.found == "\(directory)/absent.gguf does not exist")
        #expect(file.fix != nil)
        #expect(report.exitCode == 1)
    }

    @Test("a truncated download: the GGUF check fails and says to download again")
    func truncated() throws {
        let model = try copyFixture("tiny-llama-q8_0.gguf", to: "cut.gguf", keep: 0.7)
        let report = doctor(model: model, port: try Listener.freePort())
        let gguf = try #require(report.finding("model.cut.gguf"))
        #expect(gguf.status == .fail)
        #expect(gguf.found.contains("truncated"), "\(gguf.found)")
        #expect(gguf.fix?.hasPrefix("the file is incomplete") == true)
        #expect(report.exitCode == 1)
    }

    @Test("not a GGUF file at all: fail")
    func notGGUF() throws {
        let path = directory + "/model.safetensors.gguf"
        try Data("{\"__metadata__\": {}}".utf8).write(to: URL(fileURLWithPath: path))
        let report = doctor(model: path, port: try Listener.freePort())
        let gguf = try #require(report.finding("model.model.safetensors.gguf"))
        #expect(gguf.status == .fail)
        #expect(gguf.found.contains("is not a GGUF file"))
    }

    @Test("a config file with a typo: fail naming key and line")
    func configTypo() throws {
        let model = try copyFixture("tiny-llama-f32.gguf", to: "tiny.gguf")
        let config = directory + "/autoglm.yaml"
        try "logging:\n  level: info\n  fromat: json\n".write(toFile: config, atomically: true, encoding: .utf8)
        let report = doctor(model: model, port: try Listener.freePort(), config: config)
        let finding = try #require(report.finding("config"))
        #expect(finding.status == .fail)
        #expect(finding.found.hasPrefix("\(config):3:3: error: logging.fromat: unknown key 'fromat' in logging; did you mean 'format'?"))
        #expect(report.exitCode == 1)
    }

    static let binary = BuiltBinary.path
    static var canDropToNobody: Bool {
        geteuid() != 0 || FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
    }

    /// chmod 000 does not stop root, so as root the built binary runs as `nobody` (setpriv); as any other
    /// user it runs directly. Either way the file is really unreadable to the process that checks it.
    @Test("chmod 000 on a copy of the model: `autoglm doctor` exits 1 naming owner, mode and fix",
          .enabled(if: FileManager.default.isExecutableFile(atPath: binary) && canDropToNobody))
    func unreadable() throws {
        let model = try copyFixture("tiny-llama-f32.gguf", to: "locked.gguf")
        #expect(chmod(model, 0) == 0)
        defer { chmod(model, 0o644) }
        let port = try Listener.freePort()
        let process = Process()
        var arguments = ["doctor", "--model", model, "--port", String(port)]
        if geteuid() == 0 {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", Self.binary] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: Self.binary)
        }
        process.arguments = arguments
        process.environment = ["HOME": directory, "PATH": "/usr/bin:/bin", "AUTOGLM_MODELS": directory]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 1, "\(output)")
        let owner = geteuid() == 0 ? "root (uid 0)" : "\(String(cString: getpwuid(geteuid()).pointee.pw_name)) (uid \(geteuid()))"
        #expect(output.contains("\(model): permission denied: owner \(owner), mode --------- (0000)"), "\(output)")
        #expect(output.contains("fix: `"), "\(output)")
    }

    @Test("the default model, when present, passes on this machine (exit 0)",
          .enabled(if: FileManager.default.fileExists(atPath: ModelStore.defaultModelPath(environment: ProcessInfo.processInfo.environment))))
    func defaultModel() throws {
        let path = ModelStore.defaultModelPath(environment: ProcessInfo.processInfo.environment)
        let config = directory + "/autoglm.yaml"
        try """
            models:
              - name: smollm2-135m-instruct
                path: \(path)
                sha256: b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let probe = LiveSystemProbe(environment: ["HOME": directory, "PATH": "/usr/bin:/bin"])
        let report = Doctor(probe: probe).run(DoctorOptions(configPath: config, overrides: [
            ConfigOverride(key: "server.port", value: String(try Listener.freePort()), flag: "--port"),
        ]))
        #expect(report.finding("model.smollm2-135m-instruct.sha256")?.status == .ok)
        #expect(report.exitCode == 0, "\(report.text)")
    }
}
