import InferenceCore

/// Walks the syntax tree and writes the output. One interpreter per render; nothing is shared.
final class JinjaInterpreter {
    private var output = ""
    private var depth = 0
    /// Upper bounds on loop iterations and on bytes produced, so a hostile template cannot run forever
    /// or fill memory. Real chat templates use a few hundred iterations.
    private var steps = 1_000_000
    private var bytes = 64 << 20

    private enum Flow { case normal, breakLoop, continueLoop }

    static func render(_ nodes: [JinjaNode], globals: [String: RuntimeValue]) throws(ChatTemplateError) -> String {
        let interpreter = JinjaInterpreter()
        let scope = JinjaScope(parent: nil)
        for (k, v) in globals { scope.set(k, v) }
        _ = try interpreter.run(nodes, scope)
        return interpreter.output
    }

    private func fail(_ message: String, _ at: SourcePosition) -> ChatTemplateError {
        .runtime(message: message, line: at.line, column: at.column)
    }

    private func spend(_ amount: Int, _ at: SourcePosition) throws(ChatTemplateError) {
        steps -= amount
        if steps < 0 { throw fail("template does too much work (more than a million loop iterations)", at) }
    }

    private func spendBytes(_ amount: Int, _ at: SourcePosition) throws(ChatTemplateError) {
        bytes -= amount
        if bytes < 0 { throw fail("template output is too large (over 64 MiB)", at) }
    }

    // MARK: statements

