import CryptoExtras
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import JWTKit
import Logging
import NIOCore
import Prometheus
@testable import Server
import Serving
import Synchronization
import Testing

/// Claims a test signs.
struct TestClaims: JWTPayload {
    var iss: String
    var sub: String
    var aud: [String]?
    var exp: Int?
    var nbf: Int?
    var role: String?
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

@Suite("Access: issued keys, JWT, roles, budgets, audit log", .serialized, .timeLimit(.minutes(5)))
struct AccessTests {
    static func temporaryDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("autoglm-access-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("globs: * and ? over model names")
    func globs() {
        #expect(Glob.matches("*", "anything"))
        #expect(Glob.matches("glm-*", "glm-4-9b"))
        #expect(!Glob.matches("glm-*", "llama-3"))
        #expect(Glob.matches("m?", "m1") && !Glob.matches("m?", "m12"))
        #expect(Glob.matches("*-9b*", "autoglm-phone-9b-q4"))
        #expect(!Glob.matches("", "x") && Glob.matches("", ""))
    }

    @Test("the key file: only salted hashes, mode 0600; revoked, expired and rotated keys; a second store sees changes")
    func keyStore() throws {
        let dir = try Self.temporaryDirectory()
        let path = dir + "/keys.json"
        let store = KeyStore(path: path)
        let issued = try store.create(name: "ci", role: .user, models: ["m*"], expires: 2_000, now: 1_000)
        #expect(issued.token.hasPrefix("agk_\(issued.record.id)_"))
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let secret = String(issued.token.split(separator: "_", maxSplits: 2)[2])
        #expect(!text.contains(secret), "the key file holds the secret")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try store.check(issued.token, now: 1_500).role == .user)
        #expect(throws: KeyStore.Refusal.expired(id: issued.record.id)) { try store.check(issued.token, now: 2_000) }
        // One character changed, a token of another shape, a made-up id: all unknown.
        var wrong = Array(issued.token)
        wrong[wrong.count - 1] = wrong[wrong.count - 1] == "A" ? "B" : "A"
        #expect(throws: KeyStore.Refusal.unknown) { try store.check(String(wrong), now: 1_500) }
        #expect(throws: KeyStore.Refusal.malformed) { try store.check("sk-plain", now: 1_500) }
        #expect(throws: KeyStore.Refusal.unknown) { try store.check("agk_000000000000_" + secret, now: 1_500) }

        // Rotation: the old secret works during the grace period only; the new one from now.
        let rotated = try store.rotate(id: issued.record.id, grace: 100, now: 1_100)
        #expect(rotated.record.id == issued.record.id && rotated.token != issued.token)
        #expect(try store.check(issued.token, now: 1_150).id == issued.record.id)
        #expect(throws: KeyStore.Refusal.unknown) { try store.check(issued.token, now: 1_200) }
        #expect(try store.check(rotated.token, now: 1_200).id == issued.record.id)

        // Another process's view (the server's) sees a revocation at its next check.
        let other = KeyStore(path: path)
        #expect(try other.check(rotated.token, now: 1_300).role == .user)
        _ = try store.revoke(id: issued.record.id, now: 1_400)
        #expect(throws: KeyStore.Refusal.revoked(id: issued.record.id)) { try other.check(rotated.token, now: 1_500) }
        #expect(throws: KeyStoreError.noSuchKey("nope")) { try store.revoke(id: "nope") }
        #expect(try other.current().keys.count == 1)

        try "{ not json".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: KeyStoreError.self) { try KeyStore(path: path).current() }
    }

