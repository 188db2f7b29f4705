public import Engine
import Foundation
import InferenceCore
public import Serving
public import Tokenizer

/// The engine loop of continuous batching over one model: every running sequence advances in each
/// engine step, new requests join between steps, long prompts are prefilled in chunks under a
/// per-step token budget.
///
/// Requests come in through `submit` from any thread and wait in a bounded queue. One dedicated
/// engine thread (not a Swift concurrency thread: a forward pass blocks for milliseconds) runs the
/// loop: take cancellations and new requests, ask the `SchedulingPolicy` for a step plan (which
/// sequences run how many tokens, who is preempted), run the batched forward pass over one
/// `PagedKVCache`, hand each finished position's logits to the request's `OutputProcessor`, and
/// send the request its tokens through its `AsyncStream`. The decisions live in the policy (tested
/// without a model); this class owns the thread, the cache, the forward pass and the events.
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
    private let policy: SchedulingPolicy
    /// Requests in the policy's queues, by sequence identity.
    private var active: [ObjectIdentifier: Sequence] = [:]
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
        let cache = PagedKVCache(configuration: model.configuration, tokens: configuration.cacheTokens, blockSize: configuration.blockSize,
                                 elementType: configuration.kvType)
        self.cache = cache
        policy = SchedulingPolicy(
            limits: SchedulingLimits(maxSequences: configuration.maxSequences, maxBatchTokens: configuration.maxBatchTokens,
                                     prefixCaching: configuration.prefixCaching),
            blockCount: cache.blockCount, blockSize: cache.blockSize,
            copyBlock: { [cache] source, destination in cache.copyBlock(source, to: destination) })
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
    /// `alreadyAccepted`: the request was admitted earlier (`check(..., admission: true)`) and prepared since (its
    /// images encoded): a drain begun meanwhile lets it finish, as it does the requests already queued.
    public func submit(_ request: GenerationRequest, alreadyAccepted: Bool = false) throws(SchedulerError) -> AsyncStream<GenerationEvent> {
        try validate(request)
        let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream()
        condition.lock()
        if isStopped || (isDraining && !alreadyAccepted) {
            condition.unlock()
            throw .draining
        }
        guard waitingCount < configuration.maxQueue || alreadyAccepted else {
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

    /// The checks `submit` makes, for a caller that prepares a request first (a multimodal one: before its images
    /// are encoded, `ignoringEmbeddings`).
    public func check(_ request: GenerationRequest, ignoringEmbeddings: Bool = false, admission: Bool = false) throws(SchedulerError) {
        try validate(request, ignoringEmbeddings: ignoringEmbeddings)
        guard admission else { return }
        condition.lock()
        defer { condition.unlock() }
        if isDraining || isStopped { throw .draining }
        if waitingCount >= configuration.maxQueue {
            throw .queueFull(capacity: configuration.maxQueue, retryAfterSeconds: retryAfterLocked())
        }
    }

    private func validate(_ request: GenerationRequest, ignoringEmbeddings: Bool = false) throws(SchedulerError) {
        if let m = request.multimodal {
            let n = request.promptTokens.count
            guard (model as? GLM4Model)?.ropeSections != nil else { throw .engine("this model takes no images") }
            guard m.ropePositions.count == 3 * n, m.cacheKeys.count == n,
                  ignoringEmbeddings || m.embeddings.count == m.images.count,
                  m.images.allSatisfy({ $0.start >= 0 && $0.start + $0.tokenCount <= n }) else {
                throw .engine("the request's image data does not match its \(n) prompt tokens")
            }
            let width = model.configuration.embeddingWidth
            for (image, values) in zip(m.images, m.embeddings) where values.count != image.tokenCount * width {
                throw .engine("an image has \(values.count) embedding values for \(image.tokenCount) tokens of width \(width)")
            }
        }
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

    /// A request in flight: its place in the policy, its output state, its stream and timings.
    private final class Sequence {
        let request: GenerationRequest
        let scheduled: ScheduledSequence
        let continuation: AsyncStream<GenerationEvent>.Continuation
        let arrival: ContinuousClock.Instant
        var output: OutputProcessor
        var admitted: ContinuousClock.Instant?
        /// Filled during prefill when the request asks for prompt log-probabilities.
        var promptLogprobs: [PromptTokenLogprob] = []
        var firstToken: ContinuousClock.Instant?
        var lastToken: ContinuousClock.Instant?

        init(_ pending: Pending, tokenizer: Tokenizer, contextLength: Int) {
            request = pending.request
            continuation = pending.continuation
            arrival = pending.arrival
            scheduled = ScheduledSequence(id: request.id, promptTokens: request.promptTokens,
                                          needsPromptLogits: request.promptLogprobs != nil,
                                          cacheKeys: request.multimodal?.cacheKeys)
            output = OutputProcessor(tokenizer: tokenizer, sampling: request.sampling, stop: request.stop,
                                     prompt: request.promptTokens, room: contextLength - request.promptTokens.count,
                                     wantsLogprobs: request.wantsLogprobs, topLogprobs: request.topLogprobs,
                                     renderSpecial: !request.skipSpecialTokens)
        }
    }

    private func sequence(_ scheduled: ScheduledSequence) -> Sequence { active[ObjectIdentifier(scheduled)]! }

    private func loop() {
        while true {
            condition.lock()
            while inbox.isEmpty && cancelled.isEmpty && policy.isIdle && !isStopped {
                condition.wait()
            }
            let arrivals = inbox
            inbox.removeAll()
            let cancellations = cancelled
            cancelled.removeAll()
            let stopping = isStopped
            condition.unlock()

            for pending in arrivals {
                let sequence = Sequence(pending, tokenizer: tokenizer, contextLength: contextLength)
                active[ObjectIdentifier(sequence.scheduled)] = sequence
                policy.enqueue(sequence.scheduled)
            }
            let now = clock.now
            for scheduled in policy.running + policy.waiting {
                let sequence = sequence(scheduled)
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
                // The thread holds this scheduler through its closure: drop it so that a stopped engine
                // (an unloaded model or a retired version) frees its weights and KV cache.
                condition.lock()
                thread = nil
                condition.unlock()
                return
            }
            if !policy.isIdle { step() }
            publish()
        }
    }

    private func publish() {
        statistics.running = policy.running.count
        statistics.kvBlocksUsed = policy.blocks.usedCount
        condition.lock()
        let accepted = policy.waiting.count + inbox.count
        waitingCount = accepted
        published = statistics
        var resumed: [CheckedContinuation<Void, Never>] = []
        if policy.running.isEmpty && accepted == 0 {
            resumed = idleContinuations
            idleContinuations.removeAll()
        }
        condition.unlock()
        for c in resumed { c.resume() }
    }

    /// Plans and runs one engine step.
    private func step() {
        let plan = policy.plan()
        for scheduled in plan.exhausted { finish(sequence(scheduled), reason: .length) }
        for scheduled in plan.preempted {
            sequence(scheduled).promptLogprobs = []
            statistics.preemptions += 1
            observer?.preempted()
        }
        let now = clock.now
        for scheduled in plan.admitted { sequence(scheduled).admitted = now }
        for lookup in plan.prefixLookups {
            statistics.prefixQueriedTokens += lookup.queried
            statistics.prefixHitTokens += lookup.hit
            observer?.prefixCacheLookup(queriedTokens: lookup.queried, hitTokens: lookup.hit)
        }
        guard !plan.isEmpty else { return }

        let entries = plan.entries.map { entry in
            var batch = BatchEntry(tokens: Array(entry.tokens), startPosition: entry.start, blockTable: entry.sequence.blockTable,
                                   logits: entry.logits == .all ? .all : entry.logits == .last ? .last : .none)
            if let multimodal = sequence(entry.sequence).request.multimodal {
                Self.attach(multimodal, to: &batch, promptCount: entry.sequence.promptCount)
            }
            return batch
        }
        let output: LogitsBatch
        do {
            output = try model.forward(entries, cache: cache)
        } catch {
            for entry in plan.entries { fail(sequence(entry.sequence), .engine(error.description)) }
            return
        }
        statistics.steps += 1
        for (e, entry) in plan.entries.enumerated() {
            let scheduled = entry.sequence
            if entry.start < scheduled.promptCount {
                statistics.promptTokens += min(entry.count, scheduled.promptCount - entry.start)
            }
            if entry.logits == .all {
                recordPromptLogprobs(sequence(scheduled), entry: entry, rows: output.rowsPerEntry[e], of: output)
            }
        }
        policy.complete(plan)
        let finished = clock.now
        // Entries whose sequence is now fully computed (what `complete` returns) need their next token.
        for (e, entry) in plan.entries.enumerated() where entry.sequence.isActive && entry.sequence.pendingCount == 0 {
            emitNextToken(sequence(entry.sequence), logits: output.last(of: e), now: finished)
        }
        observer?.stepCompleted(batchTokens: plan.tokenCount, batchSequences: plan.entries.count, statistics: statistics)
    }

    /// The chunk's part of a multimodal prompt: image embeddings for the image tokens it holds, and every token's
    /// three-axis position (prompt tokens from the prompt's table, generated ones at cache position + delta).
    static func attach(_ m: MultimodalPrompt, to batch: inout BatchEntry, promptCount: Int) {
        let start = batch.startPosition, end = start + batch.tokens.count
        var positions: [RopePosition] = []
        positions.reserveCapacity(batch.tokens.count)
        for p in start ..< end {
            if p < promptCount {
                positions.append(RopePosition(temporal: m.ropePositions[3 * p], height: m.ropePositions[3 * p + 1],
                                              width: m.ropePositions[3 * p + 2]))
            } else {
                positions.append(RopePosition(text: Int32(p + m.ropeDelta)))
            }
        }
        batch.ropePositions = positions
        for (image, values) in zip(m.images, m.embeddings) {
            let lo = max(image.start, start), hi = min(image.start + image.tokenCount, end)
            guard lo < hi else { continue }
            let width = values.count / image.tokenCount
            batch.embeddings.append(EmbeddingSpan(start: lo - start, count: hi - lo,
                                                  values: Array(values[(lo - image.start) * width ..< (hi - image.start) * width])))
        }
    }

    /// Row j of the chunk (position start + j) predicts the token at position start + j + 1.
    private func recordPromptLogprobs(_ sequence: Sequence, entry: StepPlan.Entry, rows: Range<Int>, of output: LogitsBatch) {
        let top = sequence.request.promptLogprobs ?? 0
        let tokens = entry.sequence.tokens
        for j in 0 ..< entry.count {
            let target = entry.start + j + 1
            guard target < entry.sequence.promptCount else { break }
            let logits = output.row(rows.lowerBound + j)
            let id = tokens[target]
            sequence.promptLogprobs.append(PromptTokenLogprob(
                id: id, logprob: Sampler.logSoftmax(logits, at: id),
                topLogprobs: top > 0 ? Sampler.topLogprobs(logits, count: top) : []))
        }
    }

    private func emitNextToken(_ sequence: Sequence, logits: ArraySlice<Float>, now: ContinuousClock.Instant) {
        let step = sequence.output.next(logits)
        statistics.generatedTokens += 1
        if let last = sequence.lastToken {
            observer?.interTokenLatency(seconds: (now - last).seconds)
        } else {
            sequence.firstToken = now
            observer?.firstToken(afterSeconds: (now - sequence.arrival).seconds)
        }
        sequence.lastToken = now
        switch step {
        case .end(let reason):
            finish(sequence, reason: reason)
        case .token(var token, let reason):
            if sequence.request.promptLogprobs != nil && sequence.output.generated.count == 1 {
                token.promptLogprobs = sequence.promptLogprobs
            }
            sequence.continuation.yield(.token(token))
            if let reason {
                finish(sequence, reason: reason)
            } else {
                policy.append(token.id, to: sequence.scheduled)
            }
        }
    }

    private func finish(_ sequence: Sequence, reason: FinishReason) {
        policy.remove(sequence.scheduled)
        active[ObjectIdentifier(sequence.scheduled)] = nil
        let trailing = sequence.output.finish(reason)
        let now = clock.now
        let admitted = sequence.admitted ?? now
        let outcome = GenerationOutcome(
            finishReason: reason, promptTokens: sequence.scheduled.promptCount,
            completionTokens: sequence.output.generated.count,
            cachedPromptTokens: sequence.scheduled.cachedPromptTokens, trailingText: trailing,
            queueSeconds: (admitted - sequence.arrival).seconds,
            prefillSeconds: ((sequence.firstToken ?? now) - admitted).seconds,
            decodeSeconds: sequence.firstToken.map { (now - $0).seconds } ?? 0,
            totalSeconds: (now - sequence.arrival).seconds,
            timeToFirstTokenSeconds: sequence.firstToken.map { ($0 - sequence.arrival).seconds },
            preemptions: sequence.scheduled.preemptions, promptLogprobs: sequence.promptLogprobs)
        observer?.requestFinished(outcome)
        sequence.continuation.yield(.finished(outcome))
        sequence.continuation.finish()
    }

    private func fail(_ sequence: Sequence, _ error: SchedulerError) {
        guard active[ObjectIdentifier(sequence.scheduled)] != nil else { return }
        policy.remove(sequence.scheduled)
        active[ObjectIdentifier(sequence.scheduled)] = nil
        sequence.continuation.yield(.failed(error))
        sequence.continuation.finish()
    }
}
