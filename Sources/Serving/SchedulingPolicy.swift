/// One request as the scheduling policy sees it: its tokens, how many of them have keys and values
/// in the cache, and the blocks that hold them. No model, no sampling, no text.
public final class ScheduledSequence {
    public let id: String
    /// Tokens of the prompt (the first `promptCount` of `tokens`).
    public let promptCount: Int
    /// Prompt followed by the tokens generated so far.
    public fileprivate(set) var tokens: [Int]
    /// What the prefix cache hashes, one per token: the tokens themselves, except image tokens, which are keyed by
    /// their image's content (`MultimodalPrompt.cacheKeys`).
    public fileprivate(set) var keys: [Int]
    /// Positions 0..<computed hold this sequence's keys and values.
    public fileprivate(set) var computed = 0
    public fileprivate(set) var blockTable: [Int32] = []
    /// Chain hashes of the leading full blocks registered in the prefix cache.
    fileprivate var hashes: [UInt64] = []
    /// Every prompt position needs logits (prompt log-probabilities), so no prefix is taken from the cache.
    public let needsPromptLogits: Bool
    /// Prompt tokens whose keys and values came from the prefix cache at first admission.
    public fileprivate(set) var cachedPromptTokens = 0
    fileprivate var prefixCounted = false
    public fileprivate(set) var preemptions = 0
    /// Whether the policy has ever admitted it to the running set.
    public fileprivate(set) var wasAdmitted = false
    /// Whether it is still in the policy's queues.
    public fileprivate(set) var isActive = false

    public init(id: String, promptTokens: [Int], needsPromptLogits: Bool = false, cacheKeys: [Int]? = nil) {
        precondition(cacheKeys == nil || cacheKeys!.count == promptTokens.count)
        self.id = id
        promptCount = promptTokens.count
        tokens = promptTokens
        keys = cacheKeys ?? promptTokens
        self.needsPromptLogits = needsPromptLogits
    }

    /// Tokens not yet in the cache.
    public var pendingCount: Int { tokens.count - computed }
}

/// Which rows of logits an entry of a step needs.
public enum LogitsNeed: Sendable, Equatable {
    case none
    /// The last position's, to sample the next token.
    case last
    /// Every position's (prompt log-probabilities).
    case all
}

/// What one engine step runs, as decided by `SchedulingPolicy.plan()`.
public struct StepPlan {
    public struct Entry {
        public let sequence: ScheduledSequence
        /// Positions start..<start+count of the sequence's tokens are run.
        public let start: Int
        public let count: Int
        public let logits: LogitsNeed

        public var tokens: ArraySlice<Int> { sequence.tokens[start ..< start + count] }
    }

    public internal(set) var entries: [Entry] = []
    /// Sent back to the front of the queue to be recomputed later; anything derived from their
    /// prefill (prompt log-probabilities) is void.
    public internal(set) var preempted: [ScheduledSequence] = []
    /// Alone in the running set and still out of blocks, or waiting with more tokens than the whole
    /// cache holds: the cache cannot hold them any longer. They are out of the policy; the caller
    /// ends them (finish reason `length`).
    public internal(set) var exhausted: [ScheduledSequence] = []
    /// Admitted for the first time in this step.
    public internal(set) var admitted: [ScheduledSequence] = []
    /// Prefix-cache lookups made in this step: prompt tokens asked for, tokens found.
    public internal(set) var prefixLookups: [(queried: Int, hit: Int)] = []
    /// Block copies made for this step (copy on write of a cached block's start), already done
    /// through the policy's `copyBlock`.
    public internal(set) var copies: [(source: Int32, destination: Int32)] = []

    public var tokenCount: Int { entries.reduce(0) { $0 + $1.count } }
    public var isEmpty: Bool { entries.isEmpty }
}

/// Limits the policy plans under.
public struct SchedulingLimits: Sendable, Equatable {
    /// Sequences in the running set at most.
    public var maxSequences: Int
    /// Tokens (prefill chunks plus one per decoding sequence) per step at most.
    public var maxBatchTokens: Int
    /// Whether full blocks are shared between sequences with the same prefix.
    public var prefixCaching: Bool

    public init(maxSequences: Int, maxBatchTokens: Int, prefixCaching: Bool) {
        self.maxSequences = max(1, maxSequences)
        self.maxBatchTokens = max(1, maxBatchTokens)
        self.prefixCaching = prefixCaching
    }
}