    @Test("the audit chain verifies, continues across a restart, and an edited, removed or reordered line is found")
    func auditChain() throws {
        let dir = try Self.temporaryDirectory()
        let path = dir + "/audit.jsonl"
        let caller = Principal(id: "k1", kind: .key, role: .user)
        do {
            let log = try AuditLog(path: path)
            for i in 0 ..< 3 {
                log.record(AuditEntry(requestID: "r\(i)", principal: caller, method: "POST", route: "/v1/completions", model: "m",
                                      decision: "allow", status: 200, promptTokens: 5, completionTokens: i, ms: 1.5))
            }
        }
        // A restart appends to the same chain.
        let again = try AuditLog(path: path)
        again.record(AuditEntry(requestID: "r3", principal: nil, method: "GET", route: "/v1/models", model: nil, decision: "unauthenticated",
                                status: 401, ms: 0.2))
        again.record(AuditEntry(requestID: "r4", principal: caller, method: "POST", route: "/admin/keys", model: nil,
                                action: "POST /admin/keys", decision: "forbidden", status: 403, ms: 0.3))
        let original = try String(contentsOfFile: path, encoding: .utf8)
        #expect(AuditLog.verify(contents: Array(original.utf8)) == AuditLog.Verification(lines: 5, broken: nil))
        #expect(!original.contains("Bearer") && original.contains(#""principal":"k1""#))

        var lines = original.split(separator: "\n").map(String.init)
        var edited = lines
        edited[1] = edited[1].replacingOccurrences(of: #""status":200"#, with: #""status":500"#)
        #expect(edited[1] != lines[1])
        #expect(AuditLog.verify(contents: Array((edited.joined(separator: "\n") + "\n").utf8)).broken?.line == 3)
        var removed = lines
        removed.remove(at: 2)
        #expect(AuditLog.verify(contents: Array((removed.joined(separator: "\n") + "\n").utf8)).broken?.line == 3)
        lines.swapAt(3, 4)
        #expect(AuditLog.verify(contents: Array((lines.joined(separator: "\n") + "\n").utf8)).broken?.line == 4)
        let headless = original.split(separator: "\n").dropFirst().joined(separator: "\n")
        #expect(AuditLog.verify(contents: Array(headless.utf8)).broken?.line == 1)
    }

    @Test("requests per minute over a sliding minute: 4 clients on one key get the budget within 5% in every minute")
    func slidingMinute() throws {
        let limiter = BudgetLimiter()
        let budget = Budgets(requestsPerMinute: 120)
        // Four clients, each trying every 100 ms for 5 minutes (virtual seconds); an admitted request ends at once.
        var admittedAt: [Double] = []
        for tenth in 0 ..< 3000 {
            for _ in 0 ..< 4 {
                let t = Double(tenth) / 10
                if let ticket = try? limiter.admit("k", budget, at: t) {
                    admittedAt.append(t)
                    withExtendedLifetime(ticket) {}
                }
            }
        }
        // Every minute, wherever it starts: never over the budget, and within 5% of it.
        for start in stride(from: 0.0, through: 240, by: 7.5) {
            let n = admittedAt.filter { $0 >= start && $0 < start + 60 }.count
            #expect(n <= 120 && n >= 114, "minute from \(start) s admitted \(n), budget 120")
        }
        // A refusal says when to retry, and the limit holds over the whole run.
        #expect(admittedAt.count <= 120 * 5 + 6)
        do {
            _ = try limiter.admit("k", budget, at: 299.95)
            Issue.record("the 121st request of a minute was admitted")
        } catch {
            #expect(error.status == .tooManyRequests && (error.retryAfter ?? 0) >= 1 && error.code == "rate_limit_exceeded")
        }
    }

    @Test("tokens per minute: charged on admission's estimate, corrected to the real usage; concurrency per key")
    func tokensAndConcurrency() throws {
        let limiter = BudgetLimiter()
        let budget = Budgets(tokensPerMinute: 1000, maxConcurrent: 2)
        let now = limiter.second()
        var a: BudgetLimiter.Ticket? = try limiter.admit("k", budget, at: now)
        a?.charge(estimate: 900, at: now)
        #expect(limiter.tokensUsed("k", at: now) == 900)
        var b: BudgetLimiter.Ticket? = try limiter.admit("k", budget, at: now)
        do {
            _ = try limiter.admit("k", budget, at: now)
            Issue.record("a third request at once was admitted")
        } catch {
            #expect(error.code == "concurrency_limit_exceeded")
        }
        a?.settle(used: 100)
        #expect(limiter.tokensUsed("k", at: now) == 100)
        b?.charge(estimate: 950, at: now)
        // Both end: the slots are free, the 1050 tokens stay charged for the minute.
        a = nil
        b = nil
        do {
            _ = try limiter.admit("k", budget, at: now)
            Issue.record("admitted over the tokens per minute")
        } catch {
            #expect(error.code == "tokens_rate_limit_exceeded" && (error.retryAfter ?? 0) >= 1)
        }
        // A minute later the charges have left the window.
        #expect(try limiter.admit("k", budget, at: now + 60.001).headers.contains { $0 == ("x-ratelimit-remaining-tokens", "1000") })
    }

    // MARK: through the server

    struct Server {
        let app: any ApplicationProtocol
        let tokens: [String: String]
        let auditPath: String
        let store: KeyStore
    }

    static func server(roleBudgets: [Role: Budgets] = [:]) async throws -> Server {
        let dir = try temporaryDirectory()
        let store = KeyStore(path: dir + "/keys.json")
        var tokens: [String: String] = [:]
        tokens["admin"] = try store.create(name: "admin", role: .admin).token
        tokens["user"] = try store.create(name: "user", role: .user, models: ["m"]).token
        tokens["viewer"] = try store.create(name: "viewer", role: .viewer).token
        tokens["revoked"] = try store.create(name: "revoked", role: .admin).token
        _ = try store.revoke(id: String(tokens["revoked"]!.split(separator: "_")[1]))
        let now = Int(Date().timeIntervalSince1970)
        tokens["expired"] = try store.create(name: "expired", role: .admin, expires: now - 5, now: now - 10).token
        tokens["wrong"] = String(tokens["admin"]!.dropLast()) + (tokens["admin"]!.hasSuffix("x") ? "y" : "x")

        let secret = "an HS256 secret of at least thirty-two bytes"
        let ec = ES256PrivateKey()
        let rsa = try Insecure.RSA.PrivateKey(backing: _RSA.Signing.PrivateKey(keySize: .bits2048))
        try ec.publicKey.pemRepresentation.write(toFile: dir + "/ec.pem", atomically: true, encoding: .utf8)
        try rsa.publicKey.pemRepresentation.write(toFile: dir + "/rsa.pem", atomically: true, encoding: .utf8)
        let verifier = try await JWTVerifier.make(issuers: [
            JWTIssuer(issuer: "hs", audiences: ["autoglm"], keys: .secret(secret)),
            JWTIssuer(issuer: "es", audiences: ["autoglm"], keys: .pemFile(dir + "/ec.pem")),
            JWTIssuer(issuer: "rs", audiences: ["autoglm"], keys: .pemFile(dir + "/rsa.pem")),
        ])
        func sign(_ claims: TestClaims, with keys: JWTKeyCollection) async throws -> String { try await keys.sign(claims) }
        let hs = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        let es = await JWTKeyCollection().add(ecdsa: ec)
        let rs = await JWTKeyCollection().add(rsa: rsa, digestAlgorithm: .sha256)
        let otherHS = await JWTKeyCollection().add(hmac: HMACKey(from: "another secret, also long enough to pass"), digestAlgorithm: .sha256)
        let later = now + 600
        func claims(_ iss: String = "hs", aud: [String]? = ["autoglm"], exp: Int? = nil, nbf: Int? = nil, role: String? = "admin") -> TestClaims {
            TestClaims(iss: iss, sub: "alice", aud: aud, exp: exp ?? later, nbf: nbf, role: role)
        }
        tokens["jwt-admin-hs"] = try await sign(claims(), with: hs)
        tokens["jwt-admin-es"] = try await sign(claims("es"), with: es)
        tokens["jwt-admin-rs"] = try await sign(claims("rs"), with: rs)
        tokens["jwt-user"] = try await sign(claims(role: "user"), with: hs)
        tokens["jwt-viewer"] = try await sign(claims("es", role: "viewer"), with: es)
        tokens["jwt-bad-signature"] = try await sign(claims(), with: otherHS)
        tokens["jwt-wrong-aud"] = try await sign(claims(aud: ["someone-else"]), with: hs)
        tokens["jwt-wrong-iss"] = try await sign(claims("nobody"), with: hs)
        tokens["jwt-expired"] = try await sign(claims(exp: now - 120), with: hs)
        tokens["jwt-not-yet"] = try await sign(claims(nbf: now + 300), with: hs)
        tokens["jwt-no-exp"] = try await sign(TestClaims(iss: "hs", sub: "alice", aud: ["autoglm"], exp: nil, nbf: nil, role: "admin"), with: hs)
        tokens["jwt-no-role"] = try await sign(claims(role: nil), with: hs)
        // alg none: the admin claims, no signature.
        let noneHeader = Data(#"{"alg":"none","typ":"JWT"}"#.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
        let payload = try JSONEncoder().encode(claims())
        tokens["jwt-alg-none"] = noneHeader + "." + payload.base64EncodedString().replacingOccurrences(of: "=", with: "")
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_") + "."

        let pool = LocalModelPool(loaded: [])
        let registry = PrometheusCollectorRegistry()
        let releases = ReleaseController(versions: [(RolloutTests.version("m", "v1", pool: pool, backend: ScriptedBackend(), first: true), nil),
                                                    (RolloutTests.version("other", "v1", pool: pool, backend: ScriptedBackend(), first: true), nil)],
                                         locals: pool, upstreams: nil, policy: RolloutPolicy(), prometheus: registry)
        var setup = AccessSetup(store: store, jwt: verifier, audit: try AuditLog(path: dir + "/audit.jsonl"))
        setup.roleBudgets = roleBudgets
        var options = ServerOptions()
        options.access = setup
        let app = try AutoGLMServer.application(locals: pool, metrics: [:], registry: registry, options: options,
                                                logger: RolloutTests.logger(), releases: releases)
        return Server(app: app, tokens: tokens, auditPath: dir + "/audit.jsonl", store: store)
    }

    /// Every route the server has, with the least role it needs (nil: public).
    static let routes: [(HTTPRequest.Method, String, String?, Role?)] = [
        (.get, "/health", nil, nil), (.get, "/live", nil, nil), (.get, "/ready", nil, nil),
        (.get, "/metrics", nil, .viewer), (.get, "/v1/models", nil, .viewer),
        (.post, "/v1/chat/completions", #"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#, .user),
        (.post, "/v1/completions", #"{"model":"m","prompt":"hi","max_tokens":2}"#, .user),
        (.post, "/generate", #"{"model":"m","prompt":"hi","max_tokens":2}"#, .user),
        (.post, "/tokenize", #"{"model":"m","prompt":"hi"}"#, .user),
        (.post, "/detokenize", #"{"model":"m","tokens":[1]}"#, .user),
        (.get, "/admin/models", nil, .admin), (.get, "/admin/rollout", nil, .admin), (.get, "/admin/keys", nil, .admin),
        (.post, "/admin/models/m/load", nil, .admin), (.post, "/admin/reload", nil, .admin),
        (.post, "/admin/keys", #"{"name":"from-admin","role":"viewer"}"#, .admin),
    ]

    @Test("authorization matrix: every route x every credential; nothing passes that should not, each refusal 401/403 in OpenAI's shape")
    func matrix() async throws {
        let s = try await Self.server()
        let credentials: [(String, String?, Role?)] = [
            ("none", nil, nil), ("malformed", "Basic Zm9vOmJhcg==", nil), ("empty bearer", "Bearer ", nil),
            ("wrong key", "Bearer " + s.tokens["wrong"]!, nil), ("revoked key", "Bearer " + s.tokens["revoked"]!, nil),
            ("expired key", "Bearer " + s.tokens["expired"]!, nil), ("random", "Bearer sk-not-a-key", nil),
            ("jwt wrong signature", "Bearer " + s.tokens["jwt-bad-signature"]!, nil), ("jwt wrong aud", "Bearer " + s.tokens["jwt-wrong-aud"]!, nil),
            ("jwt wrong iss", "Bearer " + s.tokens["jwt-wrong-iss"]!, nil), ("jwt expired", "Bearer " + s.tokens["jwt-expired"]!, nil),
            ("jwt not yet valid", "Bearer " + s.tokens["jwt-not-yet"]!, nil), ("jwt alg none", "Bearer " + s.tokens["jwt-alg-none"]!, nil),
            ("jwt without exp", "Bearer " + s.tokens["jwt-no-exp"]!, nil), ("jwt without role", "Bearer " + s.tokens["jwt-no-role"]!, nil),
            ("viewer key", "Bearer " + s.tokens["viewer"]!, .viewer), ("user key", "Bearer " + s.tokens["user"]!, .user),
            ("admin key", "Bearer " + s.tokens["admin"]!, .admin),
            ("jwt viewer (ES256)", "Bearer " + s.tokens["jwt-viewer"]!, .viewer), ("jwt user (HS256)", "Bearer " + s.tokens["jwt-user"]!, .user),
            ("jwt admin (HS256)", "Bearer " + s.tokens["jwt-admin-hs"]!, .admin), ("jwt admin (ES256)", "Bearer " + s.tokens["jwt-admin-es"]!, .admin),
            ("jwt admin (RS256)", "Bearer " + s.tokens["jwt-admin-rs"]!, .admin),
        ]
        try await s.app.test(.router) { client in
            var leaks: [String] = []
            var checked = 0
            for (method, path, body, required) in Self.routes {
                for (name, header, role) in credentials {
                    var headers: HTTPFields = [.contentType: "application/json"]
                    if let header { headers[.authorization] = header }
                    let r = try await client.execute(uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
                    checked += 1
                    let allowed = required == nil || (role.map { $0 >= required! } ?? false)
                    let refused = r.status == .unauthorized || r.status == .forbidden
                    if allowed == refused { leaks.append("\(method) \(path) with \(name): \(r.status.code) \(String(buffer: r.body).prefix(160))") }
                    if refused {
                        let error = try? ServerTests.errorBody(r)
                        #expect(error?["message"] is String && error?["type"] is String, "\(path) \(name): not OpenAI's error shape")
                        #expect(r.status == (role == nil ? .unauthorized : .forbidden), "\(path) \(name): \(r.status.code)")
                    }
                }
            }
            #expect(leaks.isEmpty, "\(leaks.count) of \(checked) decisions wrong:\n\(leaks.joined(separator: "\n"))")
            #expect(checked == Self.routes.count * credentials.count)
        }
    }

    @Test("other spellings of a route's path (//admin, a trailing /, ./, %61) are 404 for everyone, never served around the checks")
    func pathSpellings() async throws {
        let spellings = ["//admin/models", "/admin//models", "/admin/models/", "/./admin/models", "/admin/./models", "/x/../admin/models",
                         "/%61dmin/models", "/admin/%6dodels", "//v1/models", "/v1//chat/completions", "//metrics", "/v1/models/"]
        for path in spellings { #expect(!CanonicalPathMiddleware.isCanonical(path), "\(path)") }
        for path in ["/", "/admin/models", "/v1/chat/completions", "/admin/models/a%2Fb/load", "/admin/models/a%20b/load"] {
            #expect(CanonicalPathMiddleware.isCanonical(path), "\(path)")
        }
        // Through the router, with the whole access setup, and with admin keys only (auth off for the other routes:
        // there //admin/models once reached the admin handler with no key at all).
        let s = try await Self.server()
        let pool = LocalModelPool(loaded: [])
        let registry = PrometheusCollectorRegistry()
        let releases = ReleaseController(versions: [(RolloutTests.version("m", "v1", pool: pool, backend: ScriptedBackend(), first: true), nil)],
                                         locals: pool, upstreams: nil, policy: RolloutPolicy(), prometheus: registry)
        var options = ServerOptions()
        options.adminAPIKeys = ["adm"]
        let adminKeysOnly = try AutoGLMServer.application(locals: pool, metrics: [:], registry: registry, options: options,
                                                          logger: RolloutTests.logger(), releases: releases)
        for app in [s.app, adminKeysOnly] as [any ApplicationProtocol] {
            try await app.test(.router) { client in
                for path in spellings {
                    for method in [HTTPRequest.Method.get, .post] {
                        let r = try await client.execute(uri: path, method: method, headers: [.contentType: "application/json"],
                                                         body: ByteBuffer(string: #"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#))
                        #expect(r.status == .notFound, "\(method) \(path): \(r.status.code) \(String(buffer: r.body).prefix(120))")
                    }
                }
                #expect(try await client.execute(uri: "/admin/models", method: .get).status == .unauthorized)
                // A query string is dropped, not refused: the route answers as without it.
                #expect(try await client.execute(uri: "/health?api_key=secret&x=1", method: .get).status == .ok)
                #expect(try await client.execute(uri: "/admin/models?x=1", method: .get).status == .unauthorized)
            }
        }
    }

    @Test("a key limited to some models: others are 403 and absent from its model list; usage and refusals reach the audit log")
    func modelsAndAudit() async throws {
        let s = try await Self.server()
        try await s.app.test(.router) { client in
            let user: HTTPFields = [.authorization: "Bearer " + s.tokens["user"]!, .contentType: "application/json"]
            let other = try await client.execute(uri: "/v1/completions", method: .post, headers: user,
                                                 body: ByteBuffer(string: #"{"model":"other","prompt":"hi","max_tokens":2}"#))
            #expect(other.status == .forbidden)
            #expect(try ServerTests.errorBody(other)["code"] as? String == "model_not_allowed")
            let list = try await client.execute(uri: "/v1/models", method: .get, headers: user)
            #expect(String(buffer: list.body).contains(#""id":"m""#) && !String(buffer: list.body).contains(#""id":"other""#))
            let ok = try await client.execute(uri: "/v1/completions", method: .post, headers: user,
                                              body: ByteBuffer(string: #"{"model":"m","prompt":"hi","max_tokens":2}"#))
            #expect(ok.status == .ok)
            let stream = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: user,
                                                  body: ByteBuffer(string: #"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#))
            #expect(stream.status == .ok)
            _ = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer nope"])
        }
        let text = try String(contentsOfFile: s.auditPath, encoding: .utf8)
        let lines = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 5)
        let userID = String(s.tokens["user"]!.split(separator: "_")[1])
        #expect(lines[0]["decision"] as? String == "forbidden" && lines[0]["status"] as? Int == 403 && lines[0]["model"] == nil)
        #expect(lines[2]["principal"] as? String == userID && lines[2]["prompt_tokens"] as? Int == 2 && lines[2]["completion_tokens"] as? Int == 1)
        #expect(lines[3]["route"] as? String == "/v1/chat/completions" && lines[3]["completion_tokens"] as? Int == 1)
        #expect(lines[4]["decision"] as? String == "unauthenticated" && lines[4]["principal"] == nil)
        #expect(!text.contains(s.tokens["user"]!) && !text.contains("\"hi\""), "a secret or a prompt in the audit log")
        #expect(AuditLog.verify(contents: Array(text.utf8)).broken == nil)
    }

    @Test("budgets through the server: 429 with Retry-After and x-ratelimit headers; admin keys created through /admin/keys work at once")
    func budgetsThroughServer() async throws {
        let s = try await Self.server(roleBudgets: [.user: Budgets(requestsPerMinute: 3)])
        try await s.app.test(.router) { client in
            let user: HTTPFields = [.authorization: "Bearer " + s.tokens["user"]!, .contentType: "application/json"]
            let body = ByteBuffer(string: #"{"model":"m","prompt":"hi","max_tokens":2}"#)
            var statuses: [Int] = []
            var remaining: [String] = []
            for _ in 0 ..< 4 {
                let r = try await client.execute(uri: "/v1/completions", method: .post, headers: user, body: body)
                statuses.append(Int(r.status.code))
                remaining.append(r.headers[HTTPField.Name("x-ratelimit-remaining-requests")!] ?? "-")
                if r.status == .tooManyRequests {
                    #expect(Int(r.headers[.retryAfter] ?? "") ?? 0 >= 1)
                    #expect(try ServerTests.errorBody(r)["code"] as? String == "rate_limit_exceeded")
                }
            }
            #expect(statuses == [200, 200, 200, 429])
            #expect(remaining.prefix(3) == ["2", "1", "0"])
            // An admin creates a viewer key; it reads the model list and cannot generate.
            let admin: HTTPFields = [.authorization: "Bearer " + s.tokens["admin"]!, .contentType: "application/json"]
            let created = try await client.execute(uri: "/admin/keys", method: .post, headers: admin,
                                                   body: ByteBuffer(string: #"{"name":"dash","role":"viewer"}"#))
            #expect(created.status == .created)
            let key = try #require(try ServerTests.json(created)["key"] as? String)
            let viewer: HTTPFields = [.authorization: "Bearer " + key, .contentType: "application/json"]
            #expect(try await client.execute(uri: "/v1/models", method: .get, headers: viewer).status == .ok)
            #expect(try await client.execute(uri: "/v1/completions", method: .post, headers: viewer, body: body).status == .forbidden)
            let id = String(key.split(separator: "_")[1])
            #expect(try await client.execute(uri: "/admin/keys/\(id)/revoke", method: .post, headers: admin).status == .ok)
            #expect(try await client.execute(uri: "/v1/models", method: .get, headers: viewer).status == .unauthorized)
            let listed = try await client.execute(uri: "/admin/keys", method: .get, headers: admin)
            #expect(!String(buffer: listed.body).contains("hash") && !String(buffer: listed.body).contains(key))
        }
    }
}
