import Crypto
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// One line of the audit log. Never a secret, never a prompt: who (key id or JWT subject, role), what
/// (method, route, model, admin action), the decision and its outcome (status, tokens, milliseconds).
public struct AuditEntry: Sendable, Codable, Equatable {
    public var time: String
    public var requestID: String?
    public var principal: String?
    public var kind: String?
    public var role: String?
    public var method: String
    public var route: String
    public var model: String?
    public var action: String?
    /// "allow", or why not: "unauthenticated", "forbidden", "model_forbidden", "rate_limited", "body_too_large"
    /// (a declared Content-Length over limits.max_body_bytes, refused before routing: no principal).
    public var decision: String
    public var status: Int
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var ms: Double
    /// SHA-256 (hex) of the previous line as written, without its newline; 64 zeros on the first line.
    public var prev: String = AuditLog.genesis

    enum CodingKeys: String, CodingKey {
        case time, requestID = "request_id", principal, kind, role, method, route, model, action, decision, status
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", ms, prev
    }

    public init(time: Date = Date(), requestID: String?, principal: Principal?, method: String, route: String, model: String?,
                action: String? = nil, decision: String, status: Int, promptTokens: Int? = nil, completionTokens: Int? = nil, ms: Double) {
        self.time = AuditLog.timestamp(time)
        self.requestID = requestID
        self.principal = principal?.id
        self.kind = principal?.kind.rawValue
        self.role = principal?.role.rawValue
        self.method = method
        self.route = route
        self.model = model
        self.action = action
        self.decision = decision
        self.status = status
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.ms = (ms * 10).rounded() / 10
    }
}

/// An append-only JSON-lines audit log whose lines are chained: each carries the SHA-256 of the line before,
/// so an edited, removed or reordered line breaks the chain at that point (`autoglm audit verify FILE`).
/// A restart continues the chain from the file's last line. Writes are serialized and go straight to the
/// file (O_APPEND, one write per line).
public final class AuditLog: Sendable {
    public static let genesis = String(repeating: "0", count: 64)
    public let path: String
    private let state: Mutex<(fd: Int32, last: String)>

    public init(path: String) throws(KeyStoreError) {
        self.path = path
        let fd = open(path, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .unwritable(path: path, reason: String(cString: strerror(errno))) }
        var last = Self.genesis
        if let data = FileManager.default.contents(atPath: path), !data.isEmpty {
            var bytes = [UInt8](data)
            if bytes.last == 0x0A { bytes.removeLast() }
            let start = bytes.lastIndex(of: 0x0A).map { $0 + 1 } ?? 0
            last = Self.digest(Array(bytes[start...]))
        }
        state = Mutex((fd, last))
    }

    deinit { state.withLock { _ = close($0.fd) } }

    public func record(_ entry: AuditEntry) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        state.withLock { s in
            var e = entry
            e.prev = s.last
            guard let data = try? encoder.encode(e) else { return }
            let line = [UInt8](data)
            let withNewline = line + [0x0A]
            let n = withNewline.withUnsafeBytes { Glibc.write(s.fd, $0.baseAddress, $0.count) }
            if n == withNewline.count { s.last = Self.digest(line) }
        }
    }

    static func digest(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    /// The outcome of checking a log's chain.
    public struct Verification: Sendable, Equatable {
        public var lines: Int
        /// The first line (from 1) that does not follow from the one before, and why; nil: the chain holds.
        public var broken: (line: Int, reason: String)?

        public static func == (a: Verification, b: Verification) -> Bool {
            a.lines == b.lines && a.broken?.line == b.broken?.line && a.broken?.reason == b.broken?.reason
        }
    }

    /// Checks every line's `prev` against the hash of the line before it.
    public static func verify(contents: [UInt8]) -> Verification {
        var lines = contents.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        if lines.last?.isEmpty == true { lines.removeLast() }
        var previous = genesis
        for (i, line) in lines.enumerated() {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                return Verification(lines: lines.count, broken: (i + 1, "not a JSON object"))
            }
            guard let prev = object["prev"] as? String else {
                return Verification(lines: lines.count, broken: (i + 1, "no 'prev' field"))
            }
            guard prev == previous else {
                return Verification(lines: lines.count, broken: (i + 1, i == 0
                    ? "the first line does not start the chain (a line before it was removed?)"
                    : "its 'prev' is not the hash of line \(i) (line \(i) was changed, or a line was removed or inserted here)"))
            }
            previous = digest(line)
        }
        return Verification(lines: lines.count, broken: nil)
    }
}
