import InferenceCore

/// Splits template text into tokens the way Hugging Face's Jinja environment does:
/// `trim_blocks` and `lstrip_blocks` on, `{%-`/`-%}` (and `{{-`, `{#-`...) strip whitespace, `{%+` keeps it.
struct JinjaToken: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case text(String)
        case expressionOpen, expressionClose   // {{ }}
        case statementOpen, statementClose     // {% %}
        case name(String)
        case string(String)
        case int(Int)
        case double(Double)
        case symbol(String)
        case end
    }
    var kind: Kind
    var position: SourcePosition
}

struct JinjaLexer {
    private let chars: [Unicode.Scalar]
    private var i = 0
    private var line = 1
    private var column = 1
    private var tokens: [JinjaToken] = []

    init(_ source: String) {
        var scalars = Array(source.unicodeScalars)
        // jinja2 drops one trailing newline of the template (keep_trailing_newline=False).
        if scalars.last == "\n" {
            scalars.removeLast()
            if scalars.last == "\r" { scalars.removeLast() }
        }
        chars = scalars
    }

    static func tokenize(_ source: String) throws(ChatTemplateError) -> [JinjaToken] {
        var lexer = JinjaLexer(source)
        try lexer.run()
        return lexer.tokens
    }

    private var position: SourcePosition { SourcePosition(line: line, column: column) }

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        i + offset < chars.count ? chars[i + offset] : nil
    }

    private mutating func advance(_ count: Int = 1) {
        for _ in 0..<count where i < chars.count {
            if chars[i] == "\n" { line += 1; column = 1 } else { column += 1 }
            i += 1
        }
    }

    private func isTagStart(at k: Int) -> Bool {
        k + 1 < chars.count && chars[k] == "{" && (chars[k + 1] == "{" || chars[k + 1] == "%" || chars[k + 1] == "#")
    }

    private func error(_ message: String, _ at: SourcePosition) -> ChatTemplateError {
        .syntax(message: message, line: at.line, column: at.column)
    }

    private mutating func run() throws(ChatTemplateError) {
        var stripNextLeading = false   // the previous tag ended with `-`
        var trimNextNewline = false    // the previous tag was a block or comment (trim_blocks)
        while i < chars.count {
            let textStart = i
            let textPosition = position
            var j = i
            while j < chars.count && !isTagStart(at: j) { j += 1 }
            var text = Array(chars[textStart..<j])
            var lineStarting = textStart == 0 || chars[textStart - 1] == "\n"
            // Leading trims from the previous tag.
            if trimNextNewline && !stripNextLeading {
                if text.first == "\n" { text.removeFirst(); lineStarting = true }
                else if text.count >= 2 && text[0] == "\r" && text[1] == "\n" { text.removeFirst(2); lineStarting = true }
            }
            if stripNextLeading { while let f = text.first, f.properties.isWhitespace { text.removeFirst() } }
            stripNextLeading = false
            trimNextNewline = false
            // Trailing trims for the next tag.
            if j < chars.count {
                let kind = chars[j + 1]
                let sign: Unicode.Scalar? = j + 2 < chars.count ? chars[j + 2] : nil
                if sign == "-" {
                    while let l = text.last, l.properties.isWhitespace { text.removeLast() }
                } else if sign != "+" && kind != "{" {
                    let lastNewline = text.lastIndex(of: "\n").map { $0 + 1 }
                    if lastNewline != nil || lineStarting {
                        let from = lastNewline ?? 0
                        if text[from...].allSatisfy({ $0 == " " || $0 == "\t" }) { text.removeSubrange(from...) }
                    }
                }
            }
            if !text.isEmpty {
                var s = String.UnicodeScalarView()
                s.append(contentsOf: text)
                tokens.append(JinjaToken(kind: .text(String(s)), position: textPosition))
            }
            advance(j - i)
            guard i < chars.count else { break }
            // A tag.
            let tagPosition = position
            let kind = chars[i + 1]
            advance(2)
            if peek() == "-" || peek() == "+" { advance() }
            switch kind {
            case "#":
                var closed = false
                while i < chars.count {
                    if peek() == "#" && peek(1) == "}" {
                        stripNextLeading = i > 0 && chars[i - 1] == "-"
                        advance(2)
                        closed = true
                        break
                    }
                    advance()
                }
                guard closed else { throw error("unclosed comment: `{#` has no matching `#}`", tagPosition) }
                trimNextNewline = true
            case "{":
                tokens.append(JinjaToken(kind: .expressionOpen, position: tagPosition))
                stripNextLeading = try lexInside(closing: "}", opened: tagPosition, what: "`{{` has no matching `}}`")
                tokens.append(JinjaToken(kind: .expressionClose, position: position))
            default:
                tokens.append(JinjaToken(kind: .statementOpen, position: tagPosition))
                stripNextLeading = try lexInside(closing: "%", opened: tagPosition, what: "`{%` has no matching `%}`")
                tokens.append(JinjaToken(kind: .statementClose, position: position))
                trimNextNewline = true
                try skipRawBody()
            }
        }
        tokens.append(JinjaToken(kind: .end, position: position))
    }

    /// `{% raw %}...{% endraw %}`: the body is text, untouched.
    private mutating func skipRawBody() throws(ChatTemplateError) {
        let n = tokens.count
        guard n >= 3, tokens[n - 2].kind == .name("raw"), tokens[n - 3].kind == .statementOpen else { return }
        let start = tokens[n - 3].position
        tokens.removeLast(3)
        var body = String.UnicodeScalarView()
        while i < chars.count {
            if chars[i] == "{" && peek(1) == "%" {
                var k = i + 2
                while k < chars.count, chars[k] == " " || chars[k] == "-" || chars[k] == "+" { k += 1 }
                let word = "endraw".unicodeScalars
                if Array(chars[k..<min(chars.count, k + word.count)]) == Array(word) {
                    var e = k + word.count
                    while e < chars.count, chars[e] == " " || chars[e] == "-" { e += 1 }
                    if e + 1 < chars.count && chars[e] == "%" && chars[e + 1] == "}" {
                        tokens.append(JinjaToken(kind: .text(String(body)), position: start))
                        advance(e + 2 - i)
                        return
                    }
                }
            }
            body.append(chars[i])
            advance()
        }
        throw error("`{% raw %}` has no matching `{% endraw %}`", start)
    }

    /// Tokens of an expression or statement, up to the closing `}}` or `%}`. Returns whether it ended with `-`.
    private mutating func lexInside(closing: Unicode.Scalar, opened: SourcePosition, what: String)
        throws(ChatTemplateError) -> Bool
    {
        var depth = 0
        while true {
            while let c = peek(), c.properties.isWhitespace { advance() }
            guard let c = peek() else { throw error("unclosed tag: \(what)", opened) }
            if depth == 0 {
                if c == closing && peek(1) == "}" { advance(2); return false }
                if c == "-" && peek(1) == closing && peek(2) == "}" { advance(3); return true }
                if c == "+" && peek(1) == closing && peek(2) == "}" { advance(3); return false }
            }
            if isTagStart(at: i) && chars[i + 1] != "{" {
                throw error("unclosed tag: \(what) before the next tag starts", opened)
            }
            let at = position
            if c == "_" || c.properties.isAlphabetic {
                var s = String.UnicodeScalarView()
                while let d = peek(), d == "_" || d.properties.isAlphabetic || ("0"..."9").contains(d) {
                    s.append(d); advance()
                }
                tokens.append(JinjaToken(kind: .name(String(s)), position: at))
            } else if ("0"..."9").contains(c) {
                var s = ""
                var isDouble = false
                while let d = peek(), ("0"..."9").contains(d) || d == "_" { if d != "_" { s.unicodeScalars.append(d) }; advance() }
                if peek() == ".", let d = peek(1), ("0"..."9").contains(d) {
                    isDouble = true
                    s += "."; advance()
                    while let d = peek(), ("0"..."9").contains(d) { s.unicodeScalars.append(d); advance() }
                }
                if peek() == "e" || peek() == "E", let d = peek(1), ("0"..."9").contains(d) || d == "-" || d == "+" {
                    isDouble = true
                    s += "e"; advance()
                    if peek() == "-" || peek() == "+" { s.unicodeScalars.append(peek()!); advance() }
                    while let d = peek(), ("0"..."9").contains(d) { s.unicodeScalars.append(d); advance() }
                }
                if isDouble {
                    guard let v = Double(s) else { throw error("bad number literal `\(s)`", at) }
                    tokens.append(JinjaToken(kind: .double(v), position: at))
                } else {
                    guard let v = Int(s) else { throw error("integer literal `\(s)` is too large", at) }
                    tokens.append(JinjaToken(kind: .int(v), position: at))
                }
            } else if c == "'" || c == "\"" {
                tokens.append(JinjaToken(kind: .string(try lexString(quote: c)), position: at))
            } else {
                let three = [peek(), peek(1)].compactMap { $0 }
                let two = String(String.UnicodeScalarView(three))
                if ["==", "!=", "<=", ">=", "//", "**"].contains(two) {
                    advance(2)
                    tokens.append(JinjaToken(kind: .symbol(two), position: at))
                } else if "+-*/%~<>=()[]{}.,:|".unicodeScalars.contains(c) {
                    if c == "(" || c == "[" || c == "{" { depth += 1 }
                    if c == ")" || c == "]" || c == "}" { depth = max(0, depth - 1) }
                    advance()
                    tokens.append(JinjaToken(kind: .symbol(String(c)), position: at))
                } else {
                    throw error("unexpected character `\(c)`", at)
                }
            }
        }
    }

    private mutating func lexString(quote: Unicode.Scalar) throws(ChatTemplateError) -> String {
        let start = position
        advance()
        var s = String.UnicodeScalarView()
        while let c = peek() {
            advance()
            if c == quote { return String(s) }
            if c == "\\", let e = peek() {
                advance()
                switch e {
                case "n": s.append("\n")
                case "t": s.append("\t")
                case "r": s.append("\r")
                case "0": s.append("\0")
                case "\\", "'", "\"": s.append(e)
                case "u", "x":
                    let digits = e == "u" ? 4 : 2
                    var hex = ""
                    for _ in 0..<digits { if let h = peek(), h.properties.isASCIIHexDigit { hex.unicodeScalars.append(h); advance() } }
                    guard hex.count == digits, let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) else {
                        throw error("bad `\\\(e)` escape in string literal", start)
                    }
                    s.append(scalar)
                case "\n": break
                default: s.append("\\"); s.append(e)
                }
            } else {
                s.append(c)
            }
        }
        throw error("unterminated string literal", start)
    }
}
