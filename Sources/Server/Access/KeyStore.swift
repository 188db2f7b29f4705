import Crypto
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Ops
import Synchronization

/// One API key as the key file keeps it: never the key itself, only a salted SHA-256 of its secret.
public struct APIKeyRecord: Sendable, Codable, Equatable {
    /// A secret's salted hash; `validUntil` set on the previous secret of a rotated key (its grace period).
    public struct Secret: Sendable, Codable, Equatable {
        public var salt: String
        public var hash: String
        public var validUntil: Int?

        enum CodingKeys: String, CodingKey { case salt, hash, validUntil = "valid_until" }
    }

    public var id: String
    public var name: String
    public var role: Role
    /// Glob patterns of the model names the key may use; empty: all.
    public var models: [String]
    public var budgets: Budgets
    /// Unix seconds.
    public var created: Int
    public var expires: Int?
    public var revoked: Int?
    public var secrets: [Secret]

    enum CodingKeys: String, CodingKey { case id, name, role, models, budgets, created, expires, revoked, secrets }

    /// What `keys list` and GET /admin/keys show: everything but the hashes.
    public var summary: [String: String] {
        var out = ["id": id, "name": name, "role": role.rawValue, "models": models.isEmpty ? "*" : models.joined(separator: ",")]
        out["created"] = String(created)
        if let expires { out["expires"] = String(expires) }
        if let revoked { out["revoked"] = String(revoked) }
        return out
    }
}

/// The key file: `{"format": "autoglm-keys/1", "keys": [...]}`, mode 0600, replaced atomically.
public struct APIKeyFile: Sendable, Codable, Equatable {
    public static let formatName = "autoglm-keys/1"
    public var format = formatName
    public var keys: [APIKeyRecord] = []

    public init(keys: [APIKeyRecord] = []) { self.keys = keys }
}

/// Why a key file operation or a key failed.
public enum KeyStoreError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, reason: String)
    case unwritable(path: String, reason: String)
    case noSuchKey(String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "cannot read the key file \(path): \(reason). It is written by `autoglm keys create`; check auth.keys_file and the file's owner and mode (0600)."
        case .unwritable(let path, let reason):
            return "cannot write the key file \(path): \(reason). Run as the user that owns it, or point auth.keys_file (or --file) at a writable place."
        case .noSuchKey(let id):
            return "no key with id '\(id)' in the key file (`autoglm keys list` shows them)."
        case .invalidArgument(let message):
            return message
        }
    }
}

/// A new key as it is shown, once: the whole token and its record.
public struct IssuedKey: Sendable {
    public let token: String
    public let record: APIKeyRecord
}

/// The keys `autoglm keys` manages, in a file both the CLI and a running server use: the server re-reads it
/// when it changes (a revocation takes effect on the next request), and changes are made under an exclusive
/// lock so the CLI and the admin routes never lose each other's writes.
///
/// A key is `agk_<id>_<secret>`: the id (12 hex digits) finds the record without a search, the secret
/// (32 random bytes, base64url) is checked against salted SHA-256 hashes in constant time.
public final class KeyStore: Sendable {
    public let path: String
    private let cache = Mutex<(stamp: String?, file: APIKeyFile)>((nil, APIKeyFile()))

    public init(path: String) {
        self.path = path
    }

    // MARK: checking a key

    public enum Refusal: Error, Equatable {
        case malformed
        case unknown
        case revoked(id: String)
        case expired(id: String)
    }

    /// The record of a presented token, or why it does not pass (at time `now`, unix seconds).
    public func check(_ token: String, now: Int = Int(Date().timeIntervalSince1970)) throws(Refusal) -> APIKeyRecord {
        guard let (id, secret) = Self.parse(token) else { throw .malformed }
        let file: APIKeyFile
        do { file = try current() } catch { throw .unknown }
        guard let record = file.keys.first(where: { $0.id == id }) else { throw .unknown }
        var matched = false
        for s in record.secrets {
            // Every secret is compared (no early exit): the time taken says nothing about which matched.
            let ok = Self.hash(secret: secret, salt: s.salt).map { Self.constantTimeEqual($0, s.hash) } ?? false
            if ok && (s.validUntil.map { now < $0 } ?? true) { matched = true }
        }
        guard matched else { throw .unknown }
        if record.revoked != nil { throw .revoked(id: id) }
        if let expires = record.expires, now >= expires { throw .expired(id: id) }
        return record
    }

    /// The file as it is now (re-read when its inode, size or time changed). A missing file holds no keys.
    public func current() throws(KeyStoreError) -> APIKeyFile {
        let stamp = FileStamp.of(path)
        if let cached = cache.withLock({ $0.stamp == stamp ? $0.file : nil }) { return cached }
        let file = try Self.read(path)
        cache.withLock { $0 = (stamp, file) }
        return file
    }

    // MARK: changing keys (the CLI and the admin routes)

    public func create(name: String, role: Role, models: [String] = [], expires: Int? = nil, budgets: Budgets = Budgets(),
                       now: Int = Int(Date().timeIntervalSince1970)) throws(KeyStoreError) -> IssuedKey {
        guard !name.isEmpty, name.count <= 100 else { throw .invalidArgument("a key needs a name of 1 to 100 characters") }
        if let expires, expires <= now { throw .invalidArgument("the expiry is in the past") }
        return try modify { (file: inout APIKeyFile) throws(KeyStoreError) -> IssuedKey in
            var id = Self.randomHex(6)
            while file.keys.contains(where: { $0.id == id }) { id = Self.randomHex(6) }
            let secret = Self.randomSecret()
            let salt = Self.randomHex(16)
            let record = APIKeyRecord(id: id, name: name, role: role, models: models, budgets: budgets, created: now, expires: expires,
                                      revoked: nil, secrets: [.init(salt: salt, hash: Self.hash(secret: secret, salt: salt)!, validUntil: nil)])
            file.keys.append(record)
            return IssuedKey(token: "agk_\(id)_\(secret)", record: record)
        }
    }

