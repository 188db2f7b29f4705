import Engine
import Foundation
import GGUF
import InferenceCore
import Runtime
import Serving
import TestSupport
import Testing
import Tokenizer

/// The continuous-batching scheduler on the default model: batching, prefix reuse, preemption,
/// cancellation and the bounded queue, each checked against the same requests run alone.
@Suite("Scheduler on the default model", .serialized)
struct SchedulerTests {
    static let shared: (any LanguageModel, Tokenizer)? = {
        guard let file = try? GGUFFile(path: Fixtures.defaultModelPath) else { return nil }
        guard let model = try? ArchitectureRegistry.load(file, threads: 1), let tokenizer = try? Tokenizer(gguf: file) else { return nil }
        return (model, tokenizer)
    }()

    static func scheduler(_ configuration: SchedulerConfiguration) throws -> Scheduler {
        let (model, tokenizer) = try #require(shared, "the default model is missing: run scripts/setup-model.sh")
        let s = Scheduler(model: model, tokenizer: tokenizer, configuration: configuration, contextLength: 2048)
        return s
    }

    static let prompts = [
        "The capital of France is",
        "Write a haiku about the sea:",
        "List three prime numbers:",
        "def fibonacci(n):",
        "Once upon a time, in a small village,",
        "The chemical symbol for gold is",
    ]

    struct Result: Equatable {
        var tokens: [Int] = []
        var text = ""
        var finish: FinishReason?
        var cached = 0
    }

    static func run(_ stream: AsyncStream<GenerationEvent>) async -> Result {
        var r = Result()
        for await event in stream {
            switch event {
            case .token(let t):
                r.tokens.append(t.id)
                r.text += t.text
            case .finished(let o):
                r.text += o.trailingText
                r.finish = o.finishReason
                r.cached = o.cachedPromptTokens
            case .failed(let e):
                Issue.record("request failed: \(e)")
            }
        }
        return r
    }

    static func request(_ i: Int, _ tokens: [Int], maxTokens: Int = 12) -> GenerationRequest {
        GenerationRequest(id: "r\(i)", promptTokens: tokens, sampling: .greedy, stop: StopCondition(maxTokens: maxTokens, ignoreEOS: true))
    }

    /// Each request alone on a fresh scheduler (no batching, no shared cache).
    static func solo(_ requests: [GenerationRequest]) async throws -> [Result] {
        var out: [Result] = []
        for r in requests {
            let s = try scheduler(SchedulerConfiguration(maxSequences: 1, cacheTokens: 1024, prefixCaching: false))
            s.start()
            out.append(await run(try s.submit(r)))
            s.shutdown()
        }
        return out
    }

    @Test("concurrent requests run in far fewer engine steps than one after another, with identical greedy outputs")
    func batching() async throws {
        let tokenizer = try #require(Self.shared).1
        let requests = Self.prompts.enumerated().map { Self.request($0.offset, tokenizer.encode($0.element)) }
        let alone = try await Self.solo(requests)

        let s = try Self.scheduler(SchedulerConfiguration(maxSequences: 8, maxBatchTokens: 512, cacheTokens: 2048))
        // Queue everything before the engine starts, so they are admitted together.
        let streams = try requests.map { try s.submit($0) }
        s.start()
        var together: [Result] = []
        for stream in streams { together.append(await Self.run(stream)) }
        await s.waitUntilIdle()
        let steps = s.currentStatistics.steps
        s.shutdown()

        #expect(together.map(\.tokens) == alone.map(\.tokens))
        #expect(together.map(\.text) == alone.map(\.text))
        #expect(together.allSatisfy { $0.tokens.count == 12 && $0.finish == .length })
        // One prefill step, then one step per further token: 12 steps, against 6 x 12 alone.
        #expect(steps == 12, "batched run took \(steps) steps")
        #expect(steps * 4 <= requests.count * 12)
    }

    @Test("a repeated system prompt is served from the prefix cache and gives the same output")
    func prefixReuse() async throws {
        let tokenizer = try #require(Self.shared).1
        let system = "You are a careful assistant. Answer briefly and precisely. Never invent facts; say when you do not know. " +
            "Prefer plain words over jargon, and give one example when it helps."
        let prompts = ["\(system)\nQuestion: what is the boiling point of water?", "\(system)\nQuestion: how many legs has a spider?"]
        let requests = prompts.enumerated().map { Self.request($0.offset, tokenizer.encode($0.element)) }
        let alone = try await Self.solo(requests)

        let s = try Self.scheduler(SchedulerConfiguration(maxSequences: 4, cacheTokens: 1024))
        s.start()
        let first = await Self.run(try s.submit(requests[0]))
        let second = await Self.run(try s.submit(requests[1]))
        await s.waitUntilIdle()
        let stats = s.currentStatistics
        s.shutdown()

        let systemTokens = tokenizer.encode(system).count
        #expect(first.cached == 0)
        // Every full 16-token block of the common prefix is reused.
        #expect(second.cached >= (systemTokens / 16 - 1) * 16 && second.cached > 0, "cached \(second.cached) of \(systemTokens)")
        #expect(stats.prefixHitTokens == second.cached)
        #expect([first.tokens, second.tokens] == alone.map(\.tokens))
    }