/// Continuous batching as a pure decision procedure (vLLM v1's scheduler shape): waiting and running
/// queues and the KV block manager in, a step plan out. It owns no thread and calls no model, so every
/// decision can be tested with made-up requests.
///
/// Each step: running sequences first, oldest first, each taking one decode token or the next chunk
/// of its prefill under the step's token budget; when one needs a block and none is free, the most
/// recently admitted sequence is preempted (its blocks released, still cached by prefix) and goes
/// back to the front of the queue. Then admissions in arrival order while the budget, the sequence
/// limit and the free blocks allow (keeping a small reserve of blocks for the running sequences' next
/// tokens); a new sequence first takes the longest cached prefix of its prompt.
///
/// Not thread-safe: one engine loop drives it.
public final class SchedulingPolicy {
    public let limits: SchedulingLimits
    public let blocks: BlockManager
    public private(set) var waiting: [ScheduledSequence] = []
    public private(set) var running: [ScheduledSequence] = []

    /// Copies the keys and values of one block into another (the engine's cache does it). Called
    /// during `plan()` when a new sequence starts from part of a cached block.
    private let copyBlock: (_ source: Int32, _ destination: Int32) -> Void

    public init(limits: SchedulingLimits, blockCount: Int, blockSize: Int,
                copyBlock: @escaping (_ source: Int32, _ destination: Int32) -> Void) {
        self.limits = limits
        blocks = BlockManager(blockCount: blockCount, blockSize: blockSize)
        self.copyBlock = copyBlock
    }

    public var isIdle: Bool { waiting.isEmpty && running.isEmpty }

    /// Queues a new sequence behind the others.
    public func enqueue(_ sequence: ScheduledSequence) {
        precondition(!sequence.isActive, "sequence \(sequence.id) queued twice")
        sequence.isActive = true
        waiting.append(sequence)
    }

    /// Takes a sequence out (finished, cancelled, failed) and releases its blocks. Idempotent.
    public func remove(_ sequence: ScheduledSequence) {
        running.removeAll { $0 === sequence }
        waiting.removeAll { $0 === sequence }
        sequence.isActive = false
        releaseBlocks(sequence)
    }

    /// Gives a sequence's blocks back, first offering its partly filled last block to the prefix
    /// cache (a repeated prompt, or this sequence after a preemption, copies it instead of recomputing).
    private func releaseBlocks(_ sequence: ScheduledSequence) {
        let size = blocks.blockSize
        let full = sequence.computed / size
        if limits.prefixCaching && sequence.computed % size != 0 && sequence.hashes.count == full && full < sequence.blockTable.count {
            blocks.registerPartial(sequence.blockTable[full], parent: sequence.hashes.last ?? 0,
                                   tokens: sequence.keys[full * size ..< sequence.computed])
        }
        blocks.release(sequence.blockTable)
        sequence.blockTable = []
        sequence.hashes = []
    }

