/// A position in the template text.
struct SourcePosition: Sendable, Equatable {
    var line: Int
    var column: Int
}
