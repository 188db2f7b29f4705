public import Engine
import Foundation
public import InferenceCore
public import Tokenizer

/// Continuous batching over one model: every running sequence advances in each engine step, new
/// requests join between steps, long prompts are prefilled in chunks under a per-step token budget.
///
/// Requests come in through `submit` from any thread and wait in a bounded queue. One dedicated
/// engine thread (not a Swift concurrency thread: a forward pass blocks for milliseconds) runs the
/// loop: take cancellations and new requests, plan a step (vLLM's order: running sequences first,
/// then admissions while the token budget, the sequence limit and the KV blocks allow), run the
/// batched forward pass, sample, and send each request its tokens through its `AsyncStream`.
///
/// KV blocks come from a `BlockManager` over one `PagedKVCache` arena; full blocks are shared by
/// prefix (a repeated system prompt is computed once). When a running sequence needs a block and
/// none is free, the most recently admitted sequence is preempted: its blocks are released (they
/// stay cached by prefix) and it goes back to the front of the queue, to be recomputed on return.
public final class Scheduler: @unchecked Sendable {
    public let model: any LanguageModel
    public let tokenizer: Tokenizer
    public let configuration: SchedulerConfiguration
    /// The longest sequence (prompt plus generated) one request may have.
    public let contextLength: Int
    private let observer: (any SchedulerObserver)?

    // Shared with submitters, under `condition`.
    private let condition = NSCondition()
    private var inbox: [Pending] = []
    private var cancelled: Set<String> = []
    private var waitingCount = 0
    private var isDraining = false
    private var isStopped = false
    private var thread: Thread?
    private var published = SchedulerStatistics()
    private var idleContinuations: [CheckedContinuation<Void, Never>] = []

    // Engine thread only.
    private let cache: PagedKVCache
    private let blocks: BlockManager
    private var waiting: [Sequence] = []
    private var running: [Sequence] = []
    private var statistics = SchedulerStatistics()
    private let clock = ContinuousClock()

    private struct Pending {
        let request: GenerationRequest
        let continuation: AsyncStream<GenerationEvent>.Continuation
        let arrival: ContinuousClock.Instant
    }

    public init(model: any LanguageModel, tokenizer: Tokenizer, configuration: SchedulerConfiguration,
                contextLength: Int? = nil, observer: (any SchedulerObserver)? = nil) {
        self.model = model
        self.tokenizer = tokenizer
        self.configuration = configuration
        self.contextLength = min(contextLength ?? model.configuration.contextLength, model.configuration.contextLength)
        self.observer = observer
        cache = PagedKVCache(configuration: model.configuration, tokens: configuration.cacheTokens, blockSize: configuration.blockSize,
                             elementType: configuration.kvType)
        blocks = BlockManager(blockCount: cache.blockCount, blockSize: cache.blockSize)
        statistics.kvBlocksTotal = cache.blockCount
        published = statistics
    }

    /// Bytes of the KV cache arena.
    public var cacheBytes: Int { cache.blockCount * cache.blockSize * PagedKVCache.bytesPerToken(model.configuration, elementType: cache.elementType) }
    public var cacheTokenCapacity: Int { cache.blockCount * cache.blockSize }

    /// Starts the engine thread. Idempotent.
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard thread == nil else { return }
        let t = Thread { [self] in self.loop() }
        t.name = "autoglm-engine"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Checks a request and queues it. The stream yields the request's tokens, then its outcome;
    /// ending the stream early (the client went away) cancels the request and frees its blocks.
    public func submit(_ request: GenerationRequest) throws(SchedulerError) -> AsyncStream<GenerationEvent> {
        try validate(request)
        let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream()
        condition.lock()
        if isDraining || isStopped {
            condition.unlock()
            throw .draining
        }
        guard waitingCount < configuration.maxQueue else {
            let retry = retryAfterLocked()
            condition.unlock()
            throw .queueFull(capacity: configuration.maxQueue, retryAfterSeconds: retry)
        }
        waitingCount += 1
        inbox.append(Pending(request: request, continuation: continuation, arrival: clock.now))
        condition.signal()
        condition.unlock()
        let id = request.id
        continuation.onTermination = { [weak self] reason in
            if case .cancelled = reason { self?.cancel(id) }
        }
        return stream
    }

