/// Splits a server-sent-events byte stream into lines. Network chunks may end anywhere, even in the
/// middle of a `\r\n` pair or a UTF-8 sequence, so bytes are buffered until a line terminator arrives.
/// Lines end with `\n`, `\r\n` or a lone `\r` (the SSE specification allows all three).
public struct SSELineSplitter: Sendable {
    private var pending: [UInt8] = []
    private var lastWasCR = false

    public init() {}

    /// Feeds the next chunk of bytes and returns the complete lines it finished, without terminators.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [String] {
        var lines: [String] = []
        for byte in bytes {
            if lastWasCR {
                lastWasCR = false
                if byte == UInt8(ascii: "\n") { continue }  // second half of a \r\n split or not
            }
            switch byte {
            case UInt8(ascii: "\n"):
                lines.append(String(decoding: pending, as: UTF8.self))
                pending.removeAll(keepingCapacity: true)
            case UInt8(ascii: "\r"):
                lines.append(String(decoding: pending, as: UTF8.self))
                pending.removeAll(keepingCapacity: true)
                lastWasCR = true
            default:
                pending.append(byte)
            }
        }
        return lines
    }

    /// Returns the unterminated last line, if any (a stream that ends without a final newline).
    public mutating func finish() -> String? {
        defer { pending.removeAll() }
        return pending.isEmpty ? nil : String(decoding: pending, as: UTF8.self)
    }
}

/// What one SSE line means for the benchmark.
public enum SSELine: Equatable, Sendable {
    /// Empty line (event separator), a `:` comment (keep-alive), or a field other than `data`.
    case ignored
    /// `data: [DONE]`: the end of an OpenAI-style stream.
    case done
    /// The payload of a `data:` line (one leading space removed, as the specification says).
    case data(String)

    public init(_ line: String) {
        if line.isEmpty || line.hasPrefix(":") {
            self = .ignored
            return
        }
        guard line.hasPrefix("data:") else {
            self = .ignored
            return
        }
        var payload = line.dropFirst(5)
        if payload.first == " " { payload = payload.dropFirst() }
        self = payload == "[DONE]" ? .done : .data(String(payload))
    }
}