    @Test("a repeated prompt copies the cached start of its last block and computes only its last token, with the same output")
    func repeatedPromptComputesOneToken() async throws {
        let tokenizer = try #require(Self.shared).1
        // 40 tokens or so: two full blocks and a partial third; then exactly 48 (three full blocks).
        let texts = ["The quick brown fox jumps over the lazy dog while the farmer watches from the porch and the sun sets.",
                     String(repeating: "one two three four ", count: 12)]
        for text in texts {
            var prompt = tokenizer.encode(text)
            if prompt.count > 48 { prompt = Array(prompt.prefix(48)) }
            let requests = [Self.request(0, prompt), Self.request(1, prompt)]
            let alone = try await Self.solo([requests[0]])
            let s = try Self.scheduler(SchedulerConfiguration(maxSequences: 4, cacheTokens: 1024))
            s.start()
            let first = await Self.run(try s.submit(requests[0]))
            let second = await Self.run(try s.submit(requests[1]))
            await s.waitUntilIdle()
            s.shutdown()
            #expect(first.cached == 0)
            #expect(second.cached == prompt.count - 1, "\(prompt.count) prompt tokens")
            #expect(first.tokens == alone[0].tokens && second.tokens == alone[0].tokens)
        }
    }

    @Test("prompt log-probabilities: one per prompt token after the first, as a plain forward pass gives, chunked or not, cached or not")
    func promptLogprobs() async throws {
        let (model, tokenizer) = try #require(Self.shared)
        let prompt = tokenizer.encode("The capital of France is Paris, and the capital of Italy is Rome. The capital of Spain is")
        #expect(prompt.count > 16)
        // Reference: the prompt in one forward pass with logits at every position.
        let cache = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16)
        let out = try model.forward([BatchEntry(tokens: prompt, startPosition: 0, blockTable: (0 ..< Int32(cache.blockCount)).map { $0 },
                                                logits: .all)], cache: cache)
        let expected = (1 ..< prompt.count).map { Sampler.logSoftmax(out.row($0 - 1), at: prompt[$0]) }

        func outcome(_ s: Scheduler, id: String) async throws -> GenerationOutcome {
            var request = Self.request(0, prompt, maxTokens: 2)
            request.id = id
            request.promptLogprobs = 3
            var result: GenerationOutcome?
            for await event in try s.submit(request) { if case .finished(let o) = event { result = o } }
            return try #require(result)
        }
        // Whole prompt in one step; then in chunks of 5 tokens; then after the same prompt filled the prefix cache.
        let whole = try Self.scheduler(SchedulerConfiguration(maxSequences: 2, maxBatchTokens: 512, cacheTokens: 1024))
        let chunked = try Self.scheduler(SchedulerConfiguration(maxSequences: 2, maxBatchTokens: 5, cacheTokens: 1024))
        var results: [GenerationOutcome] = []
        for s in [whole, chunked] {
            s.start()
            results.append(try await outcome(s, id: "a"))
        }
        _ = await Self.run(try whole.submit(Self.request(1, prompt, maxTokens: 2)))  // fills the prefix cache
        results.append(try await outcome(whole, id: "b"))
        whole.shutdown()
        chunked.shutdown()

