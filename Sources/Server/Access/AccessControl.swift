import Foundation
import HTTPTypes
public import Hummingbird
import NIOCore
import Synchronization

/// How callers are identified and what they may do, beyond server.api_keys / server.admin_api_keys:
/// the key file, JWT issuers, public paths, per-role budgets and the audit log (the `auth` section).
public struct AccessSetup: Sendable {
    public var store: KeyStore?
    public var jwt: JWTVerifier?
    public var audit: AuditLog?
    /// Paths that need no credentials (probes).
    public var publicPaths: [String] = ["/health", "/live", "/ready"]
    /// /metrics without credentials (else it needs the viewer role).
    public var publicMetrics = false
    /// Budgets of each role's callers where a key sets none.
    public var roleBudgets: [Role: Budgets] = [:]
    /// server.tls.client_ca_file is set: the /admin routes also need a client certificate (the TLS handshake has
    /// already checked that a certificate presented is signed by that CA; here: that one was presented).
    public var adminNeedsClientCertificate = false

    public init(store: KeyStore? = nil, jwt: JWTVerifier? = nil, audit: AuditLog? = nil) {
        self.store = store
        self.jwt = jwt
        self.audit = audit
    }
}

/// Decides, for each request, who is calling (a key from the key file, a configured key, a JWT) and whether
/// that caller may use the route, the model and its budget now.
final class AccessControl: Sendable {
    let keys: LiveKeys
    let setup: AccessSetup
    let metricsPath: String?
    let budgets = BudgetLimiter()
    private let publicPaths: Set<String>

    init(keys: LiveKeys, setup: AccessSetup, metricsPath: String?) {
        self.keys = keys
        self.setup = setup
        self.metricsPath = metricsPath
        publicPaths = Set(setup.publicPaths)
    }

    /// Credentials are required (outside the public paths): configured API keys, a key file or JWT issuers.
    var authEnabled: Bool { !keys.apiKeys.isEmpty || setup.store != nil || setup.jwt != nil }
    /// Some credential can be an admin's; otherwise the /admin routes are off (404).
    var adminEnabled: Bool { !keys.adminKeys.isEmpty || setup.store != nil || setup.jwt != nil }

    /// The least role a route needs; nil: public.
    func requiredRole(method: HTTPRequest.Method, path: String) -> Role? {
        if publicPaths.contains(path) { return nil }
        if path == metricsPath { return setup.publicMetrics ? nil : .viewer }
        if path == "/admin" || path.hasPrefix("/admin/") { return .admin }
        if method == .get || method == .head {
            if path == "/v1/models" || path.hasPrefix("/v1/models/") || ["/health", "/live", "/ready", "/openapi.json"].contains(path) {
                return .viewer
            }
        }
        return .user
    }

    /// Who `token` is, or why it is refused (401).
    func authenticate(_ token: String) async throws(APIError) -> Principal {
        if let store = setup.store, token.hasPrefix("agk_") {
            do {
                let record = try store.check(token)
                return Principal(id: record.id, kind: .key, role: record.role, models: record.models, budgets: record.budgets)
            } catch {
                switch error {
                case .revoked(let id): throw Self.unauthenticated("API key \(id) has been revoked.", code: "revoked_api_key")
                case .expired(let id): throw Self.unauthenticated("API key \(id) has expired.", code: "expired_api_key")
                case .malformed, .unknown: throw Self.unauthenticated("Invalid API key.", code: "invalid_api_key")
                }
            }
        }
        if let jwt = setup.jwt, JWTVerifier.looksLikeJWT(token) {
            do {
                return try await jwt.verify(token)
            } catch {
                throw Self.unauthenticated("Invalid bearer token: \(error).", code: "invalid_token")
            }
        }
        let admin = keys.adminKeys, api = keys.apiKeys
        if Self.contains(admin, token) { return Principal(id: Self.configID(token), kind: .configKey, role: .admin) }
        if Self.contains(api, token) { return Principal(id: Self.configID(token), kind: .configKey, role: .user) }
        throw Self.unauthenticated("Invalid API key.", code: "invalid_api_key")
    }

