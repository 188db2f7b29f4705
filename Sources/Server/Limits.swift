import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// `limits.max_concurrent_requests` and `limits.requests_per_minute`: admission limits in front of
/// the generation routes, before a request reaches a scheduler's queue. Refusals are 429 with
/// Retry-After in OpenAI's error shape, like a full queue.
final class AdmissionLimits: Sendable {
    /// Generation requests in flight at once (from admission until the response body is written); nil: no limit.
    var maxConcurrent: Int? { state.withLock { $0.maxConcurrent } }
    /// Requests per minute per client (API key, or remote address without keys); 0: no limit.
    var perMinute: Int { state.withLock { $0.perMinute } }
    /// Clients remembered for rate limiting; the least recently seen are forgotten beyond it, so an
    /// attacker cycling addresses cannot grow memory without bound.
    let maxClients: Int

    private struct Client {
        var window = BudgetLimiter.Window()
        var lastSeen = 0.0
    }

    private struct State {
        var inFlight = 0
        var clients: [String: Client] = [:]
        var maxConcurrent: Int?
        var perMinute: Int
    }

    private let state: Mutex<State>
    /// The windows' clock starts here.
    private let origin = ContinuousClock.now - .seconds(3600)

    init(maxConcurrent: Int?, perMinute: Int, maxClients: Int = 100_000) {
        state = Mutex(State(maxConcurrent: maxConcurrent, perMinute: perMinute))
        self.maxClients = maxClients
    }

    /// New limits from a reload: requests in flight keep their slots; what each client sent in the last minute
    /// counts against the new limit.
    func update(maxConcurrent: Int?, perMinute: Int) {
        state.withLock { s in
            s.maxConcurrent = maxConcurrent
            s.perMinute = perMinute
        }
    }

    /// Requests in flight now (for tests and metrics).
    var inFlight: Int { state.withLock { $0.inFlight } }

    /// Takes a concurrency slot and a rate token for `client`, or throws the 429 to send.
    /// The slot is given back when the returned object is released.
    func admit(client clientID: String, now: ContinuousClock.Instant = .now) throws(APIError) -> Slot {
        let refusal: APIError? = state.withLock { s in
            let perMinute = s.perMinute
            if let limit = s.maxConcurrent, s.inFlight >= limit {
                return .overloaded(
                    "Too many requests in flight: this server takes \(limit) at once (limits.max_concurrent_requests). Retry shortly.",
                    retryAfter: 1, code: "too_many_concurrent_requests")
            }
            if perMinute > 0 {
                // An exact sliding minute (the budgets' window): at most perMinute admissions in any 60 s,
                // also right after a quiet spell (a token bucket would let twice that through).
                let second = Self.seconds(now - origin)
                var client = s.clients[clientID] ?? Client()
                if client.window.total(at: second) >= Double(perMinute) {
                    let wait = client.window.wait(at: second, until: Double(perMinute - 1))
                    return .overloaded(
                        "Rate limit reached: \(perMinute) requests per minute per client (limits.requests_per_minute). Retry in \(max(1, wait)) s.",
                        retryAfter: max(1, wait), code: "rate_limit_exceeded")
                }
                client.window.add(1, at: second)
                client.lastSeen = second
                s.clients[clientID] = client
                if s.clients.count > maxClients { Self.forgetOldest(&s.clients, keep: maxClients / 2) }
            }
            s.inFlight += 1
            return nil
        }
        if let refusal { throw refusal }
        return Slot(limits: self)
    }

    fileprivate func release() { state.withLock { $0.inFlight -= 1 } }

    private static func forgetOldest(_ clients: inout [String: Client], keep: Int) {
        let newest = clients.sorted { $0.value.lastSeen > $1.value.lastSeen }.prefix(keep)
        clients = Dictionary(uniqueKeysWithValues: newest.map { ($0.key, $0.value) })
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// One admitted request's concurrency slot: released when the last reference goes (the response
    /// body written, or the request failed or was dropped), so no path can leak it.
    final class Slot: Sendable {
        private let limits: AdmissionLimits
        fileprivate init(limits: AdmissionLimits) { self.limits = limits }
        deinit { limits.release() }
    }
}

/// Applies AdmissionLimits to POST requests on `paths`; the slot lives until the response body is written.
struct AdmissionMiddleware: RouterMiddleware {
    typealias Context = ServerContext
    let limits: AdmissionLimits
    let paths: Set<String>

    func handle(_ request: Request, context: ServerContext, next: (Request, ServerContext) async throws -> Response) async throws -> Response {
        guard request.method == .post, paths.contains(request.uri.path) else { return try await next(request, context) }
        let slot = try limits.admit(client: Self.client(request, context: context))
        var response = try await next(request, context)
        response.whenBodyWritten { withExtendedLifetime(slot) {} }
        return response
    }

    /// The API key when one is sent, else the remote address.
    static func client(_ request: Request, context: ServerContext) -> String {
        if let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") {
            return "key:" + header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        }
        if let address = context.remoteAddress?.ipAddress { return "ip:" + address }
        return "unknown"
    }
}
