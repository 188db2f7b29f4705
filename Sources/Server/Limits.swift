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

    /// A client's admissions in each of the last 60 whole seconds (a ring indexed by second mod 60): a sliding
    /// minute to the second in 248 bytes, whatever the limit (a log of every admission would cost 16 bytes each).
    struct MinuteRing {
        private var counts = [UInt32](repeating: 0, count: 60)
        private(set) var lastSecond: Int64 = .min

        private static func slot(_ second: Int64) -> Int { Int(((second % 60) + 60) % 60) }

        /// Clears the seconds that left the minute ending at `second`.
        private mutating func advance(to second: Int64) {
            if lastSecond == .min || second - lastSecond >= 60 {
                for i in counts.indices { counts[i] = 0 }
            } else if second > lastSecond {
                for s in (lastSecond + 1) ... second { counts[Self.slot(s)] = 0 }
            }
            lastSecond = max(lastSecond, second)
        }

        /// Admissions in the 60 seconds ending with `second` (that one included).
        mutating func total(at second: Int64) -> Int {
            advance(to: second)
            return counts.reduce(0) { $0 + Int($1) }
        }

        mutating func add(at second: Int64) {
            advance(to: second)
            counts[Self.slot(second)] += 1
        }

        /// Seconds until the total falls to `target` or below, as the oldest seconds leave the minute.
        mutating func wait(at second: Int64, until target: Int) -> Int {
            var remaining = total(at: second)
            guard remaining > target else { return 0 }
            for age in stride(from: 59, through: 0, by: -1) {
                remaining -= Int(counts[Self.slot(second - Int64(age))])
                if remaining <= target { return 60 - age }
            }
            return 60
        }
    }

    private struct Client {
        var ring = MinuteRing()
        var lastSeen: Int64 = 0
    }

    private struct State {
        var inFlight = 0
        /// Keyed by a hash of the client's id (a bearer token is never kept).
        var clients: [UInt64: Client] = [:]
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
                // A sliding minute to the second: at most perMinute admissions in any 60 whole seconds, also right
                // after a quiet spell (a token bucket would let twice that through).
                let key = Self.key(clientID)
                var client = s.clients[key] ?? Client()
                // Callers read the clock before the lock: never step the ring back.
                let second = max(Int64(Self.seconds(now - origin)), client.ring.lastSecond)
                if client.ring.total(at: second) >= perMinute {
                    let wait = client.ring.wait(at: second, until: perMinute - 1)
                    return .overloaded(
                        "Rate limit reached: \(perMinute) requests per minute per client (limits.requests_per_minute). Retry in \(max(1, wait)) s.",
                        retryAfter: max(1, wait), code: "rate_limit_exceeded")
                }
                client.ring.add(at: second)
                client.lastSeen = second
                s.clients[key] = client
                if s.clients.count > maxClients { Self.forgetOldest(&s.clients, keep: maxClients / 2) }
            }
            s.inFlight += 1
            return nil
        }
        if let refusal { throw refusal }
        return Slot(limits: self)
    }

    fileprivate func release() { state.withLock { $0.inFlight -= 1 } }

    /// FNV-1a of the client's id, with a per-process seed: the table keeps no token, and ids cannot be chosen to
    /// collide without knowing the seed.
    private static let seed = UInt64.random(in: 0 ... .max)
    static func key(_ id: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for byte in id.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }

    private static func forgetOldest(_ clients: inout [UInt64: Client], keep: Int) {
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
