import Foundation
@testable import Server
import TestSupport
import Testing

/// The endpoint order of each balancing strategy (`UpstreamPool.preference`), without a network.
@Suite("Upstream load balancing")
struct UpstreamBalanceTests {
    static let keys = (0 ..< 5).map { "http://gpu-\($0):8000/v1" }

    static func order(_ balance: UpstreamBalance, available: [Bool] = Array(repeating: true, count: 5), inFlight: [Int] = [0, 0, 0, 0, 0],
                      tried: Set<Int> = [], start: Int = 0, affinity: String? = nil, seed: UInt64 = 1) -> [Int] {
        var random = SeededRandom(seed: seed)
        return UpstreamPool.preference(available: available, inFlight: inFlight, keys: keys, tried: tried, balance: balance,
                                       start: start, affinity: affinity, random: &random)
    }

    @Test("least outstanding: fewest in flight first, ties in turn from the cursor, unavailable left out, tried last")
    func leastOutstanding() {
        #expect(Self.order(.leastOutstanding, inFlight: [3, 1, 0, 1, 2]) == [2, 1, 3, 4, 0])
        #expect(Self.order(.leastOutstanding, inFlight: [0, 0, 0, 0, 0], start: 3) == [3, 4, 0, 1, 2])
        #expect(Self.order(.leastOutstanding, available: [true, false, true, true, false], inFlight: [0, 0, 5, 0, 0], tried: [0]) == [3, 2, 0])
    }

    @Test("round robin: in turn from the cursor whatever is in flight; tried last")
    func roundRobin() {
        #expect(Self.order(.roundRobin, inFlight: [9, 0, 0, 0, 0], start: 0) == [0, 1, 2, 3, 4])
        #expect(Self.order(.roundRobin, start: 7) == [2, 3, 4, 0, 1])
        #expect(Self.order(.roundRobin, tried: [2], start: 2) == [3, 4, 0, 1, 2])
    }

    @Test("power of two: the first choice is the less busy of two sampled endpoints, never the busiest of all; spread over many draws")
    func powerOfTwo() {
        var firsts: [Int: Int] = [:]
        for seed in 1 ... 2000 {
            let order = Self.order(.powerOfTwo, inFlight: [4, 0, 1, 2, 3], seed: UInt64(seed))
            #expect(Set(order) == Set(0 ..< 5) && order.count == 5)
            firsts[order[0], default: 0] += 1
        }
        #expect(firsts[0] == nil)  // the busiest endpoint loses every comparison
        // The least busy wins whenever it is sampled (2 of 5 draws in expectation, 40%); the second least
        // when it is sampled without the first (30%).
        #expect((700 ... 900).contains(firsts[1] ?? 0) && (500 ... 700).contains(firsts[2] ?? 0))
        #expect(Self.order(.powerOfTwo, available: [false, false, true, false, false]) == [2])
    }

    @Test("consistent hash: one key keeps its endpoint; removing an endpoint moves only its keys; no key falls back to fewest in flight")
    func consistentHash() {
        let users = (0 ..< 400).map { "user:\($0)" }
        let all = users.map { Self.order(.consistentHash, affinity: $0)[0] }
        #expect(users.map { Self.order(.consistentHash, inFlight: [5, 0, 2, 7, 1], start: 3, affinity: $0)[0] } == all)
        #expect(Set(all) == Set(0 ..< 5))
        let counts = Dictionary(grouping: all, by: { $0 }).mapValues(\.count)
        #expect(counts.values.allSatisfy { (40 ... 130).contains($0) }, "\(counts)")
        let without2 = users.map { Self.order(.consistentHash, available: [true, true, false, true, true], affinity: $0)[0] }
        for (before, after) in zip(all, without2) {
            if before != 2 { #expect(after == before) } else { #expect(after != 2) }
        }
        // A tried endpoint goes last, so a retry leaves the key's own endpoint.
        let first = Self.order(.consistentHash, affinity: "key:abc")
        #expect(Self.order(.consistentHash, tried: [first[0]], affinity: "key:abc") == Array(first.dropFirst()) + [first[0]])
        #expect(Self.order(.consistentHash, inFlight: [3, 1, 0, 1, 2]) == [2, 1, 3, 4, 0])
        #expect(UpstreamPool.weight("user:1", Self.keys[0]) == UpstreamPool.weight("user:1", Self.keys[0]))
    }
}
