import AsyncHTTPClient
import Foundation
import JWTKit
import NIOCore
import NIOHTTP1
import Synchronization

/// One trusted JWT issuer (auth.jwt[]): where its keys are, what its tokens must say, and which claim names the role.
public struct JWTIssuer: Sendable {
    public enum KeySource: Sendable, Equatable {
        /// An HS256 shared secret (from an environment variable, never the configuration file).
        case secret(String)
        /// A PEM file: an RSA (RS256) or EC P-256 (ES256) public key or certificate.
        case pemFile(String)
        /// A JWKS document on disk.
        case jwksFile(String)
        /// A JWKS document at a URL: fetched at start, cached, fetched again when a token names an unknown `kid`
        /// (at most once every 30 s).
        case jwksURL(String)
    }

    public var issuer: String
    /// Accepted audiences; a token's `aud` must contain one. Empty: `aud` not checked.
    public var audiences: [String]
    public var keys: KeySource
    /// The claim that holds the role ("role", or a dotted path such as "realm_access.roles"): a string or a list;
    /// the highest of admin, user, viewer found wins. A token without one gets `defaultRole`, or is refused.
    public var roleClaim: String
    public var defaultRole: Role?
    /// The claim that lists allowed model patterns (optional).
    public var modelsClaim: String?
    /// Seconds of clock difference allowed on exp and nbf.
    public var leewaySeconds: Int

    public init(issuer: String, audiences: [String], keys: KeySource, roleClaim: String = "role", defaultRole: Role? = nil,
                modelsClaim: String? = nil, leewaySeconds: Int = 30) {
        self.issuer = issuer
        self.audiences = audiences
        self.keys = keys
        self.roleClaim = roleClaim
        self.defaultRole = defaultRole
        self.modelsClaim = modelsClaim
        self.leewaySeconds = leewaySeconds
    }
}

/// The claims of a token, whatever they are (the role claim's name is configured).
struct AnyClaims: JWTPayload {
    let values: [String: ClaimValue]

    init(from decoder: any Decoder) throws {
        values = try decoder.singleValueContainer().decode([String: ClaimValue].self)
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(values)
    }

    /// Signature checked by jwt-kit; the claims are checked by JWTVerifier (it knows the issuer's rules).
    func verify(using algorithm: some JWTAlgorithm) async throws {}

    func value(at path: String) -> ClaimValue? {
        var parts = path.split(separator: ".").map(String.init)
        guard !parts.isEmpty else { return nil }
        var current = values[parts.removeFirst()]
        for p in parts {
            guard case .object(let o)? = current else { return nil }
            current = o[p]
        }
        return current
    }
}

indirect enum ClaimValue: Codable, Sendable, Equatable {
    case string(String), number(Double), bool(Bool), array([ClaimValue]), object([String: ClaimValue]), null

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([ClaimValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: ClaimValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .number(let n): try c.encode(n)
        case .bool(let b): try c.encode(b)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        case .null: try c.encodeNil()
        }
    }

    var strings: [String] {
        switch self {
        case .string(let s): [s]
        case .array(let a): a.flatMap(\.strings)
        default: []
        }
    }

    var number: Double? { if case .number(let n) = self { n } else { nil } }
}

/// Checks bearer JWTs against the configured issuers: signature (jwt-kit; `alg: none` never passes), then
/// `iss`, `aud`, `exp` and `nbf` (with the issuer's leeway), then maps the role claim to a role.
public final class JWTVerifier: Sendable {
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case malformed, unknownIssuer(String), badSignature, wrongAudience, expired, notYetValid, noRole, algorithmNone

