import InferenceCore

/// Recursive-descent parser from tokens to `JinjaNode`s, with Jinja's operator precedence:
/// `x if c else y` < `or` < `and` < `not` < comparisons/`in` < `+ -` < `~` < `* / // %` < `**`
/// < unary `-` < postfix (`.a`, `[i]`, `[a:b]`, calls) with filters `|f` and tests `is t`.
struct JinjaParser {
    private let tokens: [JinjaToken]
    private var k = 0
    private var depth = 0

    init(tokens: [JinjaToken]) { self.tokens = tokens }

    static func parse(_ source: String) throws(ChatTemplateError) -> [JinjaNode] {
        var parser = JinjaParser(tokens: try JinjaLexer.tokenize(source))
        let (nodes, end) = try parser.parseBody(until: [])
        guard end == nil else { throw parser.error("unexpected `{% \(end!) %}`") }
        return nodes
    }

    // MARK: token helpers

    private var current: JinjaToken { tokens[k] }
    private var position: SourcePosition { tokens[k].position }

    private func error(_ message: String, at: SourcePosition? = nil) -> ChatTemplateError {
        let p = at ?? position
        return .syntax(message: message, line: p.line, column: p.column)
    }

    private func describe(_ kind: JinjaToken.Kind) -> String {
        switch kind {
        case .text: "text"
        case .expressionOpen: "`{{`"
        case .expressionClose: "`}}`"
        case .statementOpen: "`{%`"
        case .statementClose: "`%}`"
        case let .name(n): "`\(n)`"
        case let .string(s): "string '\(s.prefix(20))'"
        case let .int(v): "`\(v)`"
        case let .double(v): "`\(v)`"
        case let .symbol(s): "`\(s)`"
        case .end: "the end of the template"
        }
    }

    private mutating func next() -> JinjaToken {
        let t = tokens[k]
        if k < tokens.count - 1 { k += 1 }
        return t
    }

    private func isSymbol(_ s: String) -> Bool { current.kind == .symbol(s) }
    private func isName(_ s: String) -> Bool { current.kind == .name(s) }

    private mutating func accept(_ s: String) -> Bool {
        if isSymbol(s) { k += 1; return true }
        return false
    }

    private mutating func acceptName(_ s: String) -> Bool {
        if isName(s) { k += 1; return true }
        return false
    }

    private mutating func expect(_ s: String, _ context: String) throws(ChatTemplateError) {
        guard accept(s) else { throw error("expected `\(s)` \(context), found \(describe(current.kind))") }
    }

    private mutating func expectName(_ context: String) throws(ChatTemplateError) -> String {
        guard case let .name(n) = current.kind else {
            throw error("expected a name \(context), found \(describe(current.kind))")
        }
        k += 1
        return n
    }

    private mutating func expectStatementClose(_ statement: String) throws(ChatTemplateError) {
        guard current.kind == .statementClose else {
            throw error("expected `%}` to end `{% \(statement) %}`, found \(describe(current.kind))")
        }
        k += 1
    }

    // MARK: statements

    /// Parses nodes until one of `until` (a statement keyword) opens a tag; returns it (tag left after the keyword).
    private mutating func parseBody(until: Set<String>) throws(ChatTemplateError) -> ([JinjaNode], String?) {
        depth += 1
        defer { depth -= 1 }
        guard depth < 200 else { throw error("template nests too deeply") }
        var nodes: [JinjaNode] = []
        while true {
            let t = current
            switch t.kind {
            case .end:
                return (nodes, nil)
            case let .text(s):
                k += 1
                nodes.append(.text(s))
            case .expressionOpen:
                k += 1
                let e = try parseExpression()
                guard current.kind == .expressionClose else {
                    throw error("expected `}}` to end the expression, found \(describe(current.kind))")
                }
                k += 1
                nodes.append(.output(e))
            case .statementOpen:
                k += 1
                guard case let .name(keyword) = current.kind else {
                    throw error("expected a statement keyword after `{%`, found \(describe(current.kind))")
                }
                if until.contains(keyword) { k += 1; return (nodes, keyword) }
                nodes.append(try parseStatement(keyword))
            default:
                throw error("unexpected \(describe(t.kind))")
            }
        }
    }

    private mutating func parseBlock(_ opener: String, at: SourcePosition, until: Set<String>)
        throws(ChatTemplateError) -> ([JinjaNode], String)
    {
        let (body, end) = try parseBody(until: until)
        guard let end else {
            let wanted = until.sorted().map { "{% \($0) %}" }.joined(separator: " or ")
            throw error("unclosed `{% \(opener) %}`: expected \(wanted) before the end of the template", at: at)
        }
        return (body, end)
    }