    public func revoke(id: String, now: Int = Int(Date().timeIntervalSince1970)) throws(KeyStoreError) -> APIKeyRecord {
        try modify { (file: inout APIKeyFile) throws(KeyStoreError) -> APIKeyRecord in
            guard let i = file.keys.firstIndex(where: { $0.id == id }) else { throw .noSuchKey(id) }
            if file.keys[i].revoked == nil { file.keys[i].revoked = now }
            return file.keys[i]
        }
    }

    /// A new secret for the same key (same id, role and budgets); the old one keeps working for `grace` seconds.
    public func rotate(id: String, grace: Int, now: Int = Int(Date().timeIntervalSince1970)) throws(KeyStoreError) -> IssuedKey {
        guard grace >= 0 else { throw .invalidArgument("the grace period cannot be negative") }
        return try modify { (file: inout APIKeyFile) throws(KeyStoreError) -> IssuedKey in
            guard let i = file.keys.firstIndex(where: { $0.id == id }) else { throw .noSuchKey(id) }
            guard file.keys[i].revoked == nil else { throw .invalidArgument("key '\(id)' is revoked; create a new one") }
            let secret = Self.randomSecret()
            let salt = Self.randomHex(16)
            // Secrets already past their grace are dropped; the current one ends after the grace period.
            var kept = file.keys[i].secrets.filter { ($0.validUntil ?? Int.max) > now }
            for j in kept.indices where kept[j].validUntil == nil { kept[j].validUntil = now + grace }
            kept.removeAll { ($0.validUntil ?? Int.max) <= now }
            file.keys[i].secrets = kept + [.init(salt: salt, hash: Self.hash(secret: secret, salt: salt)!, validUntil: nil)]
            return IssuedKey(token: "agk_\(id)_\(secret)", record: file.keys[i])
        }
    }

    /// Read, change and write the file under an exclusive lock (a `.lock` file beside it).
    private func modify<T>(_ change: (inout APIKeyFile) throws(KeyStoreError) -> T) throws(KeyStoreError) -> T {
        let lockPath = path + ".lock"
        let fd = open(lockPath, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .unwritable(path: lockPath, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw .unwritable(path: lockPath, reason: String(cString: strerror(errno))) }
        defer { _ = flock(fd, LOCK_UN) }
        var file = try Self.read(path)
        let result = try change(&file)
        try Self.write(file, to: path)
        cache.withLock { $0 = (FileStamp.of(path), file) }
        return result
    }

    static func read(_ path: String) throws(KeyStoreError) -> APIKeyFile {
        guard FileManager.default.fileExists(atPath: path) else { return APIKeyFile() }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .unreadable(path: path, reason: "\(error.localizedDescription)")
        }
        if data.isEmpty { return APIKeyFile() }
        do {
            let file = try JSONDecoder().decode(APIKeyFile.self, from: data)
            guard file.format == APIKeyFile.formatName else {
                throw KeyStoreError.unreadable(path: path, reason: "its format is '\(file.format)', not \(APIKeyFile.formatName)")
            }
            return file
        } catch let error as KeyStoreError {
            throw error
        } catch {
            throw .unreadable(path: path, reason: "not a key file (\(error))")
        }
    }

    static func write(_ file: APIKeyFile, to path: String) throws(KeyStoreError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do { data = try encoder.encode(file) } catch { throw .unwritable(path: path, reason: "\(error)") }
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/.\((path as NSString).lastPathComponent).\(getpid()).tmp"
        let fd = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .unwritable(path: path, reason: String(cString: strerror(errno))) }
        let written = data.withUnsafeBytes { raw in Glibc.write(fd, raw.baseAddress, raw.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == data.count, synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .unwritable(path: path, reason: reason)
        }
    }

    // MARK: the key's format and hash

    /// `agk_<12 hex>_<43 base64url>` into its id and secret.
    static func parse(_ token: String) -> (id: String, secret: String)? {
        let parts = token.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "agk", parts[1].count == 12, parts[1].allSatisfy(\.isHexDigit),
              (20 ... 100).contains(parts[2].count) else { return nil }
        return (String(parts[1]), String(parts[2]))
    }

    static func hash(secret: String, salt: String) -> String? {
        guard let saltBytes = hexBytes(salt) else { return nil }
        var hasher = Crypto.SHA256()
        hasher.update(data: saltBytes)
        hasher.update(data: Array(secret.utf8))
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0 ..< x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    static func randomHex(_ bytes: Int) -> String {
        var g = SystemRandomNumberGenerator()
        return (0 ..< bytes).map { _ in String(format: "%02x", UInt8.random(in: 0 ... 255, using: &g)) }.joined()
    }

    static func randomSecret() -> String {
        var g = SystemRandomNumberGenerator()
        let bytes = (0 ..< 32).map { _ in UInt8.random(in: 0 ... 255, using: &g) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func hexBytes(_ hex: String) -> [UInt8]? {
        let u = Array(hex.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let v = UInt8(String(decoding: u[i ..< i + 2], as: UTF8.self), radix: 16) else { return nil }
            out.append(v)
            i += 2
        }
        return out
    }
}
