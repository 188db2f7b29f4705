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

    @Test("weights: smooth weighted round robin spreads each endpoint's share over the cycle")
    func weightedRoundRobin() {
        #expect(UpstreamPool.smoothCycle([5, 1, 1]) == [0, 0, 1, 0, 2, 0, 0])
        var firsts: [Int: Int] = [:]
        for start in 0 ..< 700 {
            var random = SeededRandom(seed: 1)
            let order = UpstreamPool.preference(available: [true, true, true], inFlight: [0, 0, 0], keys: Array(Self.keys.prefix(3)),
                                                tried: [], balance: .roundRobin, start: start, affinity: nil, weights: [5, 1, 1], random: &random)
            #expect(Set(order) == [0, 1, 2])
            firsts[order[0], default: 0] += 1
        }
        #expect(firsts == [0: 500, 1: 100, 2: 100])
    }

    @Test("weights: least outstanding compares requests in flight per unit of weight; power of two favours the heavier")
    func weightedLeastOutstanding() {
        var random = SeededRandom(seed: 1)
        // 2 in flight on a weight-3 endpoint is lighter than 1 on a weight-1 one: 3/3 < 2/1.
        let order = UpstreamPool.preference(available: [true, true], inFlight: [2, 1], keys: Array(Self.keys.prefix(2)), tried: [],
                                            balance: .leastOutstanding, start: 0, affinity: nil, weights: [3, 1], random: &random)
        #expect(order == [0, 1])
        var firsts: [Int: Int] = [:]
        for seed in 1 ... 2000 {
            var r = SeededRandom(seed: UInt64(seed))
            let o = UpstreamPool.preference(available: [true, true, true], inFlight: [0, 0, 0], keys: Array(Self.keys.prefix(3)), tried: [],
                                            balance: .powerOfTwo, start: 0, affinity: nil, weights: [4, 1, 1], random: &r)
            firsts[o[0], default: 0] += 1
        }
        // Endpoint 0 is drawn in most pairs and wins every tie on load against a lighter one.
        #expect(firsts[0]! > 1500 && firsts[1]! > 0 && firsts[2]! > 0)
    }

    @Test("weights: consistent hashing gives each endpoint keys in proportion to its weight; removing one moves only its keys")
    func weightedConsistentHash() {
        let keys = Array(Self.keys.prefix(3))
        func first(_ key: String, available: [Bool] = [true, true, true]) -> Int {
            var random = SeededRandom(seed: 1)
            return UpstreamPool.preference(available: available, inFlight: [0, 0, 0], keys: keys, tried: [], balance: .consistentHash,
                                           start: 0, affinity: key, weights: [1, 2, 1], random: &random)[0]
        }
        var counts = [0, 0, 0]
        var moved = 0
        for k in 0 ..< 4000 {
            let key = "session:\(k)"
            let e = first(key)
            counts[e] += 1
            let without = first(key, available: [true, true, false])
            if e != 2 && without != e { moved += 1 }
        }
        // Expected 1000 / 2000 / 1000.
        #expect(abs(counts[0] - 1000) < 150 && abs(counts[1] - 2000) < 150 && abs(counts[2] - 1000) < 150, "\(counts)")
        #expect(moved == 0)
    }
}
