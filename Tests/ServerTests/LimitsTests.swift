import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Runtime
@testable import Server
import TestSupport
import Serving
import Testing

/// limits.max_concurrent_requests, limits.requests_per_minute, server.timeouts.first_token and
/// metrics.enabled, as the server applies them.
@Suite("Admission limits and timeouts", .serialized)
struct LimitsTests {
    @Test("concurrency slots are taken and given back when the request's last reference goes")
    func concurrencySlots() throws {
        let limits = AdmissionLimits(maxConcurrent: 2, perMinute: 0)
        var a: AdmissionLimits.Slot? = try limits.admit(client: "x")
        let b = try limits.admit(client: "y")
        #expect(limits.inFlight == 2)
        do {
            _ = try limits.admit(client: "z")
            Issue.record("a third request was admitted past max_concurrent_requests = 2")
        } catch {
            #expect(error.status == .tooManyRequests && error.code == "too_many_concurrent_requests" && error.retryAfter == 1)
        }
        a = nil
        #expect(limits.inFlight == 1)
        let c = try limits.admit(client: "z")
        #expect(limits.inFlight == 2)
        withExtendedLifetime((a, b, c)) {}
    }

    @Test("requests per minute: an exact sliding minute per client, Retry-After until the oldest leaves it")
    func rateLimit() throws {
        let limits = AdmissionLimits(maxConcurrent: nil, perMinute: 3)
        let t0 = ContinuousClock.now
        for _ in 0 ..< 3 { _ = try limits.admit(client: "key:a", now: t0) }
        do {
            _ = try limits.admit(client: "key:a", now: t0)
            Issue.record("a fourth request within the minute was admitted")
        } catch {
            // All three were admitted at t0: the first leaves the minute at t0 + 60 s.
            #expect(error.status == .tooManyRequests && error.code == "rate_limit_exceeded" && error.retryAfter == 60)
        }
        _ = try limits.admit(client: "key:b", now: t0)  // another client has its own minute
        #expect(throws: APIError.self) { _ = try limits.admit(client: "key:a", now: t0 + .seconds(59)) }
        _ = try limits.admit(client: "key:a", now: t0 + .milliseconds(60_001))
        #expect(limits.inFlight == 0)  // every slot above was dropped at once
    }

    @Test("requests per minute after a quiet spell: never more than the limit in any 60 s (a token bucket allows twice)")
    func rateLimitAfterQuietSpell() throws {
        let limits = AdmissionLimits(maxConcurrent: nil, perMinute: 3)
        let t0 = ContinuousClock.now
        // Spaced requests: a refilling bucket would be full again at t0 + 59 s and admit three more there.
        for s in [0, 20, 40] { _ = try limits.admit(client: "key:a", now: t0 + .seconds(s)) }
        do {
            _ = try limits.admit(client: "key:a", now: t0 + .seconds(59))
            Issue.record("a fourth request within 60 s was admitted")
        } catch {
            #expect(error.retryAfter == 1)  // the request of t0 leaves the minute at t0 + 60 s
        }
        _ = try limits.admit(client: "key:a", now: t0 + .milliseconds(60_500))
        #expect(throws: APIError.self) { _ = try limits.admit(client: "key:a", now: t0 + .milliseconds(60_600)) }
        // A whole quiet minute later the client has its three again, and only three.
        let t1 = t0 + .seconds(200)
        for _ in 0 ..< 3 { _ = try limits.admit(client: "key:a", now: t1) }
        #expect(throws: APIError.self) { _ = try limits.admit(client: "key:a", now: t1) }
    }

    @Test("the minute ring: totals and waits equal a brute-force count of the last 60 seconds")
    func minuteRing() {
        var ring = AdmissionLimits.MinuteRing()
        var log: [Int64] = []
        var generator = SeededRandom(seed: 7)
        var second: Int64 = 1000
        for _ in 0 ..< 3000 {
            second += Int64(generator.next() % 5 == 0 ? generator.next() % 90 : 0)
            if generator.next() % 3 != 0 {
                ring.add(at: second)
                log.append(second)
            }
            log.removeAll { $0 <= second - 60 }
            let inMinute = log
            #expect(ring.total(at: second) == inMinute.count)
            let target = max(0, inMinute.count - 1 - Int(generator.next() % 3))
            // Brute force: the first whole second at which at most `target` remain.
            var wait = 0
            while log.filter({ $0 > second + Int64(wait) - 60 }).count > target { wait += 1 }
            #expect(ring.wait(at: second, until: target) == wait)
        }
    }

