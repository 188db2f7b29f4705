import Foundation

/// A process listening on a TCP port, as far as `/proc` tells.
public struct PortHolder: Sendable, Equatable {
    public var pid: Int?
    public var command: String?
    public var uid: UInt32
    public var user: String?

    public var description: String {
        let who = user.map { "\($0) (uid \(uid))" } ?? "uid \(uid)"
        if let pid { return "pid \(pid)" + (command.map { " (\($0))" } ?? "") + ", user \(who)" }
        return "a process of user \(who) (not visible to this user; `sudo ss -ltnp` names it)"
    }
}

/// Is the server's port free, and who holds it if not.
struct NetworkChecks {
    let probe: any SystemProbe

    func port(host: String, port: Int, origin: String) -> DoctorFinding {
        let check = "port \(port)"
        switch probe.bind(host: host, port: port) {
        case .bindable:
            return DoctorFinding("port", check, .ok, found: "\(host):\(port) is free and bindable")
        case .inUse:
            let holder = findHolder(port: port)
            let who = holder?.description ?? "another process"
            var fix = "stop it"
            if let pid = holder?.pid { fix += " (`kill \(pid)`, or `systemctl stop` its service)" }
            fix += ", or choose another port: --port \(port == 65535 ? port - 1 : port + 1) / AUTOGLM_SERVER_PORT / server.port (set by \(origin))"
            return DoctorFinding("port", check, .fail, found: "\(host):\(port) is in use by \(who)", fix: fix)
        case .permissionDenied:
            return DoctorFinding("port", check, .fail, found: "binding \(host):\(port) is not permitted for uid \(probe.effectiveUserID)",
                                 fix: "ports below 1024 need root or CAP_NET_BIND_SERVICE: use a port >= 1024 behind a proxy, or `sudo setcap cap_net_bind_service=+ep $(command -v autoglm)`")
        case .addressUnavailable:
            return DoctorFinding("port", check, .fail, found: "\(host) is not an address of this machine",
                                 fix: "set server.host to 127.0.0.1, 0.0.0.0 or one of this machine's addresses (`ip -brief addr`)")
        case .invalidAddress(let why):
            return DoctorFinding("port", check, .fail, found: why, fix: "set server.host to an IP address or a resolvable name")
        case .failed(let code, let message):
            return DoctorFinding("port", check, .fail, found: "binding \(host):\(port) failed: \(message) (errno \(code))")
        }
    }

    /// Finds the listener on `port` in `/proc/net/tcp{,6}` and the process owning its socket inode.
    func findHolder(port: Int) -> PortHolder? {
        var inode: String?
        var uid: UInt32 = 0
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = probe.readFile(table) else { continue }
            if let entry = Self.listener(in: text, port: port) {
                inode = entry.inode
                uid = entry.uid
                break
            }
        }
        guard let inode else { return nil }
        let target = "socket:[\(inode)]"
        for pidText in probe.listDirectory("/proc") ?? [] {
            guard let pid = Int(pidText) else { continue }
            for fd in probe.listDirectory("/proc/\(pid)/fd") ?? [] where probe.readLink("/proc/\(pid)/fd/\(fd)") == target {
                let command = probe.readFile("/proc/\(pid)/cmdline").map {
                    $0.split(separator: "\0").map(String.init).joined(separator: " ")
                        .split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
                }.flatMap { $0.isEmpty ? nil : String($0.prefix(120)) }
                    ?? probe.readFile("/proc/\(pid)/comm")?.trimmingCharacters(in: .whitespacesAndNewlines)
                return PortHolder(pid: pid, command: command, uid: uid, user: probe.userName(uid: uid))
            }
        }
        return PortHolder(pid: nil, command: nil, uid: uid, user: probe.userName(uid: uid))
    }

    /// The socket inode and uid of a LISTEN entry (state 0A) for `port` in a `/proc/net/tcp` table.
    static func listener(in text: String, port: Int) -> (inode: String, uid: UInt32)? {
        let portHex = String(format: "%04X", port)
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10 else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, local[1].uppercased() == portHex, fields[3] == "0A" else { continue }
            return (String(fields[9]), UInt32(fields[7]) ?? 0)
        }
        return nil
    }
}

/// The server's own check before it binds: the doctor's port finding when the port cannot be used.
public enum PortPreflight {
    /// nil when `host:port` can be bound; otherwise what holds it (pid and command when visible) and the fix.
    public static func problem(host: String, port: Int, origin: String, probe: any SystemProbe = LiveSystemProbe()) -> DoctorFinding? {
        let finding = NetworkChecks(probe: probe).port(host: host, port: port, origin: origin)
        return finding.status == .ok ? nil : finding
    }
}
