/// A JSON-shaped value handed to a chat template from outside (messages, tools, extra variables).
/// Objects keep their keys in the order given, as Python dicts do (it shows in `tojson` and `items`).
public enum JinjaValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object([(String, JinjaValue)])

    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case let (.bool(x), .bool(y)): x == y
        case let (.int(x), .int(y)): x == y
        case let (.double(x), .double(y)): x == y
        case let (.string(x), .string(y)): x == y
        case let (.array(x), .array(y)): x == y
        case let (.object(x), .object(y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }
}

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) { self = .object(elements) }
    public init(nilLiteral: ()) { self = .null }
}

/// An error of a chat template, with where it happened (1-based line and column of the template text).
public enum ChatTemplateError: Error, Equatable, CustomStringConvertible {
    /// The template text does not parse.
    case syntax(message: String, line: Int, column: Int)
    /// The template failed while rendering (unknown filter, bad operand, undefined attribute...).
    case runtime(message: String, line: Int, column: Int)
    /// The template called `raise_exception(message)`: the conversation is not one it accepts.
    case raised(message: String, line: Int, column: Int)

    public var description: String {
        switch self {
        case let .syntax(m, l, c): "chat template syntax error at line \(l), column \(c): \(m)"
        case let .runtime(m, l, c): "chat template error at line \(l), column \(c): \(m)"
        case let .raised(m, l, c): "chat template rejected the conversation (line \(l), column \(c)): \(m)"
        }
    }
}
