public import InferenceCore
public import Imaging

/// What the HTTP server needs from a model it serves locally, and nothing more: its limits, its text
/// (chat template, tokenizer), generation as a stream of events with cancellation, health and
/// lifecycle. The server depends on this protocol, never on the engine; `LocalBackend` (Runtime)
/// implements it over the pure-Swift engine and its scheduler.
///
/// Upstream engines (vLLM, SGLang, llama-server, another autoglm) are not behind this protocol: the
/// gateway relays their HTTP streams byte for byte, so that nothing is re-tokenized or re-rendered
/// and a started stream is exactly the upstream's.
public protocol InferenceBackend: AnyObject, Sendable {
    /// Longest sequence (prompt plus generated tokens) one request may have.
    var contextLength: Int { get }
    var vocabularySize: Int { get }

    /// The conversation rendered by the model's chat template.
    func renderChat(_ messages: [JinjaValue], extra: [String: JinjaValue], addGenerationPrompt: Bool) throws(ChatTemplateError) -> String
    /// Tokens of a rendered conversation (the template wrote any BOS itself).
    func tokens(forRenderedChat text: String) -> [Int]
    /// Tokens of plain text; special-token text is parsed as special tokens.
    func encode(_ text: String, addSpecial: Bool) -> [Int]
    func decode(_ tokens: [Int]) -> String
    /// The vocabulary entry of one token as stored (nil outside the vocabulary).
    func piece(of token: Int) -> String?
    /// The bytes token `token` stands for, which may be part of a UTF-8 character (log-probabilities' `bytes`).
    func tokenBytes(_ token: Int) -> [UInt8]

    /// Whether the model takes images (a vision-language model with its vision tower loaded).
    var acceptsImages: Bool { get }
    /// Expands each image placeholder of a rendered prompt into the image's tokens and computes its positions and
    /// cache keys; cheap (resizing and hashing, no model). The vision tower runs after `submit`.
    func placeImages(in tokens: [Int], images: [RGBImage], options: ImageOptions) throws(ImageInputError) -> (tokens: [Int], multimodal: MultimodalPrompt)

    /// Checks and queues a request. The stream yields its tokens, then one `finished` or `failed`;
    /// ending the stream early cancels the request.
    func submit(_ request: GenerationRequest) throws(SchedulerError) -> AsyncStream<GenerationEvent>
    /// Ends a request early; its stream finishes with `finishReason == .cancelled`.
    func cancel(_ id: String)

    var isAcceptingRequests: Bool { get }
    var statistics: SchedulerStatistics { get }

    /// Starts serving (idempotent).
    func start()
    /// Stops taking new requests; those accepted run to completion.
    func beginDraining()
    /// Returns when no request is waiting or running.
    func waitUntilIdle() async
    /// Stops at once; requests in flight end as cancelled.
    func shutdown()

    /// The objects whose end frees the model's memory (the backend, and an engine thread's owner that
    /// may outlive it): a caller that unloads a model waits for them, weakly, before trimming the heap.
    var lifetimeObjects: [AnyObject] { get }
}

extension InferenceBackend {
    public func tokenBytes(_ token: Int) -> [UInt8] { Array(decode([token]).utf8) }
    public var lifetimeObjects: [AnyObject] { [self] }

    /// Text-only backends take no images.
    public var acceptsImages: Bool { false }

    public func placeImages(in tokens: [Int], images: [RGBImage], options: ImageOptions) throws(ImageInputError) -> (tokens: [Int], multimodal: MultimodalPrompt) {
        throw ImageInputError(imageIndex: nil, "this model takes text only")
    }
}