    /// Whether `candidate` is one of `keys`, comparing against every key in constant time per key, so timing
    /// does not reveal a prefix.
    static func contains(_ keys: Set<String>, _ candidate: String) -> Bool {
        var found = false
        let c = Array(candidate.utf8)
        for key in keys {
            let k = Array(key.utf8)
            var diff = UInt8(k.count == c.count ? 0 : 1)
            for i in 0 ..< k.count { diff |= k[i] ^ (i < c.count ? c[i] : 0) }
            if diff == 0 { found = true }
        }
        return found
    }

    /// A configured key's name in logs: a hash prefix, never the key.
    static func configID(_ token: String) -> String {
        "config:" + String(AuditLog.digest(Array(token.utf8)).prefix(12))
    }

    static func unauthenticated(_ message: String, code: String) -> APIError {
        APIError(status: .unauthorized, message: message + " Send 'Authorization: Bearer <key>' with a key from `autoglm keys create`, server.api_keys, or a JWT from a configured issuer.",
                 type: "invalid_request_error", param: nil, code: code)
    }

    func effectiveBudgets(for principal: Principal) -> Budgets {
        principal.budgets.over(setup.roleBudgets[principal.role] ?? Budgets())
    }
}

/// Authenticates every request outside the public paths, checks its role against the route, admits it against
/// the caller's budgets (generation routes), and runs the handler with `Principal.current` set.
struct AccessMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let access: AccessControl
    /// The generation routes, where budgets apply.
    let budgetedPaths: Set<String>

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        guard let required = access.requiredRole(method: request.method, path: path) else { return try await next(request, context) }
        context.note.audited = true
        if required == .admin && !access.adminEnabled {
            throw APIError(status: .notFound, message: "The admin routes are off. Set server.admin_api_keys, auth.keys_file or auth.jwt to use them.",
                           type: "invalid_request_error", param: nil, code: "not_found")
        }
        if required == .admin && access.setup.adminNeedsClientCertificate {
            // Checked before any credential is read: without a certificate, admin credentials cannot even be tried.
            guard await context.hasClientCertificate() else {
                context.note.decision = "client_certificate_required"
                throw APIError(status: .forbidden,
                               message: "The admin routes need a client certificate signed by server.tls.client_ca_file; this connection presented none.",
                               type: "permission_error", param: nil, code: "client_certificate_required")
            }
        }
        guard access.authEnabled || required == .admin else { return try await next(request, context) }
        guard let token = Self.bearer(request) else {
            context.note.decision = "unauthenticated"
            throw AccessControl.unauthenticated("No credentials.", code: "missing_api_key")
        }
        let principal: Principal
        do {
            principal = try await access.authenticate(token)
        } catch {
            context.note.decision = "unauthenticated"
            throw error
        }
        context.note.principal = principal
        guard principal.role >= required else {
            context.note.decision = "forbidden"
            throw APIError(status: .forbidden, message: "The role '\(principal.role.rawValue)' cannot use \(request.method.rawValue) \(path); it needs '\(required.rawValue)'.",
                           type: "permission_error", param: nil, code: "insufficient_role")
        }
        guard request.method == .post, budgetedPaths.contains(path) else {
            return try await Principal.$current.withValue(principal) { try await next(request, context) }
        }
        let budget = access.effectiveBudgets(for: principal)
        let ticket: BudgetLimiter.Ticket?
        do {
            ticket = try budget.isEmpty ? nil : access.budgets.admit(principal.id, budget)
        } catch {
            context.note.decision = "rate_limited"
            throw error
        }
        context.note.tokenAccount = ticket
        var response = try await Principal.$current.withValue(principal) { try await next(request, context) }
        guard let ticket else { return response }
        for (name, value) in ticket.headers { response.headers[HTTPField.Name(name)!] = value }
        response.whenBodyWritten { withExtendedLifetime(ticket) {} }
        return response
    }

    static func bearer(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let lower = header.lowercased()
        guard lower.hasPrefix("bearer ") else { return nil }
        let token = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }
}

