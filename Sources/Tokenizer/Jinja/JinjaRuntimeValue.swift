import InferenceCore

/// A value while a template renders: JSON-like data plus Jinja's own kinds (undefined, namespace, callables).
/// Printing, truthiness and equality follow Python, because Hugging Face renders templates with Python's jinja2.
enum RuntimeValue {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([RuntimeValue])
    case dict(RuntimeDict)
    case namespace(JinjaNamespace)
    case macro(JinjaMacro)
    case builtin(String)
    case method(RuntimeBox, String)

    init(_ v: JinjaValue) {
        switch v {
        case .null: self = .none
        case let .bool(b): self = .bool(b)
        case let .int(i): self = .int(i)
        case let .double(d): self = .double(d)
        case let .string(s): self = .string(s)
        case let .array(a): self = .list(a.map(RuntimeValue.init))
        case let .object(pairs):
            var d = RuntimeDict()
            for (k, v) in pairs { d[k] = RuntimeValue(v) }
            self = .dict(d)
        }
    }

    var isUndefined: Bool { if case .undefined = self { true } else { false } }

    var truthy: Bool {
        switch self {
        case .undefined, .none: false
        case let .bool(b): b
        case let .int(i): i != 0
        case let .double(d): d != 0
        case let .string(s): !s.isEmpty
        case let .list(l): !l.isEmpty
        case let .dict(d): !d.keys.isEmpty
        default: true
        }
    }

    /// Python's type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: "undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .int: "int"
        case .double: "float"
        case .string: "str"
        case .list: "list"
        case .dict: "dict"
        case .namespace: "Namespace"
        case .macro: "macro"
        case .builtin, .method: "function"
        }
    }

    /// Python's `str(x)`; undefined prints as nothing.
    var text: String {
        switch self {
        case .undefined: ""
        case let .string(s): s
        default: repr
        }
    }

    /// Python's `repr(x)`.
    var repr: String { repr(depth: 0, seen: []) }

    /// `repr` that stops where Python's does on a cycle (a namespace holding itself: `{% set ns.n = ns %}`) and at a
    /// nesting depth no chat needs, so a hostile template cannot recurse the stack away.
    private func repr(depth: Int, seen: Set<ObjectIdentifier>) -> String {
        guard depth < 100 else { return "..." }
        func inner(_ v: RuntimeValue) -> String { v.repr(depth: depth + 1, seen: seen) }
        return switch self {
        case .undefined: ""
        case .none: "None"
        case let .bool(b): b ? "True" : "False"
        case let .int(i): String(i)
        case let .double(d): RuntimeValue.pythonFloat(d)
        case let .string(s): RuntimeValue.pythonStringRepr(s)
        case let .list(l): "[" + l.map(inner).joined(separator: ", ") + "]"
        case let .dict(d): "{" + d.keys.map { RuntimeValue.pythonStringRepr($0) + ": " + inner(d[$0]!) }.joined(separator: ", ") + "}"
        case let .namespace(n):
            if seen.contains(ObjectIdentifier(n)) {
                "<Namespace ...>"
            } else {
                "<Namespace " + n.values.keys.map { key in
                    "\(key)=\(n.values[key]!.repr(depth: depth + 1, seen: seen.union([ObjectIdentifier(n)])))"
                }.joined(separator: ", ") + ">"
            }
        case let .macro(m): "<Macro '\(m.name)'>"
        case let .builtin(n): "<function \(n)>"
        case let .method(_, n): "<built-in method \(n)>"
        }
    }

    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        return d.description
    }

    static func pythonStringRepr(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(c) == quote { out += "\\" + String(quote) }
                else if c.value < 0x20 || c.value == 0x7f { out += "\\x" + hex(c.value, 2) }
                else { out.unicodeScalars.append(c) }
            }
        }
        out.append(quote)
        return out
    }

    static func hex(_ v: UInt32, _ width: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }
}

/// A dict that keeps insertion order, as Python's does.
struct RuntimeDict {
    private(set) var keys: [String] = []
    private var storage: [String: RuntimeValue] = [:]

    subscript(key: String) -> RuntimeValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }
}

/// `namespace()`: the one mutable object templates have (`{% set ns.x = ... %}` inside loops).
final class JinjaNamespace {
    var values: RuntimeDict
    init(_ values: RuntimeDict) { self.values = values }
}

/// A `{% macro %}` with the scope it was defined in.
struct JinjaMacro {
    let name: String
    let parameters: [(String, JinjaExpression?)]
    let body: [JinjaNode]
    let scope: JinjaScope
}

/// Boxes the receiver of a bound method (`message.content.strip`).
final class RuntimeBox {
    let value: RuntimeValue
    init(_ value: RuntimeValue) { self.value = value }
}

/// Variables; loops and macros open a child scope, so `set` inside a loop does not leak out (as in Jinja).
final class JinjaScope {
    private var variables: [String: RuntimeValue] = [:]
    let parent: JinjaScope?

    init(parent: JinjaScope?) { self.parent = parent }

    func lookup(_ name: String) -> RuntimeValue? {
        var s: JinjaScope? = self
        while let scope = s {
            if let v = scope.variables[name] { return v }
            s = scope.parent
        }
        return nil
    }

    func set(_ name: String, _ value: RuntimeValue) { variables[name] = value }
}
