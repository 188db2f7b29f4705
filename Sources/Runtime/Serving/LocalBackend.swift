import Engine
public import InferenceCore
public import Serving
public import Tokenizer

/// A model served by autoglm's own engine: the continuous-batching `Scheduler` over it, its tokenizer
/// and its chat template, behind the `InferenceBackend` protocol the server talks to.
public final class LocalBackend: InferenceBackend {
    public let scheduler: Scheduler
    public let formatter: ChatPromptFormatter

    public init(scheduler: Scheduler) {
        self.scheduler = scheduler
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

    public func submit(_ request: GenerationRequest) throws(SchedulerError) -> AsyncStream<GenerationEvent> {
        try scheduler.submit(request)
    }

    public func cancel(_ id: String) { scheduler.cancel(id) }
    public var isAcceptingRequests: Bool { scheduler.isAcceptingRequests }
    public var statistics: SchedulerStatistics { scheduler.currentStatistics }
    public func start() { scheduler.start() }
    public func beginDraining() { scheduler.beginDraining() }
    public func waitUntilIdle() async { await scheduler.waitUntilIdle() }
    public func shutdown() { scheduler.shutdown() }
}
