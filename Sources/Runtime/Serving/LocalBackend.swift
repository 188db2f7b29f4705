import Engine
import Foundation
import Synchronization
public import Imaging
public import InferenceCore
public import Serving
public import Tokenizer

/// A model served by autoglm's own engine: the continuous-batching `Scheduler` over it, its tokenizer
/// and its chat template, behind the `InferenceBackend` protocol the server talks to.
public final class LocalBackend: InferenceBackend {
    public let scheduler: Scheduler
    public let formatter: ChatPromptFormatter
    /// The vision tower of a vision-language model; nil for text models.
    public let vision: VisionSupport?

    public init(scheduler: Scheduler, vision: VisionSupport? = nil) {
        self.scheduler = scheduler
        self.vision = vision
        formatter = ChatPromptFormatter(tokenizer: scheduler.tokenizer)
    }

    public var tokenizer: Tokenizer { scheduler.tokenizer }
    public var contextLength: Int { scheduler.contextLength }
    public var vocabularySize: Int { scheduler.model.configuration.vocabularySize }

    public func renderChat(_ messages: [JinjaValue], extra: [String: JinjaValue], addGenerationPrompt: Bool) throws(ChatTemplateError) -> String {
        try formatter.render(messageValues: messages, extra: extra, addGenerationPrompt: addGenerationPrompt)
    }

    public func tokens(forRenderedChat text: String) -> [Int] { formatter.tokens(forRendered: text) }
    public func encode(_ text: String, addSpecial: Bool) -> [Int] { tokenizer.encode(text, addSpecial: addSpecial, parseSpecial: true) }
    public func decode(_ tokens: [Int]) -> String { tokenizer.decode(tokens) }
    public func piece(of token: Int) -> String? { tokenizer.token(for: token) }
    public func tokenBytes(_ token: Int) -> [UInt8] { tokenizer.tokenPiece(token) }

    public var acceptsImages: Bool { vision != nil }

    public func placeImages(in tokens: [Int], images: [RGBImage], options: ImageOptions) throws(ImageInputError) -> (tokens: [Int], multimodal: MultimodalPrompt) {
        guard let vision else { throw ImageInputError(imageIndex: nil, "this model takes text only") }
        return try vision.place(in: tokens, images: images, options: options)
    }

    /// Text goes straight to the scheduler. A request with images is checked now, then its images are encoded on a
    /// thread of their own (seconds to minutes on a CPU at full resolution) and it is queued after; its stream is
    /// open meanwhile, so a server can start the response and keep the connection alive.
    public func submit(_ request: GenerationRequest) throws(SchedulerError) -> AsyncStream<GenerationEvent> {
        guard let pending = request.multimodal, pending.embeddings.count != pending.images.count else {
            return try scheduler.submit(request)
        }
        guard let vision else { throw .engine("this model takes text only; the request carries images") }
        // Everything submit would refuse (queue full, draining, too long) is refused now, before the encode.
        try scheduler.check(request, ignoringEmbeddings: true, admission: true)
        let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream()
        let job = EncodingJob(id: request.id)
        encodings.withLock { $0[request.id] = job }
        continuation.onTermination = { [weak self] _ in
            job.cancel()
            self?.scheduler.cancel(request.id)
        }
        let scheduler = self.scheduler
        let thread = Thread { [weak self] in
            defer { self?.encodings.withLock { _ = $0.removeValue(forKey: request.id) } }
            let started = ContinuousClock.now
            var multimodal = pending
            guard !job.isCancelled else {
                continuation.yield(.finished(GenerationOutcome(finishReason: .cancelled, promptTokens: request.promptTokens.count,
                                                               completionTokens: 0)))
                continuation.finish()
                return
            }
            do {
                try vision.encode(&multimodal)
            } catch {
                continuation.yield(.failed(.engine("the vision tower failed: \(error)")))
                continuation.finish()
                return
            }
            guard !job.isCancelled else {
                continuation.yield(.finished(GenerationOutcome(finishReason: .cancelled, promptTokens: request.promptTokens.count,
                                                               completionTokens: 0)))
                continuation.finish()
                return
            }
            // Only the embeddings are needed from here on (a preempted sequence is recomputed from them).
            for i in multimodal.images.indices { multimodal.images[i].patches.values = [] }
            var encoded = request
            encoded.multimodal = multimodal
            // The queue wait starts now: the encode is not queueing (timeouts.first_token bounds the queue only).
            let encodeTime = ContinuousClock.now - started
            encoded.firstTokenDeadline = request.firstTokenDeadline.map { $0 + encodeTime }
            let events: AsyncStream<GenerationEvent>
            do {
                events = try scheduler.submit(encoded, alreadyAccepted: true)
            } catch let error as SchedulerError {
                continuation.yield(.failed(error))
                continuation.finish()
                return
            } catch {
                continuation.yield(.failed(.engine("\(error)")))
                continuation.finish()
                return
            }
            if job.isCancelled { scheduler.cancel(request.id) }
            let encodeSeconds = (ContinuousClock.now - started).seconds
            let relay = Task {
                for await event in events {
                    if case .finished(var outcome) = event {
                        outcome.prefillSeconds += encodeSeconds
                        continuation.yield(.finished(outcome))
                    } else {
                        continuation.yield(event)
                    }
                }
                continuation.finish()
            }
            job.relay(relay)
        }
        thread.name = "autoglm-vision"
        thread.stackSize = 1 << 22
        thread.start()
        return stream
    }

    private let encodings = Mutex<[String: EncodingJob]>([:])

    public func cancel(_ id: String) {
        if let job = encodings.withLock({ $0[id] }) { job.cancel() }
        scheduler.cancel(id)
    }
    public var isAcceptingRequests: Bool { scheduler.isAcceptingRequests }
    public var statistics: SchedulerStatistics { scheduler.currentStatistics }
    public func start() { scheduler.start() }
    public func beginDraining() { scheduler.beginDraining() }
    /// Returns when no request is waiting, running, or having its images encoded (a drain finishes those too).
    public func waitUntilIdle() async {
        while true {
            await scheduler.waitUntilIdle()
            guard encodings.withLock({ !$0.isEmpty }) else { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }
    public func shutdown() { scheduler.shutdown() }
    /// The scheduler outlives the backend while its engine thread winds down.
    public var lifetimeObjects: [AnyObject] { [self, scheduler] }
}

/// A request whose images are being encoded: cancelled before it reaches the scheduler, it never does.
final class EncodingJob: @unchecked Sendable {
    let id: String
    private let lock = NSLock()
    private var cancelled = false
    private var task: Task<Void, Never>?

    init(id: String) { self.id = id }

    var isCancelled: Bool { lock.withLock { cancelled } }

    func cancel() {
        lock.withLock { cancelled = true }
    }

    func relay(_ task: Task<Void, Never>) { lock.withLock { self.task = task } }
}