    private mutating func parseStatement(_ keyword: String) throws(ChatTemplateError) -> JinjaNode {
        let at = position
        k += 1
        switch keyword {
        case "if":
            var branches: [(JinjaExpression, [JinjaNode])] = []
            var condition = try parseExpression()
            while true {
                try expectStatementClose("if")
                let (body, end) = try parseBlock("if", at: at, until: ["elif", "else", "endif"])
                branches.append((condition, body))
                switch end {
                case "elif":
                    condition = try parseExpression()
                case "else":
                    try expectStatementClose("else")
                    let (otherwise, _) = try parseBlock("if", at: at, until: ["endif"])
                    try expectStatementClose("endif")
                    return .ifChain(branches, otherwise: otherwise)
                default:
                    try expectStatementClose("endif")
                    return .ifChain(branches, otherwise: [])
                }
            }
        case "for":
            var targets = [try expectName("after `for`")]
            while accept(",") { targets.append(try expectName("in the `for` targets")) }
            guard acceptName("in") else { throw error("expected `in` in `{% for %}`, found \(describe(current.kind))") }
            let iterable = try parseExpression(allowConditional: false)
            var filter: JinjaExpression? = nil
            if acceptName("if") { filter = try parseExpression() }
            _ = acceptName("recursive")
            try expectStatementClose("for")
            let (body, end) = try parseBlock("for", at: at, until: ["else", "endfor"])
            var otherwise: [JinjaNode] = []
            if end == "else" {
                try expectStatementClose("else")
                (otherwise, _) = try parseBlock("for", at: at, until: ["endfor"])
            }
            try expectStatementClose("endfor")
            return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, at)
        case "set":
            let name = try expectName("after `set`")
            if accept(".") {
                let attribute = try expectName("after `.` in `set`")
                try expect("=", "in `{% set %}`")
                let value = try parseExpression()
                try expectStatementClose("set")
                return .set(.attribute(name, attribute), value, at)
            }
            if current.kind == .statementClose {
                k += 1
                let (body, _) = try parseBlock("set", at: at, until: ["endset"])
                try expectStatementClose("endset")
                return .setBlock(name, body)
            }
            var names = [name]
            while accept(",") { names.append(try expectName("in the `set` targets")) }
            try expect("=", "in `{% set %}`")
            var value = try parseExpression()
            if isSymbol(",") {
                var items = [value]
                while accept(",") { items.append(try parseExpression()) }
                value = .list(items, at)
            }
            try expectStatementClose("set")
            return .set(names.count == 1 ? .name(name) : .names(names), value, at)
        case "macro":
            let name = try expectName("after `macro`")
            try expect("(", "after the macro name")
            var parameters: [(String, JinjaExpression?)] = []
            while !accept(")") {
                let p = try expectName("as a macro parameter")
                var defaultValue: JinjaExpression? = nil
                if accept("=") { defaultValue = try parseExpression() }
                parameters.append((p, defaultValue))
                if !isSymbol(")") { try expect(",", "between macro parameters") }
            }
            try expectStatementClose("macro")
            let (body, _) = try parseBlock("macro", at: at, until: ["endmacro"])
            try expectStatementClose("endmacro")
            return .macro(name: name, parameters: parameters, body: body)
        case "filter":
            let name = try expectName("after `filter`")
            var arguments: [JinjaArgument] = []
            if accept("(") { arguments = try parseArguments() }
            try expectStatementClose("filter")
            let (body, _) = try parseBlock("filter", at: at, until: ["endfilter"])
            try expectStatementClose("endfilter")
            return .filterBlock(name: name, arguments, body: body, at)
        case "break":
            try expectStatementClose("break")
            return .breakLoop(at)
        case "continue":
            try expectStatementClose("continue")
            return .continueLoop(at)
        case "generation":
            // transformers' AssistantTracker marks assistant text; it renders its body unchanged.
            try expectStatementClose("generation")
            let (body, _) = try parseBlock("generation", at: at, until: ["endgeneration"])
            try expectStatementClose("endgeneration")
            return .ifChain([(.literal(.bool(true), at), body)], otherwise: [])
        default:
            throw error("unknown statement `{% \(keyword) %}`", at: at)
        }
    }

    // MARK: expressions

    private mutating func parseExpression(allowConditional: Bool = true) throws(ChatTemplateError) -> JinjaExpression {
        depth += 1
        defer { depth -= 1 }
        guard depth < 200 else { throw error("expression nests too deeply") }
        let at = position
        let value = try parseOr()
        guard allowConditional, acceptName("if") else { return value }
        let condition = try parseOr()
        var otherwise: JinjaExpression? = nil
        if acceptName("else") { otherwise = try parseExpression() }
        return .conditional(then: value, condition: condition, otherwise: otherwise, at)
    }

    private mutating func parseOr() throws(ChatTemplateError) -> JinjaExpression {
        var left = try parseAnd()
        while isName("or") {
            let at = position
            k += 1
            left = .binary("or", left, try parseAnd(), at)
        }
        return left
    }

    private mutating func parseAnd() throws(ChatTemplateError) -> JinjaExpression {
        var left = try parseNot()
        while isName("and") {
            let at = position
            k += 1
            left = .binary("and", left, try parseNot(), at)
        }
        return left
    }

    private mutating func parseNot() throws(ChatTemplateError) -> JinjaExpression {
        if isName("not") {
            let at = position
            k += 1
            depth += 1
            defer { depth -= 1 }
            guard depth < 200 else { throw error("expression nests too deeply") }
            return .unary("not", try parseNot(), at)
        }
        return try parseComparison()
    }

    /// Comparisons chain as in Python: `a < b < c` is `a < b and b < c`.
    private mutating func parseComparison() throws(ChatTemplateError) -> JinjaExpression {
        let first = try parseAdditive()
        var left = first
        var chain: JinjaExpression? = nil
        while true {
            let at = position
            let op: String
            if case let .symbol(s) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(s) {
                k += 1
                op = s
            } else if acceptName("in") {
                op = "in"
            } else if isName("not"), k + 1 < tokens.count, tokens[k + 1].kind == .name("in") {
                k += 2
                op = "not in"
            } else {
                return chain ?? left
            }
            let right = try parseAdditive()
            let comparison = JinjaExpression.binary(op, left, right, at)
            chain = chain.map { .binary("and", $0, comparison, at) } ?? comparison
            left = right
        }
    }

    private mutating func parseAdditive() throws(ChatTemplateError) -> JinjaExpression {
        var left = try parseConcat()
        while isSymbol("+") || isSymbol("-") {
            let at = position
            guard case let .symbol(op) = next().kind else { break }
            left = .binary(op, left, try parseConcat(), at)
        }
        return left
    }

    private mutating func parseConcat() throws(ChatTemplateError) -> JinjaExpression {
        var left = try parseMultiplicative()
        while isSymbol("~") {
            let at = position
            k += 1
            left = .binary("~", left, try parseMultiplicative(), at)
        }
        return left
    }

    private mutating func parseMultiplicative() throws(ChatTemplateError) -> JinjaExpression {
        var left = try parsePower()
        while isSymbol("*") || isSymbol("/") || isSymbol("//") || isSymbol("%") {
            let at = position
            guard case let .symbol(op) = next().kind else { break }
            left = .binary(op, left, try parsePower(), at)
        }
        return left
    }

    private mutating func parsePower() throws(ChatTemplateError) -> JinjaExpression {
        var left = try parseUnary()
        while isSymbol("**") {
            let at = position
            k += 1
            left = .binary("**", left, try parseUnary(), at)
        }
        return left
    }

    private mutating func parseUnary() throws(ChatTemplateError) -> JinjaExpression {
        let at = position
        if accept("-") || accept("+") {
            guard case let .symbol(op) = tokens[k - 1].kind else { return try parseUnary() }
            depth += 1
            defer { depth -= 1 }
            guard depth < 200 else { throw error("expression nests too deeply") }
            // As jinja2: the operand takes no filters; they apply to the negation (`-3|abs` is 3).
            return try parseFilters(.unary(op, try parseUnaryOperand(), at))
        }
        return try parseFilters(try parsePostfix(try parsePrimary()))
    }

    private mutating func parseUnaryOperand() throws(ChatTemplateError) -> JinjaExpression {
        let at = position
        if accept("-") || accept("+") {
            guard case let .symbol(op) = tokens[k - 1].kind else { return try parseUnaryOperand() }
            depth += 1
            defer { depth -= 1 }
            guard depth < 200 else { throw error("expression nests too deeply") }
            return .unary(op, try parseUnaryOperand(), at)
        }
        return try parsePostfix(try parsePrimary())
    }

    private mutating func parseFilters(_ base: JinjaExpression) throws(ChatTemplateError) -> JinjaExpression {
        var e = base
        while true {
            let at = position
            if accept("|") {
                let name = try parseDottedName("after `|`")
                var arguments: [JinjaArgument] = []
                if accept("(") { arguments = try parseArguments() }
                e = try parsePostfix(.filter(e, name: name, arguments, at))
            } else if acceptName("is") {
                let negated = acceptName("not")
                let name: String
                if case let .name(n) = current.kind { name = n; k += 1 }
                else if case let .symbol(s) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(s) { name = s; k += 1 }
                else { throw error("expected a test name after `is`, found \(describe(current.kind))") }
                var arguments: [JinjaArgument] = []
                if accept("(") {
                    arguments = try parseArguments()
                } else if startsPrimary() && !isName("and") && !isName("or") && !isName("else") && !isName("if")
                    && !isName("in") && !isName("not") && !isName("is")
                {
                    arguments = [JinjaArgument(name: nil, value: try parsePostfix(try parsePrimary()))]
                }
                e = .test(e, name: name, negated: negated, arguments, at)
            } else {
                return e
            }
        }
    }

    private mutating func parseDottedName(_ context: String) throws(ChatTemplateError) -> String {
        var name = try expectName(context)
        while accept(".") { name += "." + (try expectName(context)) }
        return name
    }

    private func startsPrimary() -> Bool {
        switch current.kind {
        case .name, .string, .int, .double: true
        case .symbol(let s): s == "(" || s == "[" || s == "{"
        default: false
        }
    }

    private mutating func parseArguments() throws(ChatTemplateError) -> [JinjaArgument] {
        var arguments: [JinjaArgument] = []
        while !accept(")") {
            if case let .name(n) = current.kind, k + 1 < tokens.count, tokens[k + 1].kind == .symbol("=") {
                k += 2
                arguments.append(JinjaArgument(name: n, value: try parseExpression()))
            } else {
                arguments.append(JinjaArgument(name: nil, value: try parseExpression()))
            }
            if !isSymbol(")") { try expect(",", "between call arguments") }
        }
        return arguments
    }

    private mutating func parsePostfix(_ base: JinjaExpression) throws(ChatTemplateError) -> JinjaExpression {
        var e = base
        while true {
            let at = position
            if accept(".") {
                if case let .int(i) = current.kind {
                    k += 1
                    e = .index(e, .literal(.int(i), at), at)
                } else {
                    e = .attribute(e, try expectName("after `.`"), at)
                }
            } else if accept("[") {
                var start: JinjaExpression? = nil
                if !isSymbol(":") { start = try parseExpression() }
                if accept(":") {
                    var stop: JinjaExpression? = nil
                    var step: JinjaExpression? = nil
                    if !isSymbol("]") && !isSymbol(":") { stop = try parseExpression() }
                    if accept(":") && !isSymbol("]") { step = try parseExpression() }
                    try expect("]", "to close the slice")
                    e = .slice(e, start: start, stop: stop, step: step, at)
                } else {
                    try expect("]", "to close the subscript")
                    guard let start else { throw error("empty subscript `[]`", at: at) }
                    e = .index(e, start, at)
                }
            } else if accept("(") {
                e = .call(e, try parseArguments(), at)
            } else {
                return e
            }
        }
    }

    private mutating func parsePrimary() throws(ChatTemplateError) -> JinjaExpression {
        let t = next()
        let at = t.position
        switch t.kind {
        case let .name(n):
            switch n {
            case "true", "True": return .literal(.bool(true), at)
            case "false", "False": return .literal(.bool(false), at)
            case "none", "None": return .literal(.null, at)
            default: return .name(n, at)
            }
        case var .string(s):
            while case let .string(more) = current.kind { s += more; k += 1 }
            return .literal(.string(s), at)
        case let .int(v): return .literal(.int(v), at)
        case let .double(v): return .literal(.double(v), at)
        case .symbol("("):
            if accept(")") { return .list([], at) }
            let e = try parseExpression()
            if isSymbol(",") {
                var items = [e]
                while accept(",") && !isSymbol(")") { items.append(try parseExpression()) }
                try expect(")", "to close the tuple")
                return .list(items, at)
            }
            try expect(")", "to close `(`")
            return e
        case .symbol("["):
            var items: [JinjaExpression] = []
            while !accept("]") {
                items.append(try parseExpression())
                if !isSymbol("]") { try expect(",", "between list items") }
            }
            return .list(items, at)
        case .symbol("{"):
            var pairs: [(JinjaExpression, JinjaExpression)] = []
            while !accept("}") {
                let key = try parseExpression()
                try expect(":", "after a dict key")
                pairs.append((key, try parseExpression()))
                if !isSymbol("}") { try expect(",", "between dict items") }
            }
            return .dict(pairs, at)
        default:
            throw error("expected an expression, found \(describe(t.kind))", at: at)
        }
    }
}