        public var description: String {
            switch self {
            case .malformed: "the token is not a JWT"
            case .unknownIssuer(let iss): "the token's issuer '\(iss.prefix(100))' is not one of auth.jwt[].issuer"
            case .badSignature: "the token's signature does not verify with its issuer's keys"
            case .wrongAudience: "the token's audience is not one this server accepts (auth.jwt[].audience)"
            case .expired: "the token has expired"
            case .notYetValid: "the token is not valid yet (nbf)"
            case .noRole: "the token carries no role this server knows (admin, user or viewer) in its role claim"
            case .algorithmNone: "unsigned tokens (alg: none) are never accepted"
            }
        }
    }

    private final class Trusted: Sendable {
        let issuer: JWTIssuer
        /// Swapped whole when a JWKS URL is fetched again, so a verification never sees a half-filled collection.
        let current: Mutex<JWTKeyCollection>
        var keys: JWTKeyCollection { current.withLock { $0 } }
        let kids: Mutex<Set<String>>
        let lastFetch: Mutex<ContinuousClock.Instant?>
        /// The least time between two fetches of a JWKS URL (a flood of tokens with made-up kids costs one fetch each).
        let refetchInterval: Duration

        init(issuer: JWTIssuer, keys: JWTKeyCollection, kids: Set<String>, refetchInterval: Duration) {
            self.issuer = issuer
            current = Mutex(keys)
            self.kids = Mutex(kids)
            self.refetchInterval = refetchInterval
            lastFetch = Mutex(.now)
        }
    }

    private let trusted: [String: Trusted]

    private init(trusted: [String: Trusted]) { self.trusted = trusted }

    /// Loads every issuer's keys (a JWKS URL is fetched now); a key that cannot be read stops the start.
    /// `refetchInterval`: the least time between two fetches of one JWKS URL (30 s; tests shorten it).
    public static func make(issuers: [JWTIssuer], refetchInterval: Duration = .seconds(30)) async throws -> JWTVerifier {
        var trusted: [String: Trusted] = [:]
        for issuer in issuers {
            let keys = JWTKeyCollection()
            var kids: Set<String> = []
            switch issuer.keys {
            case .secret(let secret):
                await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
            case .pemFile(let path):
                let pem = try String(contentsOfFile: path, encoding: .utf8)
                if let rsa = try? Insecure.RSA.PublicKey(pem: pem) {
                    await keys.add(rsa: rsa, digestAlgorithm: .sha256)
                } else if let rsa = try? Insecure.RSA.PublicKey(certificatePEM: pem) {
                    await keys.add(rsa: rsa, digestAlgorithm: .sha256)
                } else if let ec = try? ES256PublicKey(pem: pem) {
                    await keys.add(ecdsa: ec)
                } else if let ec = try? ES256PublicKey(certificate: pem) {
                    await keys.add(ecdsa: ec)
                } else {
                    throw JWTConfigError(message: "\(path) holds no RSA or P-256 public key or certificate in PEM (auth.jwt[].public_key_file)")
                }
            case .jwksFile(let path):
                let json = try String(contentsOfFile: path, encoding: .utf8)
                try await keys.add(jwksJSON: json)
                kids = Self.kids(in: json)
            case .jwksURL(let url):
                let json = try await fetch(url)
                try await keys.add(jwksJSON: json)
                kids = Self.kids(in: json)
            }
            trusted[issuer.issuer] = Trusted(issuer: issuer, keys: keys, kids: kids, refetchInterval: refetchInterval)
        }
        return JWTVerifier(trusted: trusted)
    }

    /// Whether `token` looks like a JWT (three base64url parts) rather than an API key.
    static func looksLikeJWT(_ token: String) -> Bool {
        token.split(separator: ".", omittingEmptySubsequences: false).count == 3 && token.hasPrefix("ey")
    }

    public func verify(_ token: String, now: Date = Date()) async throws(Refusal) -> Principal {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.base64URL(parts[0]), let payloadData = Self.base64URL(parts[1]),
              let header = try? JSONDecoder().decode([String: ClaimValue].self, from: headerData),
              let unverified = try? JSONDecoder().decode([String: ClaimValue].self, from: payloadData) else { throw .malformed }
        guard case .string(let alg)? = header["alg"] else { throw .malformed }
        if alg.lowercased() == "none" { throw .algorithmNone }
        guard case .string(let iss)? = unverified["iss"] else { throw .unknownIssuer("") }
        guard let t = trusted[iss] else { throw .unknownIssuer(iss) }
        // A kid this issuer's JWKS did not have: its keys may have rotated; fetch them again (rate-limited).
        if case .jwksURL(let url) = t.issuer.keys, case .string(let kid)? = header["kid"], !t.kids.withLock({ $0.contains(kid) }) {
            let due = t.lastFetch.withLock { last in
                if let l = last, ContinuousClock.now - l < t.refetchInterval { return false }
                last = .now
                return true
            }
            if due, let json = try? await Self.fetch(url) {
                let fresh = JWTKeyCollection()
                if (try? await fresh.add(jwksJSON: json)) != nil {
                    t.current.withLock { $0 = fresh }
                    t.kids.withLock { $0 = Self.kids(in: json) }
                }
            }
        }
        let claims: AnyClaims
        do {
            claims = try await t.keys.verify(token, as: AnyClaims.self)
        } catch {
            throw .badSignature
        }
        let issuer = t.issuer
        let nowSeconds = now.timeIntervalSince1970
        let leeway = Double(issuer.leewaySeconds)
        // exp is required: a token that never expires is a password that cannot be revoked.
        guard let exp = claims.values["exp"]?.number else { throw .expired }
        if nowSeconds > exp + leeway { throw .expired }
        if let nbf = claims.values["nbf"]?.number, nowSeconds + leeway < nbf { throw .notYetValid }
        if !issuer.audiences.isEmpty {
            let aud = claims.values["aud"]?.strings ?? []
            guard aud.contains(where: issuer.audiences.contains) else { throw .wrongAudience }
        }
        let named = claims.value(at: issuer.roleClaim)?.strings.compactMap { Role(rawValue: $0.lowercased()) } ?? []
        guard let role = named.max() ?? issuer.defaultRole else { throw .noRole }
        let models = issuer.modelsClaim.flatMap { claims.value(at: $0)?.strings } ?? []
        let subject = claims.values["sub"]?.strings.first ?? "?"
        return Principal(id: "jwt:\(iss)|\(subject)", kind: .jwt, role: role, models: models)
    }

    static func base64URL(_ part: Substring) -> Data? {
        var s = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }

    static func kids(in jwks: String) -> Set<String> {
        guard let object = try? JSONSerialization.jsonObject(with: Data(jwks.utf8)) as? [String: Any],
              let keys = object["keys"] as? [[String: Any]] else { return [] }
        return Set(keys.compactMap { $0["kid"] as? String })
    }

    static func fetch(_ url: String) async throws -> String {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        guard response.status == .ok else { throw JWTConfigError(message: "GET \(url) answered \(response.status.code) (auth.jwt[].jwks_url)") }
        let body = try await response.body.collect(upTo: 1 << 20)
        return String(buffer: body)
    }
}

public struct JWTConfigError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