    /// Decides the next step. Sequences it preempts or exhausts are already moved when it returns.
    public func plan() -> StepPlan {
        var plan = StepPlan()
        var budget = limits.maxBatchTokens
        var scheduled: [(ScheduledSequence, Int)] = []

        // 1. Running sequences, oldest first.
        var index = 0
        while index < running.count && budget > 0 {
            let sequence = running[index]
            let count = min(sequence.pendingCount, budget)
            var fits = reserve(sequence, upTo: sequence.computed + count)
            while !fits, let victim = running.last, victim !== sequence {
                preempt(victim)
                plan.preempted.append(victim)
                fits = reserve(sequence, upTo: sequence.computed + count)
            }
            if !fits {
                if running.count == 1 {
                    remove(sequence)
                    plan.exhausted.append(sequence)
                } else {
                    preempt(sequence)
                    plan.preempted.append(sequence)
                }
                break
            }
            scheduled.append((sequence, count))
            budget -= count
            index += 1
        }

        // 2. Admissions in arrival order (none in a step that had to preempt: room is short).
        while plan.preempted.isEmpty && budget > 0 && running.count < limits.maxSequences, let sequence = waiting.first {
            if sequence.tokens.count > blocks.blockCount * blocks.blockSize {
                // Preempted after outgrowing the whole cache: it could never run again.
                remove(sequence)
                plan.exhausted.append(sequence)
                continue
            }
            if sequence.blockTable.isEmpty {
                if limits.prefixCaching && !sequence.needsPromptLogits {
                    let hit = blocks.acquirePrefix(of: sequence.keys)
                    sequence.blockTable = hit.blocks
                    sequence.hashes = hit.hashes
                    sequence.computed = hit.blocks.count * blocks.blockSize
                    if let copy = hit.copy {
                        // Copy on write: the cached block's start goes into a block of its own.
                        if let own = blocks.allocate() {
                            copyBlock(copy.source, own)
                            sequence.blockTable.append(own)
                            sequence.computed += copy.count
                            plan.copies.append((copy.source, own))
                        }
                        blocks.release([copy.source])
                    }
                }
                if !sequence.prefixCounted {
                    sequence.prefixCounted = true
                    sequence.cachedPromptTokens = sequence.computed
                    plan.prefixLookups.append((sequence.promptCount, sequence.computed))
                }
            }
            let count = min(sequence.pendingCount, budget)
            let reserveBlocks = running.isEmpty ? 0 : min(running.count, max(1, blocks.blockCount / 100))
            let needed = blocksNeeded(sequence, upTo: sequence.computed + count)
            guard needed + reserveBlocks <= blocks.availableCount, reserve(sequence, upTo: sequence.computed + count) else {
                // Wait for running sequences to free blocks; the prefix blocks stay cached meanwhile.
                releaseBlocks(sequence)
                sequence.computed = 0
                break
            }
            waiting.removeFirst()
            if !sequence.wasAdmitted {
                sequence.wasAdmitted = true
                plan.admitted.append(sequence)
            }
            running.append(sequence)
            scheduled.append((sequence, count))
            budget -= count
        }

        plan.entries = scheduled.map { sequence, count in
            let end = sequence.computed + count
            let logits: LogitsNeed = sequence.needsPromptLogits && sequence.computed < sequence.promptCount - 1
                ? .all : end == sequence.tokens.count ? .last : .none
            return StepPlan.Entry(sequence: sequence, start: sequence.computed, count: count, logits: logits)
        }
        return plan
    }

    /// Records that the plan's forward pass ran: their positions are now cached and full blocks are
    /// offered to the prefix cache. Returns the entries whose sequence is fully computed (each needs
    /// its next token sampled and `append`ed, or to be removed).
    @discardableResult
    public func complete(_ plan: StepPlan) -> [StepPlan.Entry] {
        var ready: [StepPlan.Entry] = []
        for entry in plan.entries where entry.sequence.isActive {
            let sequence = entry.sequence
            sequence.computed = entry.start + entry.count
            registerFullBlocks(sequence)
            if sequence.computed == sequence.tokens.count { ready.append(entry) }
        }
        return ready
    }

    /// Adds a sampled token to a running sequence; the next step computes it.
    public func append(_ token: Int, to sequence: ScheduledSequence) {
        sequence.tokens.append(token)
        sequence.keys.append(token)
    }

    private func blocksNeeded(_ sequence: ScheduledSequence, upTo positions: Int) -> Int {
        max(0, (positions + blocks.blockSize - 1) / blocks.blockSize - sequence.blockTable.count)
    }

    /// Gives `sequence` blocks for positions up to `positions`; false when there are not enough.
    private func reserve(_ sequence: ScheduledSequence, upTo positions: Int) -> Bool {
        let needed = blocksNeeded(sequence, upTo: positions)
        guard needed <= blocks.availableCount else { return false }
        for _ in 0 ..< needed { sequence.blockTable.append(blocks.allocate()!) }
        return true
    }

    private func registerFullBlocks(_ sequence: ScheduledSequence) {
        guard limits.prefixCaching else { return }
        let size = blocks.blockSize
        while (sequence.hashes.count + 1) * size <= sequence.computed {
            let b = sequence.hashes.count
            let slice = sequence.keys[b * size ..< (b + 1) * size]
            let hash = BlockManager.chainHash(parent: sequence.hashes.last ?? 0, tokens: slice)
            blocks.register(sequence.blockTable[b], parent: sequence.hashes.last ?? 0, hash: hash, tokens: slice)
            sequence.hashes.append(hash)
        }
    }

    private func preempt(_ sequence: ScheduledSequence) {
        running.removeAll { $0 === sequence }
        releaseBlocks(sequence)
        sequence.computed = 0
        sequence.preemptions += 1
        waiting.insert(sequence, at: 0)
    }
}