/// Per-caller budgets: requests per minute and tokens per minute over a sliding minute (what was admitted in the
/// last 60 seconds, to the millisecond: a caller gets its budget in any minute, not twice it across a boundary or
/// after a quiet spell), and requests at once. Tokens are charged when a request's size is known (its prompt plus
/// max_tokens) and corrected to its real usage when it ends; a caller over its tokens waits until the minute
/// slides past them. The counts are this process's: replicas each keep their own.
final class BudgetLimiter: Sendable {
    /// What was admitted in the last minute: (time, amount) entries in time order. At most `capacity` entries are
    /// kept; beyond it the two oldest merge at the later time (counted a little longer: stricter, never looser).
    struct Window {
        private var times: [Double] = []
        private var amounts: [Double] = []
        private var head = 0
        private var sum = 0.0
        static let capacity = 4096

        private mutating func expire(before now: Double) {
            while head < times.count && times[head] <= now - 60 {
                sum -= amounts[head]
                head += 1
            }
            if head > 1024 && head * 2 > times.count {
                times.removeFirst(head)
                amounts.removeFirst(head)
                head = 0
            }
            if head == times.count { sum = 0 }
        }

        mutating func add(_ amount: Double, at now: Double) {
            expire(before: now)
            if let last = times.last, head < times.count, now - last < 0.001 {
                amounts[amounts.count - 1] += amount
            } else {
                times.append(max(now, times.last ?? now))
                amounts.append(amount)
            }
            sum += amount
            if times.count - head > Self.capacity {
                amounts[head + 1] += amounts[head]
                head += 1
            }
        }

        /// Corrects an amount added at `then`: on the entry that holds it while that is still in the minute ending
        /// at `now`; a correction to something already out of the minute changes nothing.
        mutating func correct(_ amount: Double, addedAt then: Double, now: Double) {
            expire(before: now)
            guard then > now - 60 else { return }
            // The first live entry at or after `then` (its own, or the one it merged into).
            var lo = head, hi = times.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if times[mid] < then - 0.0005 { lo = mid + 1 } else { hi = mid }
            }
            guard lo < times.count else { return add(amount, at: now) }
            amounts[lo] += amount
            sum += amount
        }

        /// The total of the minute ending at `now`.
        mutating func total(at now: Double) -> Double {
            expire(before: now)
            return sum
        }

