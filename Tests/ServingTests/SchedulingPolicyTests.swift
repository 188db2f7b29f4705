import Serving
import TestSupport
import Testing

/// The scheduling policy on made-up requests: no model, no tokenizer, no thread.
@Suite("Scheduling policy")
struct SchedulingPolicyTests {
    static func policy(sequences: Int = 8, budget: Int = 512, blocks: Int = 64, blockSize: Int = 16,
                       prefixCaching: Bool = true) -> SchedulingPolicy {
        SchedulingPolicy(limits: SchedulingLimits(maxSequences: sequences, maxBatchTokens: budget, prefixCaching: prefixCaching),
                         blockCount: blocks, blockSize: blockSize, copyBlock: { _, _ in })
    }

    static func request(_ id: String, _ count: Int, first: Int = 0, promptLogits: Bool = false) -> ScheduledSequence {
        ScheduledSequence(id: id, promptTokens: Array(first ..< first + count), needsPromptLogits: promptLogits)
    }

    /// Runs the plan, then gives every sequence that is ready a made-up next token.
    @discardableResult
    static func run(_ policy: SchedulingPolicy, _ plan: StepPlan, token: Int = 7) -> [String] {
        let ready = policy.complete(plan)
        for entry in ready { policy.append(token, to: entry.sequence) }
        return ready.map(\.sequence.id)
    }

    static func shape(_ plan: StepPlan) -> [String] {
        plan.entries.map { "\($0.sequence.id):\($0.start)+\($0.count)\($0.logits == .last ? "L" : $0.logits == .all ? "A" : "")" }
    }

    @Test("running sequences go first; the step's token budget chunks the next prompt")
    func budgetAndOrder() {
        let p = Self.policy(budget: 128)
        for (id, n) in [("a", 100), ("b", 100), ("c", 60)] { p.enqueue(Self.request(id, n, first: id == "a" ? 0 : id == "b" ? 1000 : 2000)) }
        let first = p.plan()
        #expect(Self.shape(first) == ["a:0+100L", "b:0+28"])
        #expect(first.admitted.map(\.id) == ["a", "b"])
        #expect(Self.run(p, first) == ["a"])

        let second = p.plan()
        // a decodes its one token, b continues its prompt, c gets what is left of the budget.
        #expect(Self.shape(second) == ["a:100+1L", "b:28+72L", "c:0+55"])
        #expect(second.tokenCount == 128)
        #expect(Self.run(p, second) == ["a", "b"])
        #expect(Self.shape(p.plan()) == ["a:101+1L", "b:100+1L", "c:55+5L"])
    }

    @Test("no more sequences run at once than the limit; the rest wait in arrival order")
    func sequenceLimit() {
        let p = Self.policy(sequences: 2)
        for (k, id) in ["a", "b", "c"].enumerated() { p.enqueue(Self.request(id, 10, first: 100 * k)) }
        let plan = p.plan()
        #expect(plan.entries.map(\.sequence.id) == ["a", "b"])
        #expect(p.waiting.map(\.id) == ["c"])
        Self.run(p, plan)
        p.remove(p.running[0])
        #expect(p.plan().entries.map(\.sequence.id) == ["b", "c"])
    }

    @Test("a prompt that starts like a computed one takes its full blocks from the prefix cache, never its last token")
    func prefixReuse() {
        let p = Self.policy()
        let a = Self.request("a", 40)
        p.enqueue(a)
        Self.run(p, p.plan())
        p.remove(a)
        #expect(p.blocks.usedCount == 0)

        // Same first 32 tokens (two full blocks), then different ones.
        let b = ScheduledSequence(id: "b", promptTokens: Array(0 ..< 32) + [900, 901, 902])
        p.enqueue(b)
        let plan = p.plan()
        #expect(plan.prefixLookups.map(\.hit) == [32])
        #expect(Self.shape(plan) == ["b:32+3L"])
        #expect(b.cachedPromptTokens == 32)
        Self.run(p, plan)

        // Exactly two full blocks of the same tokens: the first is shared, 15 positions of the second
        // are copied, the last token is computed.
        let c = Self.request("c", 32)
        p.enqueue(c)
        let cPlan = p.plan()
        #expect(cPlan.entries.last.map(Self.shapeOf) == "c:31+1L")

        // A differing first token means no hit at all.
        let d = ScheduledSequence(id: "d", promptTokens: [5] + Array(1 ..< 40))
        p.enqueue(d)
        #expect(p.plan().prefixLookups.map(\.hit) == [0])
    }

