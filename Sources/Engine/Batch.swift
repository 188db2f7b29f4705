/// One sequence's part of a forward pass: new tokens at positions `startPosition...`, the
/// sequence's block table (already large enough), and which positions need logits.
public struct BatchEntry: Sendable {
    public enum LogitsWanted: Sendable, Equatable { case none, last, all }

    public var tokens: [Int]
    public var startPosition: Int
    public var blockTable: [Int32]
    public var logits: LogitsWanted
    /// Rows that enter the model as given embeddings instead of their token's (an image's tokens).
    public var embeddings: [EmbeddingSpan]
    /// Multimodal rotary positions (M-RoPE models: temporal, height, width) of each token; nil gives every
    /// axis the token's cache position plus `ropeDelta` (text, and text after an image).
    public var ropePositions: [RopePosition]?
    /// Added to the cache position on every axis when `ropePositions` is nil: max position + 1 - prompt length
    /// after an image (transformers' `rope_deltas`), 0 otherwise.
    public var ropeDelta: Int

    public init(tokens: [Int], startPosition: Int, blockTable: [Int32], logits: LogitsWanted = .last,
                embeddings: [EmbeddingSpan] = [], ropePositions: [RopePosition]? = nil, ropeDelta: Int = 0) {
        self.tokens = tokens
        self.startPosition = startPosition
        self.blockTable = blockTable
        self.logits = logits
        self.embeddings = embeddings
        self.ropePositions = ropePositions
        self.ropeDelta = ropeDelta
    }
}

/// Embedding rows for `count` consecutive tokens from `start` (an index into the entry's tokens).
public struct EmbeddingSpan: Sendable {
    public var start: Int
    public var count: Int
    /// count x embedding width floats.
    public var values: [Float]

    public init(start: Int, count: Int, values: [Float]) {
        self.start = start
        self.count = count
        self.values = values
    }
}

/// A token's position on the three M-RoPE axes.
public struct RopePosition: Sendable, Equatable, CustomStringConvertible {
    public var temporal: Int32
    public var height: Int32
    public var width: Int32

    public init(temporal: Int32, height: Int32, width: Int32) {
        self.temporal = temporal
        self.height = height
        self.width = width
    }

    /// A text token: the same position on every axis.
    public init(text position: Int32) { self.init(temporal: position, height: position, width: position) }

    public var description: String { "(\(temporal), \(height), \(width))" }
}

/// Logits rows from a forward pass, in batch order: for each entry, its wanted positions in order.
public struct LogitsBatch: Sendable {
    public let vocabularySize: Int
    /// rows x vocabularySize, row-major.
    public var values: [Float]
    /// For each batch entry, the range of rows it owns.
    public var rowsPerEntry: [Range<Int>]

    public var rowCount: Int { vocabularySize == 0 ? 0 : values.count / vocabularySize }

    public func row(_ r: Int) -> ArraySlice<Float> { values[r * vocabularySize ..< (r + 1) * vocabularySize] }

    /// The logits of the last wanted position of entry `e`.
    public func last(of e: Int) -> ArraySlice<Float> { row(rowsPerEntry[e].upperBound - 1) }
}

/// A model that turns a batch of token runs into logits, writing keys and values into a paged cache.
public protocol LanguageModel: AnyObject, Sendable {
    var configuration: ModelConfiguration { get }
    /// Runs the batch; each entry's keys and values are written at its positions before attention.
    func forward(_ batch: [BatchEntry], cache: PagedKVCache) throws(EngineError) -> LogitsBatch
}
