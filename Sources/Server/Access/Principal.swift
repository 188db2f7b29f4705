import Foundation

/// What a caller may do. Each role includes the ones below it: a viewer reads (the model list, metrics,
/// health), a user also runs inference on its allowed models, an admin also uses the /admin routes.
public enum Role: String, Sendable, Codable, Comparable, CaseIterable {
    case viewer, user, admin

    var rank: Int {
        switch self {
        case .viewer: 0
        case .user: 1
        case .admin: 2
        }
    }

    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
}

/// Limits on one caller (a key, a JWT subject): requests and tokens per minute, requests at once. nil: none.
public struct Budgets: Sendable, Codable, Equatable {
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var maxConcurrent: Int?

    public init(requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, maxConcurrent: Int? = nil) {
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.maxConcurrent = maxConcurrent
    }

    enum CodingKeys: String, CodingKey {
        case requestsPerMinute = "requests_per_minute", tokensPerMinute = "tokens_per_minute", maxConcurrent = "max_concurrent"
    }

    /// This caller's own limits where set, else `defaults` (its role's).
    func over(_ defaults: Budgets) -> Budgets {
        Budgets(requestsPerMinute: requestsPerMinute ?? defaults.requestsPerMinute,
                tokensPerMinute: tokensPerMinute ?? defaults.tokensPerMinute,
                maxConcurrent: maxConcurrent ?? defaults.maxConcurrent)
    }

    var isEmpty: Bool { requestsPerMinute == nil && tokensPerMinute == nil && maxConcurrent == nil }
}

/// Who a request is from, once its credentials have been checked.
public struct Principal: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// A key from the key file (`autoglm keys`).
        case key
        /// A key from server.api_keys or server.admin_api_keys.
        case configKey = "config_key"
        /// A JWT from a configured issuer.
        case jwt
    }

    /// What the audit log and the budgets know the caller by: a key's id, "config:" and a hash prefix of a
    /// configured key, or a JWT's issuer and subject. Never a secret.
    public var id: String
    public var kind: Kind
    public var role: Role
    /// Glob patterns (`*`, `?`) of the served model names it may use; empty: all.
    public var models: [String]
    public var budgets: Budgets

    public init(id: String, kind: Kind, role: Role, models: [String] = [], budgets: Budgets = Budgets()) {
        self.id = id
        self.kind = kind
        self.role = role
        self.models = models
        self.budgets = budgets
    }

    public func allows(model: String) -> Bool {
        models.isEmpty || models.contains { Glob.matches($0, model) }
    }

    /// The caller of the request this task serves (set by the access middleware; nil: auth is off or the route is public).
    @TaskLocal public static var current: Principal?
}

/// Shell-style patterns: `*` any run of characters, `?` one character, the rest literal.
enum Glob {
    static func matches(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.unicodeScalars), t = Array(text.unicodeScalars)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == t[ti]) {
                pi += 1; ti += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi; mark = ti; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