    @Test("a repeated prompt starts from a copy of the cached start of its last block and computes one token")
    func repeatedPrompt() {
        final class Copies { var made: [(Int32, Int32)] = [] }
        let copies = Copies()
        let p = SchedulingPolicy(limits: SchedulingLimits(maxSequences: 4, maxBatchTokens: 512, prefixCaching: true),
                                 blockCount: 16, blockSize: 16, copyBlock: { copies.made.append(($0, $1)) })
        let a = Self.request("a", 40)
        p.enqueue(a)
        Self.run(p, p.plan())
        Self.run(p, p.plan())  // a holds 42 tokens, 41 computed: blocks 0, 1 full, block 2 partial (9 positions)
        p.remove(a)

        let b = Self.request("b", 40)
        p.enqueue(b)
        let plan = p.plan()
        #expect(Self.shape(plan) == ["b:39+1L"])
        #expect(plan.prefixLookups.map(\.hit) == [39])
        #expect(plan.copies.count == 1 && copies.made.count == 1)
        #expect(copies.made.first?.0 != copies.made.first?.1)
        #expect(b.blockTable.count == 3 && b.blockTable.last == copies.made.first?.1)
        Self.run(p, plan)
        p.remove(b)
        #expect(p.blocks.usedCount == 0)

        // A sequence that ended inside a block leaves that block's start for the next one.
        let c = Self.request("c", 20, first: 500)
        p.enqueue(c)
        Self.run(p, p.plan())
        p.remove(c)
        let again = ScheduledSequence(id: "c2", promptTokens: Array(500 ..< 520) + [7, 8])
        p.enqueue(again)
        // c computed positions 0...19 (its sampled 21st token never ran): 16 shared, 4 copied.
        #expect(Self.shape(p.plan()) == ["c2:20+2L"])
    }

    static func shapeOf(_ e: StepPlan.Entry) -> String { "\(e.sequence.id):\(e.start)+\(e.count)\(e.logits == .last ? "L" : "")" }

    @Test("with prefix caching off nothing is reused")
    func prefixCachingOff() {
        let p = Self.policy(prefixCaching: false)
        let a = Self.request("a", 40)
        p.enqueue(a)
        Self.run(p, p.plan())
        p.remove(a)
        p.enqueue(Self.request("b", 40))
        #expect(Self.shape(p.plan()) == ["b:0+40L"])
    }

    @Test("a request for prompt log-probabilities computes every position and asks for all logits")
    func promptLogits() {
        let p = Self.policy(budget: 24)
        let a = Self.request("a", 40)
        p.enqueue(a)
        while !p.running.isEmpty || !p.waiting.isEmpty {
            let plan = p.plan()
            if Self.run(p, plan) == ["a"] { break }
        }
        p.remove(a)
        let b = Self.request("b", 40, promptLogits: true)
        p.enqueue(b)
        let first = p.plan()
        #expect(first.prefixLookups.map(\.hit) == [0])
        #expect(Self.shape(first) == ["b:0+24A"])
        Self.run(p, first)
        // The last chunk ends the prompt: its last row samples the first token, its others score the prompt.
        #expect(Self.shape(p.plan()) == ["b:24+16A"])
    }