        /// Seconds (rounded up) until the total at `now` falls to `target` or below as old entries leave the minute.
        mutating func wait(at now: Double, until target: Double) -> Int {
            var remaining = total(at: now)
            guard remaining > target else { return 0 }
            for i in head ..< times.count {
                remaining -= amounts[i]
                if remaining <= target { return max(1, Int((times[i] + 60 - now).rounded(.up))) }
            }
            return 60
        }
    }

    private struct Account {
        var requests = Window()
        var tokens = Window()
        var inFlight = 0
        var lastSeen = 0.0
    }

    private let accounts = Mutex<[String: Account]>([:])
    private let maxAccounts = 100_000
    private let origin = ContinuousClock.now

    /// Seconds since the limiter started (the windows' clock).
    func second(_ now: ContinuousClock.Instant = .now) -> Double {
        let d = now - origin
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    func admit(_ id: String, _ budget: Budgets, at second: Double? = nil) throws(APIError) -> Ticket {
        let now = second ?? self.second()
        let result: Result<[(String, String)], APIError> = accounts.withLock { all in
            var a = all[id] ?? Account()
            a.lastSeen = now
            defer { all[id] = a }
            if let limit = budget.maxConcurrent, a.inFlight >= limit {
                return .failure(.overloaded("Too many requests at once for this key: its limit is \(limit) (its budget's max_concurrent). Retry when one ends.",
                                            retryAfter: 1, code: "concurrency_limit_exceeded"))
            }
            if let rpm = budget.requestsPerMinute, a.requests.total(at: now) >= Double(rpm) {
                let wait = max(1, a.requests.wait(at: now, until: Double(rpm) - 1))
                return .failure(.overloaded("Rate limit reached: \(rpm) requests per minute for this key. Retry in \(wait) s.",
                                            retryAfter: wait, code: "rate_limit_exceeded"))
            }
            if let tpm = budget.tokensPerMinute, a.tokens.total(at: now) >= Double(tpm) {
                let wait = max(1, a.tokens.wait(at: now, until: Double(tpm) - 1))
                return .failure(.overloaded("Token rate limit reached: \(tpm) tokens per minute for this key. Retry in \(wait) s.",
                                            retryAfter: wait, code: "tokens_rate_limit_exceeded"))
            }
            a.requests.add(1, at: now)
            a.inFlight += 1
            if all.count > maxAccounts { all = all.filter { $0.value.inFlight > 0 || $0.value.lastSeen > now - 60 } }
            return .success(Self.headers(&a, budget, at: now))
        }
        switch result {
        case .failure(let error): throw error
        case .success(let headers): return Ticket(limiter: self, id: id, budget: budget, headers: headers)
        }
    }

    private static func headers(_ a: inout Account, _ budget: Budgets, at now: Double) -> [(String, String)] {
        var h: [(String, String)] = []
        if let rpm = budget.requestsPerMinute {
            let used = a.requests.total(at: now)
            h += [("x-ratelimit-limit-requests", String(rpm)), ("x-ratelimit-remaining-requests", String(max(0, rpm - Int(used)))),
                  ("x-ratelimit-reset-requests", "\(a.requests.wait(at: now, until: 0))s")]
        }
        if let tpm = budget.tokensPerMinute {
            let used = a.tokens.total(at: now)
            h += [("x-ratelimit-limit-tokens", String(tpm)), ("x-ratelimit-remaining-tokens", String(max(0, tpm - Int(used)))),
                  ("x-ratelimit-reset-tokens", "\(a.tokens.wait(at: now, until: 0))s")]
        }
        return h
    }

    fileprivate func charge(_ id: String, _ tokens: Int, _ budget: Budgets, at second: Double? = nil) {
        guard budget.tokensPerMinute != nil else { return }
        let now = second ?? self.second()
        accounts.withLock { all in all[id]?.tokens.add(Double(tokens), at: now) }
    }

    fileprivate func correct(_ id: String, _ tokens: Int, chargedAt: Double) {
        let now = second()
        accounts.withLock { all in all[id]?.tokens.correct(Double(tokens), addedAt: chargedAt, now: max(now, chargedAt)) }
    }

    fileprivate func release(_ id: String) {
        accounts.withLock { all in all[id]?.inFlight -= 1 }
    }

    /// Tokens charged to a caller in the minute ending at `second` (tests).
    func tokensUsed(_ id: String, at second: Double) -> Double? { accounts.withLock { $0[id]?.tokens.total(at: second) } }

    /// One admitted request: its concurrency slot (given back when the last reference goes) and its token charge.
    final class Ticket: Sendable {
        let limiter: BudgetLimiter
        let id: String
        let budget: Budgets
        let headers: [(String, String)]
        private let charged = Mutex((tokens: 0, at: 0.0))

        fileprivate init(limiter: BudgetLimiter, id: String, budget: Budgets, headers: [(String, String)]) {
            self.limiter = limiter
            self.id = id
            self.budget = budget
            self.headers = headers
        }

        /// Charges the request's estimate (prompt tokens plus max_tokens, for every choice).
        func charge(estimate: Int, at second: Double? = nil) {
            guard budget.tokensPerMinute != nil else { return }
            let now = second ?? limiter.second()
            charged.withLock { $0 = ($0.tokens + estimate, now) }
            limiter.charge(id, estimate, budget, at: now)
        }

        /// Corrects the charge to what the request really used (in the second it was charged).
        func settle(used: Int) {
            guard budget.tokensPerMinute != nil else { return }
            let (difference, at) = charged.withLock { c in
                let d = used - c.tokens
                c.tokens = used
                return (d, c.at)
            }
            if difference != 0 { limiter.correct(id, difference, chargedAt: at) }
        }

        deinit { limiter.release(id) }
    }
}
