/// Writes a Swift string as a JSON string literal: the one escaping routine for the server's JSON
/// writer and the chat templates' `tojson` filter.
public enum JSONString {
    /// Appends `s` quoted and escaped to `out`: `"` `\` and control characters escaped (short forms
    /// where JSON has them); with `asciiOnly` (Python's `ensure_ascii`), every scalar above 0x7E too,
    /// as `\uXXXX` or a surrogate pair.
    public static func append(_ s: String, to out: inout String, asciiOnly: Bool = false) {
        out += "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if c.value < 0x20 || (asciiOnly && c.value > 0x7E) {
                    if c.value > 0xFFFF {
                        let v = c.value - 0x10000
                        out += "\\u" + hex(0xD800 + (v >> 10)) + "\\u" + hex(0xDC00 + (v & 0x3FF))
                    } else {
                        out += "\\u" + hex(c.value)
                    }
                } else {
                    out.unicodeScalars.append(c)
                }
            }
        }
        out += "\""
    }

    private static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}