    @Test("out of blocks, the most recently admitted sequence is preempted to the front of the queue")
    func preemption() {
        // 6 blocks of 4 tokens: two sequences of 8 prompt tokens take 4 blocks; decoding they need more.
        let p = Self.policy(blocks: 6, blockSize: 4)
        let a = Self.request("a", 8), b = Self.request("b", 8, first: 100), c = Self.request("c", 8, first: 200)
        for s in [a, b, c] { p.enqueue(s) }
        let first = p.plan()
        #expect(first.entries.map(\.sequence.id) == ["a", "b"])
        #expect(p.waiting.map(\.id) == ["c"])  // 2 free blocks < 2 needed + 1 reserve
        Self.run(p, first)
        // a and b each need a third block for position 8: both fit (6 blocks).
        Self.run(p, p.plan())
        for _ in 0 ..< 3 { Self.run(p, p.plan()) }
        // Position 12 needs a fourth block each: there are none; b (admitted last) is preempted.
        let plan = p.plan()
        #expect(plan.preempted.map(\.id) == ["b"])
        #expect(plan.entries.map(\.sequence.id) == ["a"])
        #expect(plan.admitted.isEmpty)
        #expect(p.waiting.map(\.id) == ["b", "c"])
        #expect(b.computed == 0 && b.blockTable.isEmpty && b.preemptions == 1)
        // b keeps its generated tokens and recomputes them on return.
        #expect(b.tokens.count == 13)
        Self.run(p, plan)
        p.remove(a)
        let back = p.plan()
        // Its two full prompt blocks were still cached; the third (generated tokens) went to a.
        #expect(back.entries.first.map(Self.shapeOf) == "b:8+5L")
    }

    @Test("a sequence alone that outgrows the whole cache is handed back as exhausted")
    func exhausted() {
        let p = Self.policy(blocks: 2, blockSize: 4)
        let a = Self.request("a", 6)
        p.enqueue(a)
        Self.run(p, p.plan())
        Self.run(p, p.plan())  // position 6
        Self.run(p, p.plan())  // position 7: the 8th slot, blocks full
        let plan = p.plan()  // position 8 needs a third block
        #expect(plan.exhausted.map(\.id) == ["a"])
        #expect(plan.isEmpty && p.isIdle && !a.isActive)
        #expect(p.blocks.usedCount == 0)
    }

    @Test("a waiting prompt longer than the whole cache is handed back as exhausted, not left to block the queue")
    func exhaustedWhileWaiting() {
        let p = Self.policy(blocks: 4, blockSize: 4)
        p.enqueue(Self.request("long", 20))
        p.enqueue(Self.request("short", 5, first: 100))
        let plan = p.plan()
        #expect(plan.exhausted.map(\.id) == ["long"])
        #expect(Self.shape(plan) == ["short:0+5L"])
    }

    @Test("admission leaves a reserve of blocks for the running sequences' next tokens")
    func admissionReserve() {
        let p = Self.policy(blocks: 4, blockSize: 4)
        p.enqueue(Self.request("a", 7))
        Self.run(p, p.plan())  // a holds 2 blocks, its next token fits in its second block
        p.enqueue(Self.request("b", 8, first: 100))  // needs 2 blocks + 1 reserve > 2 free
        let plan = p.plan()
        #expect(plan.entries.map(\.sequence.id) == ["a"])
        #expect(p.waiting.map(\.id) == ["b"])
    }

    @Test("removing a sequence releases its blocks; removing twice is harmless")
    func removal() {
        let p = Self.policy(prefixCaching: false)
        let a = Self.request("a", 50)
        p.enqueue(a)
        Self.run(p, p.plan())
        #expect(p.blocks.usedCount == 4)
        p.remove(a)
        p.remove(a)
        #expect(p.blocks.usedCount == 0 && p.isIdle)
    }