        for r in results {
            #expect(r.promptLogprobs.map(\.id) == Array(prompt.dropFirst()))
            #expect(r.cachedPromptTokens == 0)
            for (got, want) in zip(r.promptLogprobs, expected) {
                #expect(abs(got.logprob - want) < 1e-4, "logprob \(got.logprob) vs \(want)")
                #expect(got.topLogprobs.count == 3 && got.topLogprobs[0].logprob >= got.logprob - 1e-6)
            }
        }
        // Requests that do not ask get none.
        let plain = try Self.scheduler(SchedulerConfiguration(maxSequences: 1, cacheTokens: 256))
        plain.start()
        var none: GenerationOutcome?
        for await event in try plain.submit(Self.request(2, prompt, maxTokens: 1)) { if case .finished(let o) = event { none = o } }
        plain.shutdown()
        #expect(try #require(none).promptLogprobs.isEmpty)
    }

    @Test("when blocks run out, sequences are preempted and recomputed, and still give the solo outputs")
    func preemption() async throws {
        let tokenizer = try #require(Self.shared).1
        let requests = Self.prompts.prefix(4).enumerated().map { Self.request($0.offset, tokenizer.encode($0.element), maxTokens: 40) }
        let alone = try await Self.solo(requests)

        // 8 blocks of 16 = 128 slots for 4 sequences that each grow to ~50 tokens.
        let s = try Self.scheduler(SchedulerConfiguration(maxSequences: 4, cacheTokens: 128, prefixCaching: true))
        let streams = try requests.map { try s.submit($0) }
        s.start()
        var together: [Result] = []
        for stream in streams { together.append(await Self.run(stream)) }
        await s.waitUntilIdle()
        let stats = s.currentStatistics
        s.shutdown()

        #expect(stats.preemptions > 0)
        #expect(together.map(\.tokens) == alone.map(\.tokens))
        #expect(stats.kvBlocksUsed == 0)
    }

    @Test("cancelling a request ends its stream and frees its blocks")
    func cancellation() async throws {
        let tokenizer = try #require(Self.shared).1
        let s = try Self.scheduler(SchedulerConfiguration(maxSequences: 2, cacheTokens: 2048))
        s.start()
        // As many tokens as the context holds, so that the engine cannot finish before this task reads
        // three of them and cancels, however the machine schedules the two.
        let prompt = tokenizer.encode(Self.prompts[0])
        let maxTokens = 2048 - prompt.count
        let stream = try s.submit(Self.request(0, prompt, maxTokens: maxTokens))
        var seen = 0
        var finish: FinishReason?
        for await event in stream {
            if case .token = event {
                seen += 1
                if seen == 3 { s.cancel("r0") }
            }
            if case .finished(let o) = event { finish = o.finishReason }
        }
        await s.waitUntilIdle()
        let stats = s.currentStatistics
        s.shutdown()
        #expect(finish == .cancelled)
        #expect(seen < maxTokens)
        #expect(stats.kvBlocksUsed == 0 && stats.running == 0)
    }

    @Test("the waiting queue is bounded: beyond it submit refuses with a retry hint")
    func boundedQueue() async throws {
        let tokenizer = try #require(Self.shared).1
        let s = try Self.scheduler(SchedulerConfiguration(maxSequences: 1, maxQueue: 2, cacheTokens: 512))
        let prompt = tokenizer.encode(Self.prompts[0])
        let a = try s.submit(Self.request(0, prompt, maxTokens: 2))
        let b = try s.submit(Self.request(1, prompt, maxTokens: 2))
        #expect(throws: SchedulerError.queueFull(capacity: 2, retryAfterSeconds: 2)) {
            _ = try s.submit(Self.request(2, prompt, maxTokens: 2))
        }
        s.start()
        let ra = await Self.run(a), rb = await Self.run(b)
        #expect(ra.tokens.count == 2 && rb.tokens.count == 2)
        // Room again once the queue has drained.
        let rc = await Self.run(try s.submit(Self.request(3, prompt, maxTokens: 2)))
        #expect(rc.tokens.count == 2)
        s.beginDraining()
        #expect(throws: SchedulerError.draining) { _ = try s.submit(Self.request(4, prompt, maxTokens: 2)) }
        s.shutdown()
    }

    @Test("requests that cannot fit are refused with the numbers")
    func validation() throws {
        let s = try Self.scheduler(SchedulerConfiguration(maxSequences: 1, cacheTokens: 256))
        #expect(throws: SchedulerError.contextOverflow(promptTokens: 2000, maxTokens: 100, contextLength: 2048)) {
            _ = try s.submit(Self.request(0, Array(repeating: 1, count: 2000), maxTokens: 100))
        }
        #expect(throws: SchedulerError.exceedsCache(promptTokens: 300, cacheTokens: 256)) {
            _ = try s.submit(Self.request(1, Array(repeating: 1, count: 300), maxTokens: 10))
        }
        #expect(throws: SchedulerError.emptyPrompt) { _ = try s.submit(Self.request(2, [], maxTokens: 10)) }
        #expect(throws: SchedulerError.invalidToken(-5, vocabularySize: 49152)) {
            _ = try s.submit(Self.request(3, [1, -5], maxTokens: 10))
        }
        s.shutdown()
    }
}