    private func run(_ nodes: [JinjaNode], _ scope: JinjaScope) throws(ChatTemplateError) -> Flow {
        for node in nodes {
            switch node {
            case let .text(s):
                output += s
            case let .output(e):
                let v = try eval(e, scope)
                let s = v.text
                try spendBytes(s.utf8.count, e.position)
                output += s
            case let .ifChain(branches, otherwise):
                var taken = false
                for (condition, body) in branches where try eval(condition, scope).truthy {
                    taken = true
                    let flow = try run(body, scope)
                    if flow != .normal { return flow }
                    break
                }
                if !taken {
                    let flow = try run(otherwise, scope)
                    if flow != .normal { return flow }
                }
            case let .forLoop(targets, iterable, filter, body, otherwise, at):
                try runFor(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, at, scope)
            case let .set(target, e, at):
                let v = try eval(e, scope)
                switch target {
                case let .name(n): scope.set(n, v)
                case let .names(names):
                    let items = try iterate(v, at)
                    guard items.count == names.count else {
                        throw fail("cannot unpack \(items.count) values into \(names.count) names in `set`", at)
                    }
                    for (n, item) in zip(names, items) { scope.set(n, item) }
                case let .attribute(n, attribute):
                    guard case let .namespace(ns)? = scope.lookup(n) else {
                        throw fail("`set \(n).\(attribute)` needs `\(n)` to be a namespace()", at)
                    }
                    ns.values[attribute] = v
                }
            case let .setBlock(name, body):
                scope.set(name, .string(try capture(body, scope)))
            case let .macro(name, parameters, body):
                scope.set(name, .macro(JinjaMacro(name: name, parameters: parameters, body: body, scope: scope)))
            case let .filterBlock(name, arguments, body, at):
                let text = try capture(body, scope)
                output += try applyFilter(name, to: .string(text), arguments, at, scope).text
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        return .normal
    }

    private func capture(_ body: [JinjaNode], _ scope: JinjaScope) throws(ChatTemplateError) -> String {
        let saved = output
        output = ""
        defer { output = saved }
        _ = try run(body, scope)
        return output
    }

    private func runFor(targets: [String], iterable: JinjaExpression, filter: JinjaExpression?, body: [JinjaNode],
                        otherwise: [JinjaNode], _ at: SourcePosition, _ scope: JinjaScope) throws(ChatTemplateError)
    {
        var items = try iterate(try eval(iterable, scope), iterable.position)
        let loopScope = JinjaScope(parent: scope)
        func bind(_ item: RuntimeValue) throws(ChatTemplateError) {
            if targets.count == 1 {
                loopScope.set(targets[0], item)
            } else {
                let parts = try iterate(item, at)
                guard parts.count == targets.count else {
                    throw fail("cannot unpack \(parts.count) values into \(targets.count) loop variables", at)
                }
                for (n, p) in zip(targets, parts) { loopScope.set(n, p) }
            }
        }
        if let filter {
            var kept: [RuntimeValue] = []
            for item in items {
                try bind(item)
                if try eval(filter, loopScope).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            _ = try run(otherwise, scope)
            return
        }
        let n = items.count
        for (i, item) in items.enumerated() {
            try spend(1, at)
            try bind(item)
            var loop = RuntimeDict()
            loop["index"] = .int(i + 1)
            loop["index0"] = .int(i)
            loop["revindex"] = .int(n - i)
            loop["revindex0"] = .int(n - i - 1)
            loop["first"] = .bool(i == 0)
            loop["last"] = .bool(i == n - 1)
            loop["length"] = .int(n)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined("loop.previtem")
            loop["nextitem"] = i < n - 1 ? items[i + 1] : .undefined("loop.nextitem")
            loopScope.set("loop", .dict(loop))
            if try run(body, loopScope) == .breakLoop { break }
        }
    }

    private func iterate(_ v: RuntimeValue, _ at: SourcePosition) throws(ChatTemplateError) -> [RuntimeValue] {
        switch v {
        case .undefined: return []
        case let .list(l): return l
        case let .dict(d): return d.keys.map { .string($0) }
        case let .string(s): return s.unicodeScalars.map { .string(String($0)) }
        default: throw fail("'\(v.typeName)' object is not iterable", at)
        }
    }

    // MARK: expressions

    private func eval(_ e: JinjaExpression, _ scope: JinjaScope) throws(ChatTemplateError) -> RuntimeValue {
        depth += 1
        defer { depth -= 1 }
        guard depth < 400 else { throw fail("expression or macro recursion too deep", e.position) }
        switch e {
        case let .literal(v, _):
            return RuntimeValue(v)
        case let .name(n, _):
            if let v = scope.lookup(n) { return v }
            if JinjaInterpreter.builtins.contains(n) { return .builtin(n) }
            return .undefined(n)
        case let .list(items, _):
            var values: [RuntimeValue] = []
            for item in items { values.append(try eval(item, scope)) }
            return .list(values)
        case let .dict(pairs, _):
            var d = RuntimeDict()
            for (k, v) in pairs { d[try eval(k, scope).text] = try eval(v, scope) }
            return .dict(d)
        case let .attribute(base, name, at):
            return try attribute(of: try eval(base, scope), name, at)
        case let .index(base, index, at):
            return try item(of: try eval(base, scope), try eval(index, scope), at)
        case let .slice(base, start, stop, step, at):
            let v = try eval(base, scope)
            let s = try start.map { (x) throws(ChatTemplateError) in try eval(x, scope) }
            let t = try stop.map { (x) throws(ChatTemplateError) in try eval(x, scope) }
            let p = try step.map { (x) throws(ChatTemplateError) in try eval(x, scope) }
            return try slice(v, s, t, p, at)
        case let .call(callee, arguments, at):
            let f = try eval(callee, scope)
            let (positional, keywords) = try evalArguments(arguments, scope)
            return try call(f, positional, keywords, at, calleeName: JinjaInterpreter.describe(callee))
        case let .filter(base, name, arguments, at):
            return try applyFilter(name, to: try eval(base, scope), arguments, at, scope)
        case let .test(base, name, negated, arguments, at):
            let v = try eval(base, scope)
            let (positional, _) = try evalArguments(arguments, scope)
            return .bool(try test(name, v, positional, at) != negated)
        case let .unary(op, operand, at):
            let v = try eval(operand, scope)
            switch (op, v) {
            case ("not", _): return .bool(!v.truthy)
            case let ("-", .int(i)):
                guard i != Int.min else { throw fail("integer overflow", at) }
                return .int(-i)
            case let ("-", .double(d)): return .double(-d)
            case ("+", .int), ("+", .double): return v
            default: throw fail("bad operand type for unary \(op): '\(v.typeName)'", at)
            }
        case let .binary(op, l, r, at):
            if op == "and" {
                let a = try eval(l, scope)
                return a.truthy ? try eval(r, scope) : a
            }
            if op == "or" {
                let a = try eval(l, scope)
                return a.truthy ? a : try eval(r, scope)
            }
            return try binary(op, try eval(l, scope), try eval(r, scope), at)
        case let .conditional(then, condition, otherwise, _):
            if try eval(condition, scope).truthy { return try eval(then, scope) }
            if let otherwise { return try eval(otherwise, scope) }
            return .undefined("conditional")
        }
    }

    private static func describe(_ e: JinjaExpression) -> String {
        switch e {
        case let .name(n, _): n
        case let .attribute(b, n, _): describe(b) + "." + n
        default: "expression"
        }
    }

    private func evalArguments(_ arguments: [JinjaArgument], _ scope: JinjaScope)
        throws(ChatTemplateError) -> ([RuntimeValue], [String: RuntimeValue])
    {
        var positional: [RuntimeValue] = []
        var keywords: [String: RuntimeValue] = [:]
        for a in arguments {
            let v = try eval(a.value, scope)
            if let n = a.name { keywords[n] = v } else { positional.append(v) }
        }
        return (positional, keywords)
    }

    private static let builtins: Set<String> = ["raise_exception", "namespace", "range", "dict", "strftime_now"]
    private static let stringMethods: Set<String> = [
        "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "upper", "lower", "title",
        "capitalize", "replace", "join", "find", "count", "splitlines", "isdigit", "isalpha", "isspace", "format",
    ]
    private static let dictMethods: Set<String> = ["get", "items", "keys", "values"]

    private func attribute(of v: RuntimeValue, _ name: String, _ at: SourcePosition) throws(ChatTemplateError) -> RuntimeValue {
        switch v {
        case let .undefined(n):
            throw fail("'\(n)' is undefined (reading its attribute '\(name)')", at)
        case let .dict(d):
            if JinjaInterpreter.dictMethods.contains(name) { return .method(RuntimeBox(v), name) }
            return d[name] ?? .undefined(name)
        case .string:
            if JinjaInterpreter.stringMethods.contains(name) { return .method(RuntimeBox(v), name) }
            return .undefined(name)
        case let .namespace(ns):
            return ns.values[name] ?? .undefined(name)
        default:
            return .undefined(name)
        }
    }

    private func item(of v: RuntimeValue, _ index: RuntimeValue, _ at: SourcePosition) throws(ChatTemplateError) -> RuntimeValue {
        switch (v, index) {
        case let (.undefined(n), _):
            throw fail("'\(n)' is undefined (reading its item \(index.repr))", at)
        case let (.dict(d), _):
            if let found = d[index.text] { return found }
            if case let .string(s) = index, JinjaInterpreter.dictMethods.contains(s) { return .method(RuntimeBox(v), s) }
            return .undefined(index.text)
        case let (.list(l), .int(i)):
            let j = i < 0 ? l.count + i : i
            return l.indices.contains(j) ? l[j] : .undefined("[\(i)]")
        case let (.string(s), .int(i)):
            let scalars = Array(s.unicodeScalars)
            let j = i < 0 ? scalars.count + i : i
            return scalars.indices.contains(j) ? .string(String(scalars[j])) : .undefined("[\(i)]")
        case let (.namespace(ns), .string(k)):
            return ns.values[k] ?? .undefined(k)
        case (.string, .string):
            return try attribute(of: v, index.text, at)
        default:
            return .undefined("[\(index.repr)]")
        }
    }

    private func slice(_ v: RuntimeValue, _ start: RuntimeValue?, _ stop: RuntimeValue?, _ step: RuntimeValue?,
                       _ at: SourcePosition) throws(ChatTemplateError) -> RuntimeValue
    {
        func int(_ x: RuntimeValue?) throws(ChatTemplateError) -> Int? {
            switch x {
            case nil, .none?: return nil
            case let .int(i)?: return i
            default: throw fail("slice indices must be integers or none, not '\(x!.typeName)'", at)
            }
        }
        let stepValue = try int(step) ?? 1
        guard stepValue != 0 else { throw fail("slice step cannot be zero", at) }
        func indices(_ count: Int) throws(ChatTemplateError) -> [Int] {
            func clamp(_ x: Int?, _ defaultValue: Int, low: Int, high: Int) -> Int {
                guard var x else { return defaultValue }
                if x < 0 { x += count }
                return min(max(x, low), high)
            }
            var result: [Int] = []
            if stepValue > 0 {
                var i = clamp(try int(start), 0, low: 0, high: count)
                let end = clamp(try int(stop), count, low: 0, high: count)
                while i < end {
                    result.append(i)
                    let (next, overflow) = i.addingReportingOverflow(stepValue)
                    if overflow { break }
                    i = next
                }
            } else {
                var i = clamp(try int(start), count - 1, low: -1, high: count - 1)
                let end = clamp(try int(stop), -1, low: -1, high: count - 1)
                while i > end {
                    result.append(i)
                    let (next, overflow) = i.addingReportingOverflow(stepValue)
                    if overflow { break }
                    i = next
                }
            }
            return result
        }
        switch v {
        case let .list(l):
            return .list(try indices(l.count).map { l[$0] })
        case let .string(s):
            let scalars = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try indices(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        case let .undefined(n):
            throw fail("'\(n)' is undefined (slicing it)", at)
        default:
            throw fail("'\(v.typeName)' object cannot be sliced", at)
        }
    }

    // MARK: operators

    private func binary(_ op: String, _ a: RuntimeValue, _ b: RuntimeValue, _ at: SourcePosition)
        throws(ChatTemplateError) -> RuntimeValue
    {
        func unsupported() -> ChatTemplateError {
            fail("unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'", at)
        }
        switch op {
        case "==": return .bool(JinjaInterpreter.equal(a, b))
        case "!=": return .bool(!JinjaInterpreter.equal(a, b))
        case "<", ">", "<=", ">=":
            guard let c = JinjaInterpreter.compare(a, b) else {
                throw fail("'\(op)' not supported between '\(a.typeName)' and '\(b.typeName)'", at)
            }
            switch op {
            case "<": return .bool(c < 0)
            case ">": return .bool(c > 0)
            case "<=": return .bool(c <= 0)
            default: return .bool(c >= 0)
            }
        case "in", "not in":
            let found: Bool
            switch b {
            case let .string(s):
                guard case let .string(needle) = a else {
                    throw fail("'in <string>' requires a string on the left, not '\(a.typeName)'", at)
                }
                found = TextOps.find(s, needle) >= 0  // code points, as Python (no canonical equivalence)
            case let .list(l): found = l.contains { JinjaInterpreter.equal($0, a) }
            case let .dict(d): found = d[a.text] != nil && { if case .string = a { true } else { false } }()
            case .undefined: found = false
            case let .namespace(ns): found = ns.values[a.text] != nil
            default: throw fail("argument of type '\(b.typeName)' is not iterable", at)
            }
            return .bool(op == "in" ? found : !found)
        case "~":
            let (x, y) = (a.text, b.text)
            try spendBytes(x.utf8.count + y.utf8.count, at)
            return .string(x + y)
        default:
            break
        }
        if a.isUndefined || b.isUndefined {
            let n: String = if case let .undefined(x) = a { x } else if case let .undefined(x) = b { x } else { "" }
            throw fail("'\(n)' is undefined (used with \(op))", at)
        }
        switch (op, a, b) {
        case let ("+", .string(x), .string(y)):
            try spendBytes(x.utf8.count + y.utf8.count, at)
            return .string(x + y)
        case let ("+", .list(x), .list(y)):
            try spend(x.count + y.count, at)
            return .list(x + y)
        case let ("*", .string(x), .int(n)), let ("*", .int(n), .string(x)):
            try spendBytes(n > 0 ? n.multipliedReportingOverflow(by: x.utf8.count).overflow ? Int.max : n * x.utf8.count : 0, at)
            return .string(String(repeating: x, count: max(0, n)))
        case let ("*", .list(x), .int(n)), let ("*", .int(n), .list(x)):
            try spend(n > 0 ? n.multipliedReportingOverflow(by: x.count).overflow ? Int.max : n * x.count : 0, at)
            return .list(Array(repeating: x, count: max(0, n)).flatMap { $0 })
        default: break
        }
        if let x = JinjaInterpreter.intValue(a), let y = JinjaInterpreter.intValue(b) {
            switch op {
            case "+", "-", "*":
                let (r, overflow) = op == "+" ? x.addingReportingOverflow(y)
                    : op == "-" ? x.subtractingReportingOverflow(y) : x.multipliedReportingOverflow(by: y)
                if overflow { throw fail("integer overflow in \(op)", at) }
                return .int(r)
            case "/":
                guard y != 0 else { throw fail("division by zero", at) }
                return .double(Double(x) / Double(y))
            case "//", "%":
                guard y != 0 else { throw fail("integer division or modulo by zero", at) }
                if x == Int.min && y == -1 { throw fail("integer overflow in \(op)", at) }
                var q = x / y
                var r = x % y
                if r != 0 && ((r < 0) != (y < 0)) { q -= 1; r += y }
                return .int(op == "//" ? q : r)
            case "**":
                guard y >= 0 else { return .double(pow(Double(x), Double(y))) }
                var result = 1
                for _ in 0..<min(y, 64) {
                    let (r, o) = result.multipliedReportingOverflow(by: x)
                    if o { throw fail("integer overflow in **", at) }
                    result = r
                }
                if y > 64 && abs(x) > 1 { throw fail("integer overflow in **", at) }
                return .int(result)
            default: throw unsupported()
            }
        }
        if let x = JinjaInterpreter.doubleValue(a), let y = JinjaInterpreter.doubleValue(b) {
            switch op {
            case "+": return .double(x + y)
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/":
                guard y != 0 else { throw fail("float division by zero", at) }
                return .double(x / y)
            case "//":
                guard y != 0 else { throw fail("float divmod by zero", at) }
                return .double((x / y).rounded(.down))
            case "%":
                guard y != 0 else { throw fail("float modulo by zero", at) }
                let r = x - y * (x / y).rounded(.down)
                return .double(r)
            case "**": return .double(pow(x, y))
            default: throw unsupported()
            }
        }
        throw unsupported()
    }

    private func pow(_ x: Double, _ y: Double) -> Double {
        // Integer exponents only need repeated multiplication; others are rare in templates.
        if y == y.rounded(), abs(y) < 1024 {
            var r = 1.0
            for _ in 0..<Int(abs(y)) { r *= x }
            return y < 0 ? 1 / r : r
        }
        return .nan
    }

    static func intValue(_ v: RuntimeValue) -> Int? {
        switch v {
        case let .int(i): i
        case let .bool(b): b ? 1 : 0
        default: nil
        }
    }

    static func doubleValue(_ v: RuntimeValue) -> Double? {
        switch v {
        case let .double(d): d
        default: intValue(v).map(Double.init)
        }
    }

    static func equal(_ a: RuntimeValue, _ b: RuntimeValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(x), .string(y)): return x.unicodeScalars.elementsEqual(y.unicodeScalars)
        case let (.list(x), .list(y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.dict(x), .dict(y)):
            return x.keys.count == y.keys.count && x.keys.allSatisfy { k in y[k].map { equal(x[k]!, $0) } ?? false }
        case let (.namespace(x), .namespace(y)): return x === y
        default:
            if let x = doubleValue(a), let y = doubleValue(b) { return x == y }
            return false
        }
    }

    static func compare(_ a: RuntimeValue, _ b: RuntimeValue) -> Int? {
        switch (a, b) {
        case let (.string(x), .string(y)):
            if x.unicodeScalars.elementsEqual(y.unicodeScalars) { return 0 }
            return x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : 1
        case let (.list(x), .list(y)):
            for (p, q) in zip(x, y) where !equal(p, q) { return compare(p, q) }
            return x.count == y.count ? 0 : (x.count < y.count ? -1 : 1)
        default:
            if let x = intValue(a), let y = intValue(b) { return x == y ? 0 : (x < y ? -1 : 1) }
            guard let x = doubleValue(a), let y = doubleValue(b) else { return nil }
            return x == y ? 0 : (x < y ? -1 : 1)
        }
    }

    // MARK: calls

    private func call(_ f: RuntimeValue, _ args: [RuntimeValue], _ kwargs: [String: RuntimeValue], _ at: SourcePosition,
                      calleeName: String) throws(ChatTemplateError) -> RuntimeValue
    {
        switch f {
        case let .builtin(name):
            switch name {
            case "raise_exception":
                let message = args.first?.text ?? kwargs.values.first?.text ?? ""
                throw .raised(message: message, line: at.line, column: at.column)
            case "namespace", "dict":
                var d = RuntimeDict()
                if case let .dict(initial)? = args.first { for k in initial.keys { d[k] = initial[k] } }
                for k in kwargs.keys.sorted() { d[k] = kwargs[k] }
                return name == "dict" ? .dict(d) : .namespace(JinjaNamespace(d))
            case "range":
                let ints = args.compactMap(JinjaInterpreter.intValue)
                guard ints.count == args.count, (1...3).contains(ints.count) else {
                    throw fail("range() takes 1 to 3 integer arguments", at)
                }
                let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1)
                    : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
                guard step != 0 else { throw fail("range() step must not be zero", at) }
                var values: [RuntimeValue] = []
                var i = start
                while step > 0 ? i < stop : i > stop {
                    try spend(1, at)
                    values.append(.int(i))
                    let (next, overflow) = i.addingReportingOverflow(step)
                    if overflow { break }
                    i = next
                }
                return .list(values)
            case "strftime_now":
                guard case let .string(format)? = args.first else { throw fail("strftime_now() needs a format string", at) }
                return .string(JinjaDate.strftime(format))
            default:
                throw fail("unknown function '\(name)'", at)
            }
        case let .macro(m):
            let scope = JinjaScope(parent: m.scope)
            guard args.count <= m.parameters.count else {
                throw fail("macro '\(m.name)' takes \(m.parameters.count) arguments, got \(args.count)", at)
            }
            for (i, (p, defaultValue)) in m.parameters.enumerated() {
                if i < args.count { scope.set(p, args[i]) }
                else if let v = kwargs[p] { scope.set(p, v) }
                else if let defaultValue { scope.set(p, try eval(defaultValue, scope)) }
                else { scope.set(p, .undefined(p)) }
            }
            return .string(try capture(m.body, scope))
        case let .method(box, name):
            return try callMethod(box.value, name, args, kwargs, at)
        case let .undefined(n):
            throw fail("'\(n)' is undefined (called as \(calleeName)())", at)
        default:
            throw fail("'\(f.typeName)' object is not callable (\(calleeName))", at)
        }
    }

    private func stringArgument(_ args: [RuntimeValue], _ i: Int, _ what: String, _ at: SourcePosition)
        throws(ChatTemplateError) -> String?
    {
        guard i < args.count else { return nil }
        switch args[i] {
        case .none: return nil
        case let .string(s): return s
        default: throw fail("\(what) expects a string argument, not '\(args[i].typeName)'", at)
        }
    }

    private func callMethod(_ receiver: RuntimeValue, _ name: String, _ args: [RuntimeValue],
                            _ kwargs: [String: RuntimeValue], _ at: SourcePosition) throws(ChatTemplateError) -> RuntimeValue
    {
        switch receiver {
        case let .dict(d):
            switch name {
            case "get":
                guard let key = args.first ?? kwargs["key"] else { throw fail("get() needs a key", at) }
                return d[key.text] ?? (args.count > 1 ? args[1] : kwargs["default"] ?? .none)
            case "items": return .list(d.keys.map { .list([.string($0), d[$0]!]) })
            case "keys": return .list(d.keys.map { .string($0) })
            default: return .list(d.keys.map { d[$0]! })
            }
        case let .string(s):
            switch name {
            case "strip", "lstrip", "rstrip":
                let chars = try stringArgument(args, 0, name + "()", at)
                return .string(TextOps.strip(s, chars, leading: name != "rstrip", trailing: name != "lstrip"))
            case "startswith", "endswith":
                var candidates: [String] = []
                switch args.first {
                case let .string(p)?: candidates = [p]
                case let .list(l)?: candidates = l.compactMap { if case let .string(p) = $0 { p } else { nil } }
                default: throw fail("\(name)() expects a string or a tuple of strings", at)
                }
                let scalars = Array(s.unicodeScalars)
                return .bool(candidates.contains { p in
                    let ps = Array(p.unicodeScalars)
                    return name == "startswith" ? scalars.starts(with: ps) : scalars.reversed().starts(with: ps.reversed())
                })
            case "split":
                let sep = try stringArgument(args, 0, "split()", at) ?? (kwargs["sep"].flatMap { if case let .string(x) = $0 { x } else { nil } })
                let maxsplit = (args.count > 1 ? JinjaInterpreter.intValue(args[1]) : kwargs["maxsplit"].flatMap(JinjaInterpreter.intValue)) ?? -1
                if let sep, sep.isEmpty { throw fail("split(): empty separator", at) }
                return .list(TextOps.split(s, sep, maxsplit).map { .string($0) })
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(TextOps.title(s))
            case "capitalize": return .string(TextOps.capitalize(s))
            case "replace":
                guard let old = try stringArgument(args, 0, "replace()", at), let new = try stringArgument(args, 1, "replace()", at) else {
                    throw fail("replace() needs two string arguments", at)
                }
                let count = args.count > 2 ? JinjaInterpreter.intValue(args[2]) ?? -1 : -1
                return .string(TextOps.replace(s, old, new, count))
            case "join":
                guard let items = args.first else { throw fail("join() needs a list", at) }
                return .string(try iterate(items, at).map(\.text).joined(separator: s))
            case "find":
                guard let needle = try stringArgument(args, 0, "find()", at) else { throw fail("find() needs a string", at) }
                return .int(TextOps.find(s, needle))
            case "count":
                guard let needle = try stringArgument(args, 0, "count()", at) else { throw fail("count() needs a string", at) }
                return .int(needle.isEmpty ? s.unicodeScalars.count + 1 : TextOps.split(s, needle, -1).count - 1)
            case "splitlines": return .list(TextOps.splitLines(s).map { .string($0) })
            case "format": return .string(try format(s, args, kwargs, at))
            case "isdigit": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal })
            case "isalpha": return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic })
            default: return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isWhitespace })
            }
        default:
            throw fail("'\(receiver.typeName)' has no method '\(name)'", at)
        }
    }

    /// `str.format` with plain fields: `{}`, `{0}`, `{name}`, and `{{`/`}}` escapes (no format specs).
    private func format(_ s: String, _ args: [RuntimeValue], _ kwargs: [String: RuntimeValue], _ at: SourcePosition)
        throws(ChatTemplateError) -> String
    {
        let scalars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        var nextIndex = 0
        while i < scalars.count {
            let c = scalars[i]
            if c == "}" {
                guard i + 1 < scalars.count, scalars[i + 1] == "}" else { throw fail("format(): single '}' in format string", at) }
                out.append("}")
                i += 2
            } else if c == "{" {
                if i + 1 < scalars.count && scalars[i + 1] == "{" { out.append("{"); i += 2; continue }
                guard let close = scalars[(i + 1)...].firstIndex(of: "}") else { throw fail("format(): unclosed '{' in format string", at) }
                let field = String(String.UnicodeScalarView(scalars[(i + 1)..<close]))
                let value: RuntimeValue?
                if field.isEmpty {
                    value = nextIndex < args.count ? args[nextIndex] : nil
                    nextIndex += 1
                } else if let n = Int(field) {
                    value = n >= 0 && n < args.count ? args[n] : nil
                } else if field.unicodeScalars.allSatisfy({ $0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0) }) {
                    value = kwargs[field]
                } else {
                    throw fail("format(): unsupported field '{\(field)}' (only {}, {0} and {name})", at)
                }
                guard let value else { throw fail("format(): no argument for '{\(field)}'", at) }
                out.append(contentsOf: value.text.unicodeScalars)
                i = close + 1
            } else {
                out.append(c)
                i += 1
            }
        }
        return String(out)
    }

    // MARK: tests

    private func test(_ name: String, _ v: RuntimeValue, _ args: [RuntimeValue], _ at: SourcePosition)
        throws(ChatTemplateError) -> Bool
    {
        func argument() throws(ChatTemplateError) -> RuntimeValue {
            guard let a = args.first else { throw fail("test '\(name)' needs an argument", at) }
            return a
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true } else { return false }
        case "string": if case .string = v { return true } else { return false }
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "number":
            switch v { case .int, .double, .bool: return true
            default: return false }
        case "mapping": if case .dict = v { return true } else { return false }
        case "sequence", "iterable":
            switch v { case .list, .string, .dict: return true
            default: return false }
        case "callable":
            switch v { case .macro, .builtin, .method: return true
            default: return false }
        case "even", "odd":
            guard let i = JinjaInterpreter.intValue(v) else { throw fail("test '\(name)' needs a number, not '\(v.typeName)'", at) }
            return (i & 1 == 0) == (name == "even")
        case "divisibleby":
            guard let i = JinjaInterpreter.intValue(v), let d = JinjaInterpreter.intValue(try argument()), d != 0 else {
                throw fail("test 'divisibleby' needs non-zero integers", at)
            }
            return d == -1 || i % d == 0
        case "eq", "equalto", "==", "sameas": return JinjaInterpreter.equal(v, try argument())
        case "ne", "!=": return !JinjaInterpreter.equal(v, try argument())
        case "lt", "<", "lessthan", "gt", ">", "greaterthan", "le", "<=", "ge", ">=":
            let op = ["lt": "<", "lessthan": "<", "gt": ">", "greaterthan": ">", "le": "<=", "ge": ">="][name] ?? name
            return try binary(op, v, try argument(), at).truthy
        case "in": return try binary("in", v, try argument(), at).truthy
        case "lower": if case let .string(s) = v { return s == s.lowercased() } else { return false }
        case "upper": if case let .string(s) = v { return s == s.uppercased() } else { return false }
        default: throw fail("unknown test '\(name)'", at)
        }
    }

    // MARK: filters

    private func applyFilter(_ name: String, to v: RuntimeValue, _ arguments: [JinjaArgument], _ at: SourcePosition,
                             _ scope: JinjaScope) throws(ChatTemplateError) -> RuntimeValue
    {
        let (args, kwargs) = try evalArguments(arguments, scope)
        func arg(_ i: Int, _ key: String) -> RuntimeValue? { i < args.count ? args[i] : kwargs[key] }
        func list() throws(ChatTemplateError) -> [RuntimeValue] { try iterate(v, at) }
        switch name {
        case "trim", "strip":
            guard case let .string(s) = v else { return .string(TextOps.strip(v.text, nil, leading: true, trailing: true)) }
            let chars: String? = if case let .string(c)? = arg(0, "chars") { c } else { nil }
            return .string(TextOps.strip(s, chars, leading: true, trailing: true))
        case "tojson":
            let indent = arg(0, "indent").flatMap(JinjaInterpreter.intValue).map { min(max($0, 0), 64) }
            let sortKeys = arg(4, "sort_keys")?.truthy ?? false
            let ensureASCII = arg(1, "ensure_ascii")?.truthy ?? false
            var out = ""
            try JSONWriter(indent: indent, sortKeys: sortKeys, ensureASCII: ensureASCII, fail: { self.fail($0, at) })
                .write(v, into: &out, level: 0)
            return .string(out)
        case "length", "count":
            switch v {
            case let .string(s): return .int(s.unicodeScalars.count)
            case let .list(l): return .int(l.count)
            case let .dict(d): return .int(d.keys.count)
            case .undefined: return .int(0)
            default: throw fail("object of type '\(v.typeName)' has no length", at)
            }
        case "upper": return .string(v.text.uppercased())
        case "lower": return .string(v.text.lowercased())
        case "capitalize": return .string(TextOps.capitalize(v.text))
        case "title": return .string(TextOps.title(v.text))
        case "string": return .string(v.text)
        case "safe", "e", "escape", "forceescape": return v.isUndefined ? v : (name == "safe" ? v : .string(TextOps.escapeHTML(v.text)))
        case "first":
            let l = try list()
            return l.first ?? .undefined("first")
        case "last":
            let l = try list()
            return l.last ?? .undefined("last")
        case "join":
            var items = try list()
            if let attribute = arg(1, "attribute") {
                var picked: [RuntimeValue] = []
                for item in items { picked.append(try self.item(of: item, attribute, at)) }
                items = picked
            }
            return .string(items.map(\.text).joined(separator: arg(0, "d")?.text ?? ""))
        case "default", "d":
            let fallback = arg(0, "default_value") ?? .string("")
            let boolean = arg(1, "boolean")?.truthy ?? false
            return v.isUndefined || (boolean && !v.truthy) ? fallback : v
        case "replace":
            guard let old = arg(0, "old"), let new = arg(1, "new") else { throw fail("filter 'replace' needs two arguments", at) }
            let count = arg(2, "count").flatMap(JinjaInterpreter.intValue) ?? -1
            return .string(TextOps.replace(v.text, old.text, new.text, count))
        case "items":
            guard case let .dict(d) = v else {
                if v.isUndefined { return .list([]) }
                throw fail("filter 'items' needs a mapping, not '\(v.typeName)'", at)
            }
            return .list(d.keys.map { .list([.string($0), d[$0]!]) })
        case "list": return .list(try list())
        case "reverse":
            if case let .string(s) = v { return .string(String(String.UnicodeScalarView(s.unicodeScalars.reversed()))) }
            return .list(try list().reversed())
        case "unique":
            var seen: [RuntimeValue] = []
            for item in try list() where !seen.contains(where: { JinjaInterpreter.equal($0, item) }) { seen.append(item) }
            return .list(seen)
        case "selectattr", "rejectattr", "select", "reject":
            let byAttribute = name.hasSuffix("attr")
            let attributeName = byAttribute ? arg(0, "attribute") : nil
            let testIndex = byAttribute ? 1 : 0
            var kept: [RuntimeValue] = []
            for item in try list() {
                var subject = item
                if let attributeName {
                    subject = try self.item(of: item, attributeName, at)
                    if case .dict = item, subject.isUndefined, case let .string(a) = attributeName { subject = .undefined(a) }
                }
                let passes: Bool
                if testIndex < args.count {
                    passes = try test(args[testIndex].text, subject, Array(args.dropFirst(testIndex + 1)), at)
                } else {
                    passes = subject.truthy
                }
                if passes == name.hasPrefix("select") { kept.append(item) }
            }
            return .list(kept)
        case "map":
            var mapped: [RuntimeValue] = []
            if let attribute = kwargs["attribute"] {
                for item in try list() {
                    let x = try self.item(of: item, attribute, at)
                    mapped.append(x.isUndefined ? kwargs["default"] ?? x : x)
                }
            } else if let filterName = args.first {
                let rest = arguments.filter { $0.name == nil }.dropFirst()
                for item in try list() {
                    mapped.append(try applyFilter(filterName.text, to: item, Array(rest), at, scope))
                }
            } else {
                throw fail("filter 'map' needs a filter name or attribute=", at)
            }
            return .list(mapped)
        case "int":
            switch v {
            case let .int(i): return .int(i)
            case let .bool(b): return .int(b ? 1 : 0)
            case let .double(d): return d.isFinite && abs(d) < 9e18 ? .int(Int(d)) : .int(0)
            case let .string(s): return .int(Int(s.trimmingWhitespace()) ?? Double(s.trimmingWhitespace()).flatMap { $0.isFinite && abs($0) < 9e18 ? Int($0) : nil } ?? 0)
            default: return arg(0, "default") ?? .int(0)
            }
        case "float":
            switch v {
            case let .double(d): return .double(d)
            case let .string(s): return .double(Double(s.trimmingWhitespace()) ?? 0)
            default: return .double(JinjaInterpreter.doubleValue(v) ?? 0)
            }
        case "abs":
            switch v {
            case let .int(i) where i != Int.min: return .int(abs(i))
            case let .double(d): return .double(abs(d))
            default: throw fail("bad operand type for abs(): '\(v.typeName)'", at)
            }
        case "indent":
            let width = arg(0, "width").flatMap(JinjaInterpreter.intValue) ?? 4
            let first = arg(1, "first")?.truthy ?? false
            let blank = arg(2, "blank")?.truthy ?? false
            let pad = String(repeating: " ", count: max(0, min(width, 1000)))
            var lines = v.text.components(separatedByNewline: ())
            for i in lines.indices where (i > 0 || first) && (blank || !lines[i].isEmpty) { lines[i] = pad + lines[i] }
            return .string(lines.joined(separator: "\n"))
        case "dictsort":
            guard case let .dict(d) = v else { throw fail("filter 'dictsort' needs a mapping", at) }
            return .list(d.keys.sorted { $0.lowercased() < $1.lowercased() }.map { .list([.string($0), d[$0]!]) })
        case "sum":
            var total: RuntimeValue = .int(0)
            for item in try list() { total = try binary("+", total, item, at) }
            return total
        case "min", "max":
            let l = try list()
            guard var best = l.first else { return .undefined(name) }
            for item in l.dropFirst() {
                guard let c = JinjaInterpreter.compare(item, best) else { throw fail("filter '\(name)' cannot compare '\(item.typeName)'", at) }
                if (name == "min" && c < 0) || (name == "max" && c > 0) { best = item }
            }
            return best
        case "wordcount":
            return .int(TextOps.split(v.text, nil, -1).count)
        default:
            throw fail("unknown filter '\(name)'", at)
        }
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String { TextOps.strip(self, nil, leading: true, trailing: true) }
    fileprivate func components(separatedByNewline: ()) -> [String] {
        split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    }
}
