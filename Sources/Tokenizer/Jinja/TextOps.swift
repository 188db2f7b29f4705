import InferenceCore

/// Python's string methods as chat templates use them, on Unicode scalars (Python's code points).
enum TextOps {
    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace || (0x1c...0x1f).contains(c.value) }

    static func strip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        func drop(_ c: Unicode.Scalar) -> Bool { set.map { $0.contains(c) } ?? isSpace(c) }
        var scalars = Array(s.unicodeScalars)[...]
        if leading { while let f = scalars.first, drop(f) { scalars = scalars.dropFirst() } }
        if trailing { while let l = scalars.last, drop(l) { scalars = scalars.dropLast() } }
        return String(String.UnicodeScalarView(scalars))
    }

    /// `str.split(sep, maxsplit)`; with no separator, splits on runs of whitespace and drops empty parts.
    static func split(_ s: String, _ sep: String?, _ maxsplit: Int) -> [String] {
        let scalars = Array(s.unicodeScalars)
        var parts: [String] = []
        func text(_ r: Range<Int>) -> String { String(String.UnicodeScalarView(scalars[r])) }
        guard let sep else {
            var i = 0
            while i < scalars.count {
                while i < scalars.count && isSpace(scalars[i]) { i += 1 }
                guard i < scalars.count else { break }
                if maxsplit >= 0 && parts.count == maxsplit {
                    var end = scalars.count
                    while end > i && isSpace(scalars[end - 1]) { end -= 1 }
                    parts.append(text(i..<end))
                    break
                }
                let start = i
                while i < scalars.count && !isSpace(scalars[i]) { i += 1 }
                parts.append(text(start..<i))
            }
            return parts
        }
        let needle = Array(sep.unicodeScalars)
        var start = 0
        var i = 0
        while i + needle.count <= scalars.count {
            if (maxsplit < 0 || parts.count < maxsplit) && scalars[i..<(i + needle.count)].elementsEqual(needle) {
                parts.append(text(start..<i))
                i += needle.count
                start = i
            } else {
                i += 1
            }
        }
        parts.append(text(start..<scalars.count))
        return parts
    }

    static func replace(_ s: String, _ old: String, _ new: String, _ count: Int) -> String {
        if old.isEmpty {
            // Python inserts `new` between every character (and at both ends).
            var out = new
            var n = 1
            for c in s.unicodeScalars {
                out.unicodeScalars.append(c)
                if count < 0 || n < count { out += new; n += 1 }
            }
            return out
        }
        let parts = split(s, old, count)
        return parts.joined(separator: new)
    }

    static func find(_ s: String, _ needle: String) -> Int {
        let scalars = Array(s.unicodeScalars)
        let n = Array(needle.unicodeScalars)
        guard n.count <= scalars.count else { return -1 }
        for i in 0...(scalars.count - n.count) where scalars[i..<(i + n.count)].elementsEqual(n) { return i }
        return -1
    }

    static func splitLines(_ s: String) -> [String] {
        var lines = s.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
    }

    static func capitalize(_ s: String) -> String {
        guard let first = s.unicodeScalars.first else { return s }
        let rest = String(String.UnicodeScalarView(s.unicodeScalars.dropFirst()))
        return String(first).uppercased() + rest.lowercased()
    }

    /// `str.title()`: a letter after a non-letter is upper-cased, every other letter lower-cased.
    static func title(_ s: String) -> String {
        var out = ""
        var previousIsLetter = false
        for c in s.unicodeScalars {
            let isLetter = c.properties.isAlphabetic
            out += isLetter ? (previousIsLetter ? String(c).lowercased() : String(c).uppercased()) : String(c)
            previousIsLetter = isLetter
        }
        return out
    }

    static func escapeHTML(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&#34;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

/// Python's `json.dumps` as transformers calls it from `tojson`: `ensure_ascii=False` by default,
/// separators `", "`/`": "`, or `","`/`": "` with an indent.
struct JSONWriter {
    var indent: Int?
    var sortKeys: Bool
    var ensureASCII: Bool
    var fail: (String) -> ChatTemplateError

    func write(_ v: RuntimeValue, into out: inout String, level: Int) throws(ChatTemplateError) {
        guard level < 200 else { throw fail("tojson: value nests too deeply") }
        switch v {
        case .none: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(i): out += String(i)
        case let .double(d):
            out += d.isNaN ? "NaN" : d.isInfinite ? (d < 0 ? "-Infinity" : "Infinity") : RuntimeValue.pythonFloat(d)
        case let .string(s): writeString(s, into: &out)
        case let .list(items):
            guard !items.isEmpty else { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                newline(&out, level + 1)
                try write(item, into: &out, level: level + 1)
            }
            newline(&out, level)
            out += "]"
        case let .dict(d):
            guard !d.keys.isEmpty else { out += "{}"; return }
            out += "{"
            let keys = sortKeys ? d.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) } : d.keys
            for (i, k) in keys.enumerated() {
                if i > 0 { out += indent == nil ? ", " : "," }
                newline(&out, level + 1)
                writeString(k, into: &out)
                out += ": "
                try write(d[k]!, into: &out, level: level + 1)
            }
            newline(&out, level)
            out += "}"
        case let .namespace(ns):
            try write(.dict(ns.values), into: &out, level: level)
        default:
            throw fail("tojson: object of type '\(v.typeName)' is not JSON serializable")
        }
    }

    private func newline(_ out: inout String, _ level: Int) {
        guard let indent else { return }
        out += "\n" + String(repeating: " ", count: max(0, indent) * level)
    }

    private func writeString(_ s: String, into out: inout String) { JSONString.append(s, to: &out, asciiOnly: ensureASCII) }
}
