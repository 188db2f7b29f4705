public import OpenAIAPI
/// Why a request did not complete. The raw value is the key in reports ("http_429", "timeout", ...).
public enum RequestFailure: Hashable, Sendable, CustomStringConvertible {
    /// Could not connect (refused, unreachable, DNS, TLS handshake).
    case connect
    /// The server answered with a status other than 200.
    case httpStatus(Int)
    /// The request did not finish within `--request-timeout`.
    case timeout
    /// The response was not a well-formed OpenAI event stream (bad JSON, no choices, in-stream error).
    case malformedStream
    /// The server sent an error object inside the stream (`data: {"error": ...}`).
    case streamError
    /// The server closed the connection before the stream ended.
    case connectionClosed
    /// Anything else.
    case other

    public var description: String {
        switch self {
        case .connect: "connect_error"
        case .httpStatus(let code): "http_\(code)"
        case .timeout: "timeout"
        case .malformedStream: "malformed_stream"
        case .streamError: "stream_error"
        case .connectionClosed: "connection_closed"
        case .other: "other_error"
        }
    }
}

/// What was observed for one request, times in seconds since the clock started (just before the POST).
public struct RequestTiming: Sendable, Equatable {
    /// Receive times of the `data:` chunks whose `choices` array was non-empty.
    public var choiceChunkTimes: [Double] = []
    /// Receive time of the last `data:` chunk of any kind (the usage chunk counts).
    public var lastDataTime: Double?
    /// Number of chunks with non-empty generated text (token count fallback when usage is absent).
    public var contentChunks = 0
    /// The request failed on a pooled connection the server had already closed, before any response.
    public var staleConnection = false
    /// `usage` from the final chunk (`stream_options.include_usage`).
    public var usage: Usage?
    /// Set when the request failed; such a request contributes only to the error counts.
    public var failure: RequestFailure?
    /// What the transport said when it failed (the error's description), for the report's samples.
    public var failureDetail: String?
    /// When the request was sent, in seconds from its level's start (the run over time); nil when not known.
    public var sentAt: Double?

    public init(choiceChunkTimes: [Double] = [], lastDataTime: Double? = nil, contentChunks: Int = 0,
                usage: Usage? = nil, failure: RequestFailure? = nil) {
        self.choiceChunkTimes = choiceChunkTimes
        self.lastDataTime = lastDataTime
        self.contentChunks = contentChunks
        self.usage = usage
        self.failure = failure
    }

    /// Records one decoded `data:` chunk received at `time`.
    public mutating func record(_ chunk: StreamEvent, at time: Double) {
        lastDataTime = time
        if chunk.hasChoices { choiceChunkTimes.append(time) }
        if chunk.hasContent { contentChunks += 1 }
        if let usage = chunk.usage { self.usage = usage }
    }
}

/// vLLM's per-request latency metrics, in seconds.
public struct RequestMetrics: Sendable, Equatable {
    public var ttft: Double
    /// Nil when the request produced at most one output token.
    public var tpot: Double?
    public var itls: [Double]
    public var e2el: Double
    public var inputTokens: Int
    public var outputTokens: Int

    /// Derives the metrics, or nil for a failed request or one that never produced a choices chunk.
    public init?(_ timing: RequestTiming) {
        guard timing.failure == nil, let first = timing.choiceChunkTimes.first,
              let last = timing.lastDataTime else { return nil }
        ttft = first
        e2el = last
        itls = zip(timing.choiceChunkTimes.dropFirst(), timing.choiceChunkTimes).map { $0 - $1 }
        outputTokens = timing.usage?.completionTokens ?? timing.contentChunks
        inputTokens = timing.usage?.promptTokens ?? 0
        tpot = outputTokens > 1 ? (e2el - ttft) / Double(outputTokens - 1) : nil
    }
}

/// Turns the bytes of one streamed response, each network read stamped with the time it arrived, into
/// a `RequestTiming`. Pure (no clock, no I/O): the sender stamps reads with its clock, tests feed
/// recorded arrival times and check the metrics exactly.
public struct StreamTimingRecorder: Sendable {
    public private(set) var timing = RequestTiming()
    private var splitter = SSELineSplitter()
    /// `data: [DONE]` was seen; what follows is drained but not recorded.
    public private(set) var done = false

    public init() {}

    /// Whether the stream has failed (malformed chunk or in-stream error): the caller stops reading.
    public var failed: Bool { timing.failure != nil }

    /// Feeds one network read that arrived at `time` (seconds since the request started). Every
    /// `data:` chunk completed by this read is stamped with `time`.
    public mutating func feed(_ bytes: some Sequence<UInt8>, at time: Double) {
        let lines = splitter.feed(bytes)
        guard !done, !failed else { return }
        for line in lines {
            switch SSELine(line) {
            case .ignored: continue
            case .done:
                done = true
                return
            case .data(let payload):
                guard let chunk = StreamEvent.decode(payload) else {
                    timing.failure = .malformedStream
                    return
                }
                if chunk.isError {
                    timing.failure = .streamError
                    return
                }
                timing.record(chunk, at: time)
            }
        }
    }

    /// Ends the stream at `time`: an unterminated last `data:` line counts; a stream that produced no
    /// choices chunk is malformed.
    public mutating func finish(at time: Double) -> RequestTiming {
        if !done, !failed, let last = splitter.finish(), case .data(let payload) = SSELine(last),
           let chunk = StreamEvent.decode(payload) {
            timing.record(chunk, at: time)
        }
        if !failed, timing.choiceChunkTimes.isEmpty { timing.failure = .malformedStream }
        // Tokens, then the connection ended without `data: [DONE]`: a stream cut short (a server that
        // dropped it mid-way) is a failure, not a shorter answer.
        if !failed, !done, timing.failure == nil { timing.failure = .connectionClosed }
        return timing
    }
}