    /// Many random requests driven to completion: every invariant holds at every step.
    @Test("random workloads: budget, sequence limit and block accounting hold; every request completes", arguments: 1 ... 8)
    func randomWorkload(seed: Int) {
        var random = SeededRandom(seed: UInt64(seed))
        let limits = (sequences: Int.random(in: 1 ... 6, using: &random), budget: Int.random(in: 8 ... 96, using: &random))
        let blockSize = [2, 4, 8][Int.random(in: 0 ... 2, using: &random)]
        let blockCount = Int.random(in: 8 ... 24, using: &random)
        let p = Self.policy(sequences: limits.sequences, budget: limits.budget, blocks: blockCount, blockSize: blockSize)
        let capacity = blockCount * blockSize
        var outstanding: [ObjectIdentifier: (sequence: ScheduledSequence, toGenerate: Int)] = [:]
        var completed = 0, exhausted = 0, submitted = 0
        // A few shared system prompts so that the prefix cache is exercised.
        let prefixes = (0 ..< 3).map { k in (0 ..< Int.random(in: 0 ... 12, using: &random)).map { 10_000 * (k + 1) + $0 } }
        for step in 0 ..< 5000 {
            if submitted < 40 && Int.random(in: 0 ... 1, using: &random) == 0 {
                let prefix = prefixes[Int.random(in: 0 ... 2, using: &random)]
                let longest = max(1, min(50, capacity - 1 - prefix.count))
                let own = (0 ..< Int.random(in: 1 ... longest, using: &random)).map { _ in Int.random(in: 0 ... 999, using: &random) }
                let s = ScheduledSequence(id: "r\(submitted)", promptTokens: prefix + own)
                p.enqueue(s)
                outstanding[ObjectIdentifier(s)] = (s, Int.random(in: 1 ... 60, using: &random))
                submitted += 1
            }
            let before = Dictionary(uniqueKeysWithValues: (p.running + p.waiting).map { (ObjectIdentifier($0), $0.computed) })
            let plan = p.plan()
            #expect(plan.tokenCount <= limits.budget)
            #expect(p.running.count <= limits.sequences)
            for s in plan.exhausted {
                #expect(s.tokens.count > capacity - limits.budget, "only a sequence near the whole cache's size is exhausted")
                outstanding[ObjectIdentifier(s)] = nil
                exhausted += 1
            }
            for entry in plan.entries {
                let s = entry.sequence
                #expect(entry.start == s.computed)
                #expect(entry.count >= 1 && entry.start + entry.count <= s.tokens.count)
                #expect(s.blockTable.count * blockSize >= entry.start + entry.count, "the blocks cover the positions written")
                if let old = before[ObjectIdentifier(s)], !plan.preempted.contains(where: { $0 === s }), old > 0 {
                    #expect(entry.start == old, "a running sequence continues where it stopped")
                }
            }
            // Distinct sequences share a block only through the prefix cache: then it is one of their
            // leading full blocks, both computed past it.
            var owner: [Int32: ScheduledSequence] = [:]
            for s in p.running {
                for (i, block) in s.blockTable.enumerated() {
                    if let other = owner[block] {
                        let end = (i + 1) * blockSize
                        #expect(Array(s.tokens.prefix(end)) == Array(other.tokens.prefix(end)), "a shared block holds the same tokens")
                    } else {
                        owner[block] = s
                    }
                }
            }
            for entry in p.complete(plan) {
                let id = ObjectIdentifier(entry.sequence)
                guard var item = outstanding[id] else { continue }
                item.toGenerate -= 1
                if item.toGenerate == 0 {
                    p.remove(entry.sequence)
                    outstanding[id] = nil
                    completed += 1
                } else {
                    outstanding[id] = item
                    p.append(Int.random(in: 0 ... 999, using: &random), to: entry.sequence)
                }
            }
            if submitted == 40 && p.isIdle { break }
            #expect(step < 4999, "the workload did not drain")
        }
        #expect(completed + exhausted == 40)
        #expect(outstanding.isEmpty && p.isIdle)
        #expect(p.blocks.usedCount == 0, "every block is released")
    }
}