    /// Ends a request early; its stream finishes with `finishReason == .cancelled`.
    public func cancel(_ id: String) {
        condition.lock()
        cancelled.insert(id)
        condition.signal()
        condition.unlock()
    }

    /// Stops taking new requests; those already accepted run to completion.
    public func beginDraining() {
        condition.lock()
        isDraining = true
        condition.broadcast()
        condition.unlock()
    }

    public var isAcceptingRequests: Bool {
        condition.lock()
        defer { condition.unlock() }
        return !isDraining && !isStopped
    }

    /// Waits until no request is waiting or running.
    public func waitUntilIdle() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if published.running == 0 && waitingCount == 0 && inbox.isEmpty {
                condition.unlock()
                continuation.resume()
            } else {
                idleContinuations.append(continuation)
                condition.unlock()
            }
        }
    }

    /// Stops the engine thread; requests still in flight end with `cancelled`.
    public func shutdown() {
        condition.lock()
        isDraining = true
        isStopped = true
        condition.broadcast()
        condition.unlock()
    }

    public var currentStatistics: SchedulerStatistics {
        condition.lock()
        defer { condition.unlock() }
        var s = published
        s.waiting = waitingCount
        return s
    }

    private func validate(_ request: GenerationRequest) throws(SchedulerError) {
        let prompt = request.promptTokens.count
        guard prompt > 0 else { throw .emptyPrompt }
        let vocabulary = model.configuration.vocabularySize
        if let bad = request.promptTokens.first(where: { $0 < 0 || $0 >= vocabulary }) {
            throw .invalidToken(bad, vocabularySize: vocabulary)
        }
        guard prompt + request.stop.maxTokens <= contextLength else {
            throw .contextOverflow(promptTokens: prompt, maxTokens: request.stop.maxTokens, contextLength: contextLength)
        }
        guard prompt + 1 <= cacheTokenCapacity else {
            throw .exceedsCache(promptTokens: prompt, cacheTokens: cacheTokenCapacity)
        }
    }

    /// A rough wait: the queue ahead divided by the sequences served at once, times a step-ish second.
    private func retryAfterLocked() -> Int {
        max(1, min(60, waitingCount / max(1, configuration.maxSequences)))
    }

    // MARK: - Engine thread

    private final class Sequence {
        let request: GenerationRequest
        let continuation: AsyncStream<GenerationEvent>.Continuation
        let arrival: ContinuousClock.Instant
        let promptCount: Int
        /// Prompt followed by the tokens generated so far.
        var tokens: [Int]
        /// Positions 0..<computed hold this sequence's keys and values.
        var computed = 0
        var blockTable: [Int32] = []
        /// Chain hashes of the leading full blocks registered in the prefix cache.
        var hashes: [UInt64] = []
        var generated: [Int] = []
        var sampler: Sampler
        var detokenizer: IncrementalDetokenizer
        var stopMatcher: StopStringMatcher
        var cachedPromptTokens = 0
        var prefixCounted = false
        var preemptions = 0
        var admitted: ContinuousClock.Instant?
        /// Filled during prefill when the request asks for prompt log-probabilities.
        var promptLogprobs: [PromptTokenLogprob] = []
        var firstToken: ContinuousClock.Instant?
        var lastToken: ContinuousClock.Instant?

        init(_ pending: Pending, tokenizer: Tokenizer) {
            request = pending.request
            continuation = pending.continuation
            arrival = pending.arrival
            promptCount = request.promptTokens.count
            tokens = request.promptTokens
            sampler = Sampler(request.sampling)
            detokenizer = IncrementalDetokenizer(tokenizer: tokenizer, renderSpecial: false)
            stopMatcher = StopStringMatcher(request.stop.stopStrings)
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while inbox.isEmpty && cancelled.isEmpty && running.isEmpty && waiting.isEmpty && !isStopped {
                condition.wait()
            }
            let arrivals = inbox
            inbox.removeAll()
            let cancellations = cancelled
            cancelled.removeAll()
            let stopping = isStopped
            condition.unlock()

            for pending in arrivals { waiting.append(Sequence(pending, tokenizer: tokenizer)) }
            let now = clock.now
            for sequence in running + waiting {
                if cancellations.contains(sequence.request.id) || stopping {
                    finish(sequence, reason: .cancelled)
                } else if let deadline = sequence.request.deadline, now >= deadline {
                    finish(sequence, reason: .cancelled)
                } else if let deadline = sequence.request.firstTokenDeadline, sequence.admitted == nil, now >= deadline {
                    // Still queued, never started: overload, not a slow prefill (a long prompt on a
                    // big model may legitimately take minutes; timeouts.request bounds that).
                    finish(sequence, reason: .cancelled)
                }
            }
            if stopping {
                publish()
                return
            }
            if !running.isEmpty || !waiting.isEmpty { step() }
            publish()
        }
    }

    private func publish() {
        statistics.running = running.count
        statistics.kvBlocksUsed = blocks.usedCount
        condition.lock()
        let accepted = waiting.count + inbox.count
        waitingCount = accepted
        published = statistics
        var resumed: [CheckedContinuation<Void, Never>] = []
        if running.isEmpty && accepted == 0 {
            resumed = idleContinuations
            idleContinuations.removeAll()
        }
        condition.unlock()
        for c in resumed { c.resume() }
    }

    /// Plans and runs one engine step.
    private func step() {
        var budget = configuration.maxBatchTokens
        var scheduled: [(sequence: Sequence, count: Int)] = []
        var preemptedThisStep = false

        // 1. Running sequences, oldest first: each decodes one token or continues its prefill.
        var index = 0
        while index < running.count && budget > 0 {
            let sequence = running[index]
            let count = min(sequence.tokens.count - sequence.computed, budget)
            var fits = reserve(sequence, upTo: sequence.computed + count)
            while !fits, let victim = running.last, victim !== sequence {
                preempt(victim)
                preemptedThisStep = true
                fits = reserve(sequence, upTo: sequence.computed + count)
            }
            if !fits {
                if running.count == 1 {
                    // Alone and still out of blocks: the cache cannot hold this sequence any longer.
                    finish(sequence, reason: .length)
                } else {
                    preempt(sequence)
                    preemptedThisStep = true
                }
                break
            }
            scheduled.append((sequence, count))
            budget -= count
            index += 1
        }

        // 2. Admissions from the queue, in arrival order, while there is room.
        while !preemptedThisStep && budget > 0 && running.count < configuration.maxSequences, let sequence = waiting.first {
            if sequence.blockTable.isEmpty {
                if configuration.prefixCaching && sequence.request.promptLogprobs == nil {
                    let hit = blocks.acquirePrefix(of: sequence.tokens)
                    sequence.blockTable = hit.blocks
                    sequence.hashes = hit.hashes
                    sequence.computed = hit.blocks.count * blocks.blockSize
                }
                if !sequence.prefixCounted {
                    sequence.prefixCounted = true
                    sequence.cachedPromptTokens = sequence.computed
                    statistics.prefixQueriedTokens += sequence.promptCount
                    statistics.prefixHitTokens += sequence.computed
                    observer?.prefixCacheLookup(queriedTokens: sequence.promptCount, hitTokens: sequence.computed)
                }
            }
            let count = min(sequence.tokens.count - sequence.computed, budget)
            // Keep a small reserve of blocks for the running sequences' next tokens.
            let reserveBlocks = running.isEmpty ? 0 : min(running.count, max(1, blocks.blockCount / 100))
            let needed = blocksNeeded(sequence, upTo: sequence.computed + count)
            guard needed + reserveBlocks <= blocks.availableCount, reserve(sequence, upTo: sequence.computed + count) else {
                // Wait for running sequences to free blocks; the prefix blocks stay cached meanwhile.
                blocks.release(sequence.blockTable)
                sequence.blockTable = []
                sequence.hashes = []
                sequence.computed = 0
                break
            }
            waiting.removeFirst()
            if sequence.admitted == nil { sequence.admitted = clock.now }
            running.append(sequence)
            scheduled.append((sequence, count))
            budget -= count
        }

        guard !scheduled.isEmpty else { return }
        let entries = scheduled.map { item in
            let end = item.sequence.computed + item.count
            let wantsPrompt = item.sequence.request.promptLogprobs != nil && item.sequence.computed < item.sequence.promptCount - 1
            return BatchEntry(tokens: Array(item.sequence.tokens[item.sequence.computed ..< end]),
                              startPosition: item.sequence.computed, blockTable: item.sequence.blockTable,
                              logits: wantsPrompt ? .all : end == item.sequence.tokens.count ? .last : .none)
        }
        let output: LogitsBatch
        do {
            output = try model.forward(entries, cache: cache)
        } catch {
            for item in scheduled { fail(item.sequence, .engine(error.description)) }
            return
        }
        statistics.steps += 1
        let now = clock.now
        var batchTokens = 0
        for (e, item) in scheduled.enumerated() {
            let sequence = item.sequence
            batchTokens += item.count
            if sequence.computed < sequence.promptCount {
                statistics.promptTokens += min(item.count, sequence.promptCount - sequence.computed)
            }
            if entries[e].logits == .all { recordPromptLogprobs(sequence, rows: output.rowsPerEntry[e], of: output, count: item.count) }
            sequence.computed += item.count
            registerFullBlocks(sequence)
            guard sequence.computed == sequence.tokens.count else { continue }
            emitNextToken(sequence, logits: output.last(of: e), now: now)
        }
        observer?.stepCompleted(batchTokens: batchTokens, batchSequences: scheduled.count, statistics: statistics)
    }

    /// Row j of the chunk (position computed + j) predicts the token at position computed + j + 1.
    private func recordPromptLogprobs(_ sequence: Sequence, rows: Range<Int>, of output: LogitsBatch, count: Int) {
        let top = sequence.request.promptLogprobs ?? 0
        for j in 0 ..< count {
            let target = sequence.computed + j + 1
            guard target < sequence.promptCount else { break }
            let logits = output.row(rows.lowerBound + j)
            let id = sequence.tokens[target]
            sequence.promptLogprobs.append(PromptTokenLogprob(
                id: id, logprob: Sampler.logSoftmax(logits, at: id),
                topLogprobs: top > 0 ? Sampler.topLogprobs(logits, count: top) : []))
        }
    }

    private func blocksNeeded(_ sequence: Sequence, upTo positions: Int) -> Int {
        max(0, (positions + blocks.blockSize - 1) / blocks.blockSize - sequence.blockTable.count)
    }

    /// Gives `sequence` blocks for positions up to `positions`; false when there are not enough.
    private func reserve(_ sequence: Sequence, upTo positions: Int) -> Bool {
        let needed = blocksNeeded(sequence, upTo: positions)
        guard needed <= blocks.availableCount else { return false }
        for _ in 0 ..< needed { sequence.blockTable.append(blocks.allocate()!) }
        return true
    }

    private func registerFullBlocks(_ sequence: Sequence) {
        guard configuration.prefixCaching else { return }
        let size = blocks.blockSize
        while (sequence.hashes.count + 1) * size <= sequence.computed {
            let b = sequence.hashes.count
            let slice = sequence.tokens[b * size ..< (b + 1) * size]
            let hash = BlockManager.chainHash(parent: sequence.hashes.last ?? 0, tokens: slice)
            blocks.register(sequence.blockTable[b], hash: hash, tokens: slice)
            sequence.hashes.append(hash)
        }
    }

    private func preempt(_ sequence: Sequence) {
        running.removeAll { $0 === sequence }
        blocks.release(sequence.blockTable)
        sequence.blockTable = []
        sequence.hashes = []
        sequence.computed = 0
        sequence.promptLogprobs = []
        sequence.preemptions += 1
        statistics.preemptions += 1
        observer?.preempted()
        waiting.insert(sequence, at: 0)
    }

    private func emitNextToken(_ sequence: Sequence, logits: ArraySlice<Float>, now: ContinuousClock.Instant) {
        let request = sequence.request
        let next = sequence.sampler.sample(logits, prompt: Array(sequence.tokens[..<sequence.promptCount]), generated: sequence.generated)
        sequence.generated.append(next.id)
        sequence.tokens.append(next.id)
        statistics.generatedTokens += 1
        if let last = sequence.lastToken {
            observer?.interTokenLatency(seconds: (now - last).seconds)
        } else {
            sequence.firstToken = now
            observer?.firstToken(afterSeconds: (now - sequence.arrival).seconds)
        }
        sequence.lastToken = now

        let mayStop = sequence.generated.count > request.stop.minTokens
        let isEnd = (tokenizer.endOfGenerationIDs.contains(next.id) || request.stop.stopTokens.contains(next.id))
        if isEnd && !request.stop.ignoreEOS && mayStop {
            finish(sequence, reason: .stop)
            return
        }
        let text = sequence.stopMatcher.feed(sequence.detokenizer.append(next.id))
        let top = request.topLogprobs > 0 ? Sampler.topLogprobs(logits, count: request.topLogprobs) : []
        sequence.continuation.yield(.token(GeneratedToken(
            id: next.id, text: text, logprob: request.wantsLogprobs || request.topLogprobs > 0 ? next.logprob : nil,
            topLogprobs: top,
            promptLogprobs: request.promptLogprobs != nil && sequence.generated.count == 1 ? sequence.promptLogprobs : nil)))
        if sequence.stopMatcher.isStopped && mayStop {
            finish(sequence, reason: .stop)
        } else if sequence.generated.count >= request.stop.maxTokens || sequence.tokens.count >= contextLength {
            finish(sequence, reason: .length)
        }
    }

    private func finish(_ sequence: Sequence, reason: FinishReason) {
        running.removeAll { $0 === sequence }
        waiting.removeAll { $0 === sequence }
        blocks.release(sequence.blockTable)
        sequence.blockTable = []
        var trailing = ""
        if reason != .cancelled {
            trailing = sequence.stopMatcher.feed(sequence.detokenizer.finish())
            trailing += sequence.stopMatcher.flush()
        }
        let now = clock.now
        let admitted = sequence.admitted ?? now
        let outcome = GenerationOutcome(
            finishReason: reason, promptTokens: sequence.promptCount, completionTokens: sequence.generated.count,
            cachedPromptTokens: sequence.cachedPromptTokens, trailingText: trailing,
            queueSeconds: (admitted - sequence.arrival).seconds,
            prefillSeconds: ((sequence.firstToken ?? now) - admitted).seconds,
            decodeSeconds: sequence.firstToken.map { (now - $0).seconds } ?? 0,
            totalSeconds: (now - sequence.arrival).seconds,
            timeToFirstTokenSeconds: sequence.firstToken.map { ($0 - sequence.arrival).seconds },
            preemptions: sequence.preemptions, promptLogprobs: sequence.promptLogprobs)
        observer?.requestFinished(outcome)
        sequence.continuation.yield(.finished(outcome))
        sequence.continuation.finish()
    }

    private func fail(_ sequence: Sequence, _ error: SchedulerError) {
        running.removeAll { $0 === sequence }
        waiting.removeAll { $0 === sequence }
        blocks.release(sequence.blockTable)
        sequence.blockTable = []
        sequence.continuation.yield(.failed(error))
        sequence.continuation.finish()
    }
}
