import InferenceCore

/// The syntax tree of a template. Every node carries where it starts, for error messages.
indirect enum JinjaExpression: Sendable {
    case literal(JinjaValue, SourcePosition)
    case name(String, SourcePosition)
    case list([JinjaExpression], SourcePosition)
    case dict([(JinjaExpression, JinjaExpression)], SourcePosition)
    case attribute(JinjaExpression, String, SourcePosition)
    case index(JinjaExpression, JinjaExpression, SourcePosition)
    case slice(JinjaExpression, start: JinjaExpression?, stop: JinjaExpression?, step: JinjaExpression?, SourcePosition)
    case call(JinjaExpression, [JinjaArgument], SourcePosition)
    case filter(JinjaExpression, name: String, [JinjaArgument], SourcePosition)
    case test(JinjaExpression, name: String, negated: Bool, [JinjaArgument], SourcePosition)
    case unary(String, JinjaExpression, SourcePosition)
    case binary(String, JinjaExpression, JinjaExpression, SourcePosition)
    case conditional(then: JinjaExpression, condition: JinjaExpression, otherwise: JinjaExpression?, SourcePosition)

    var position: SourcePosition {
        switch self {
        case let .literal(_, p), let .name(_, p), let .list(_, p), let .dict(_, p), let .attribute(_, _, p),
             let .index(_, _, p), let .slice(_, _, _, _, p), let .call(_, _, p), let .filter(_, _, _, p),
             let .test(_, _, _, _, p), let .unary(_, _, p), let .binary(_, _, _, p), let .conditional(_, _, _, p):
            p
        }
    }
}

/// A call argument: positional (`name == nil`) or keyword.
struct JinjaArgument: Sendable {
    var name: String?
    var value: JinjaExpression
}

/// Where `set` stores: a variable, or an attribute of a namespace (`ns.x`).
enum JinjaTarget: Sendable {
    case name(String)
    case names([String])
    case attribute(String, String)
}

indirect enum JinjaNode: Sendable {
    case text(String)
    case output(JinjaExpression)
    case ifChain([(JinjaExpression, [JinjaNode])], otherwise: [JinjaNode])
    case forLoop(targets: [String], iterable: JinjaExpression, filter: JinjaExpression?, body: [JinjaNode],
                 otherwise: [JinjaNode], SourcePosition)
    case set(JinjaTarget, JinjaExpression, SourcePosition)
    case setBlock(String, [JinjaNode])
    case macro(name: String, parameters: [(String, JinjaExpression?)], body: [JinjaNode])
    case filterBlock(name: String, [JinjaArgument], body: [JinjaNode], SourcePosition)
    case breakLoop(SourcePosition)
    case continueLoop(SourcePosition)
}