    @Test("the rate limiter forgets the least recently seen clients beyond its bound")
    func boundedClients() throws {
        let limits = AdmissionLimits(maxConcurrent: nil, perMinute: 1, maxClients: 10)
        let t0 = ContinuousClock.now
        for i in 0 ..< 11 { _ = try limits.admit(client: "ip:\(i)", now: t0 + .seconds(i)) }
        // Client 10 is remembered (its token is spent); client 0 was forgotten and starts afresh.
        #expect(throws: APIError.self) { _ = try limits.admit(client: "ip:10", now: t0 + .seconds(11)) }
        _ = try limits.admit(client: "ip:0", now: t0 + .seconds(11))
    }
}

/// The same limits through the router. In the ServerTests suite (serialized) because they drive the
/// shared default model, which one scheduler at a time may use.
extension ServerTests {
    @Test("through the router: a second request in flight gets 429 while the first holds the only slot; metrics can be off")
    func routerLimits() async throws {
        let h = try ServerTests.harness(start: false, options: ServerOptions(metricsPath: nil, maxConcurrentRequests: 1))
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            async let first = ServerTests.post(client, "/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
            // The first request waits in the (stopped) scheduler's queue, holding the slot.
            try await ServerTests.waitUntil("the first request is queued") { h.model.backend.statistics.waiting == 1 }
            let second = try await ServerTests.post(client, "/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
            #expect(second.status == .tooManyRequests)
            #expect(second.headers[.retryAfter] == "1")
            #expect(try ServerTests.errorBody(second).string("code") == "too_many_concurrent_requests")
            h.model.backend.start()
            #expect(try await first.status == .ok)
            let third = try await ServerTests.post(client, "/v1/completions", #"{"prompt":"hi","max_tokens":2}"#)
            #expect(third.status == .ok)
            #expect(try await client.execute(uri: "/metrics", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
        }
    }

    @Test("first-token timeout: a request still queued when it passes is aborted")
    func firstTokenTimeout() async throws {
        let h = try ServerTests.harness(start: false, options: ServerOptions(firstTokenTimeoutSeconds: 1))
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            async let response = ServerTests.post(client, "/v1/completions", #"{"prompt":"hi","max_tokens":4}"#)
            // Its deadline runs from when it is queued (a loaded machine may take a while to get there):
            // wait until it is, then past the deadline (sleeping at least 1.5 s guarantees that), then
            // start the engine.
            try await ServerTests.waitUntil("the request is queued") { h.model.backend.statistics.waiting == 1 }
            try await Task.sleep(for: .milliseconds(1500))
            h.model.backend.start()
            let r = try await response
            #expect(r.status == .ok)
            let choice = try #require((try ServerTests.json(r)["choices"] as? [[String: Any]])?.first)
            #expect(choice["finish_reason"] as? String == "abort")
            #expect(choice["text"] as? String == "")
        }
    }

    // A 1 s deadline here would race the engine thread's wake-up on a busy machine; with a deadline
    // no machine misses, the timeout must leave a request that starts in time alone. (That a request
    // already running is never cut by it needs the scheduler's clock injected: see the notes.)
    @Test("first-token timeout: a request that gets its first token in time runs to its end")
    func firstTokenTimeoutSparesStartedRequests() async throws {
        let h = try ServerTests.harness(options: ServerOptions(firstTokenTimeoutSeconds: 600))
        defer { h.model.backend.shutdown() }
        try await h.app.test(.router) { client in
            let ok = try await ServerTests.post(client, "/v1/completions", #"{"prompt":"hi","max_tokens":4,"ignore_eos":true}"#)
            let okChoice = try #require((try ServerTests.json(ok)["choices"] as? [[String: Any]])?.first)
            #expect(okChoice["finish_reason"] as? String == "length")
        }
    }
}

extension ServerTests {
    /// Polls `condition` until it holds, failing the test (not hanging it) after `seconds`: a generous
    /// bound, since a loaded CI machine can be slow to get there, never a stand-in for an event.
    static func waitUntil(_ what: String, seconds: Double = 120, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out after \(seconds) s waiting until \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
