import Foundation
import InferenceCore
import Testing
import Tokenizer

/// The oracle: Tests/Fixtures/chat-templates/cases.json, rendered by Python's jinja2 configured as transformers'
/// `apply_chat_template` (scripts/chat-templates/make_fixtures.py; template sources in scripts/chat-templates/templates.py).
enum ChatTemplateFixture {
    struct Template: Sendable { let name, source, template: String }
    struct Case: Sendable, CustomTestStringConvertible {
        let template, conversation: String
        let addGenerationPrompt: Bool
        let messages: [JinjaValue]
        let extra: [String: JinjaValue]
        let expected: String?
        let error: String?
        var testDescription: String { "\(template) \(conversation) gen=\(addGenerationPrompt)" }
        /// Messages that are only role and content, as `ChatMessage`s.
        var chatMessages: [ChatMessage]? {
            var out: [ChatMessage] = []
            for m in messages {
                guard case let .object(pairs) = m, pairs.count == 2,
                      case let .string(content)? = pairs.first(where: { $0.0 == "content" })?.1,
                      case let .string(role)? = pairs.first(where: { $0.0 == "role" })?.1 else { return nil }
                out.append(ChatMessage(role: role, content: content))
            }
            return out
        }
    }

    /// Decodes any JSON as a `JinjaValue`, object keys sorted (the generator sorts them too, so `tojson` agrees).
    struct JSONNode: Decodable {
        let value: JinjaValue
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { value = .null }
            else if let b = try? c.decode(Bool.self) { value = .bool(b) }
            else if let i = try? c.decode(Int.self) { value = .int(i) }
            else if let d = try? c.decode(Double.self) { value = .double(d) }
            else if let s = try? c.decode(String.self) { value = .string(s) }
            else if let a = try? c.decode([JSONNode].self) { value = .array(a.map(\.value)) }
            else {
                let d = try c.decode([String: JSONNode].self)
                value = .object(d.keys.sorted().map { ($0, d[$0]!.value) })
            }
        }
    }

    struct RawTemplate: Decodable { let name, source, template: String }
    struct RawCase: Decodable {
        let template, conversation: String
        let add_generation_prompt: Bool
        let messages: [JSONNode]
        let extra: [String: JSONNode]
        let expected: String?
        let error: String?
    }
    struct File: Decodable { let templates: [RawTemplate]; let cases: [RawCase] }

    static let file: File? = try? Fixtures.load(File.self, "chat-templates/cases.json")

    static let templates: [String: Template] = Dictionary(
        uniqueKeysWithValues: (file?.templates ?? []).map { ($0.name, Template(name: $0.name, source: $0.source, template: $0.template)) })

    static let cases: [Case] = (file?.cases ?? []).map { c in
        Case(template: c.template, conversation: c.conversation, addGenerationPrompt: c.add_generation_prompt,
             messages: c.messages.map(\.value), extra: c.extra.mapValues(\.value), expected: c.expected, error: c.error)
    }
}

@Suite("ChatTemplate: Jinja renderer against jinja2")
struct ChatTemplateOracleTests {
    @Test("fixture is present and covers every template")
    func fixture() {
        #expect(ChatTemplateFixture.templates.count == 11)
        #expect(ChatTemplateFixture.cases.count > 100)
        #expect(ChatTemplateFixture.cases.contains { $0.error != nil })
    }

    @Test("renders exactly as jinja2", arguments: ChatTemplateFixture.cases)
    func rendersLikeJinja2(_ c: ChatTemplateFixture.Case) throws {
        let source = try #require(ChatTemplateFixture.templates[c.template]).template
        let template = try ChatTemplate(jinja: source)
        do {
            let out = try template.render(messageValues: c.messages, addGenerationPrompt: c.addGenerationPrompt,
                                          bosToken: "<s>", eosToken: "</s>", extra: c.extra)
            #expect(c.error == nil, "jinja2 raised \(c.error ?? "")")
            #expect(out == c.expected)
        } catch {
            guard case let .raised(message, _, _) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(message == c.error)
        }
        // The ChatMessage entry point gives the same text.
        if let messages = c.chatMessages, c.extra.isEmpty, let expected = c.expected {
            let out = try template.render(messages: messages, addGenerationPrompt: c.addGenerationPrompt,
                                          bosToken: "<s>", eosToken: "</s>")
            #expect(out == expected)
        }
    }

    @Test("built-ins render as their source templates do")
    func builtins() throws {
        let pairs: [(ChatTemplate, String)] = [(.chatML, "chatml"), (.llama3, "llama3-gen"), (.glm4, "glm4-builtin")]
        for (builtin, name) in pairs {
            for c in ChatTemplateFixture.cases where c.template == name {
                let messages = try #require(c.chatMessages)
                let out = try builtin.render(messages: messages, addGenerationPrompt: c.addGenerationPrompt,
                                             bosToken: "<s>", eosToken: "</s>")
                #expect(out == c.expected, "\(name) \(c.conversation)")
            }
        }
        // With no BOS/EOS text given, the built-ins render the bare format.
        let chat = [ChatMessage(role: "system", content: "S"), ChatMessage(role: "user", content: "U")]
        #expect(try ChatTemplate.chatML.render(messages: chat, addGenerationPrompt: true)
            == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
        #expect(try ChatTemplate.glm4.render(messages: chat, addGenerationPrompt: true) == "[gMASK]<sop><|system|>\nS<|user|>\nU<|assistant|>")
        #expect(try ChatTemplate.llama3.render(messages: chat, addGenerationPrompt: false)
            == "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>")
    }

    @Test("the GLM-4 built-in matches glm-4-9b-chat's own template on conversations without tools")
    func glm4BuiltinMatchesReal() throws {
        for c in ChatTemplateFixture.cases where c.template == "glm4" && c.extra.isEmpty {
            guard let messages = c.chatMessages else { continue }
            #expect(try ChatTemplate.glm4.render(messages: messages, addGenerationPrompt: c.addGenerationPrompt) == c.expected)
        }
    }

    @Test("the default model's GGUF template is the one in the fixture",
          .enabled(if: FileManager.default.fileExists(atPath: Fixtures.smollm2Path)))
    func defaultModelTemplate() throws {
        let tokenizer = try Fixtures.smollm2.get()
        let text = try #require(tokenizer.chatTemplate)
        #expect(text == ChatTemplateFixture.templates["smollm2"]?.template)
        let out = try ChatTemplate(jinja: text).render(messages: [ChatMessage(role: "user", content: "Hi")],
                                                       addGenerationPrompt: true)
        #expect(out == "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }
}

@Suite("ChatTemplate: errors")
struct ChatTemplateErrorTests {
    func syntaxError(_ text: String) -> ChatTemplateError? {
        do { _ = try ChatTemplate(jinja: text); return nil } catch { return error }
    }

    func renderError(_ text: String) throws -> ChatTemplateError? {
        let t = try ChatTemplate(jinja: text)
        do { _ = try t.render(messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true); return nil }
        catch { return error }
    }

    @Test("unclosed tags name the tag and where it opened")
    func unclosed() {
        #expect(syntaxError("ab\n  {% if x %}yes") == .syntax(
            message: "unclosed `{% if %}`: expected {% elif %} or {% else %} or {% endif %} before the end of the template",
            line: 2, column: 6))
        guard case let .syntax(m, l, c)? = syntaxError("x {{ messages[0]") else { Issue.record("no error"); return }
        #expect(m.contains("unclosed tag") && l == 1 && c == 3)
        guard case let .syntax(m2, _, _)? = syntaxError("{% for m in messages %}{{ m }}") else { Issue.record("no error"); return }
        #expect(m2.contains("{% for %}") && m2.contains("endfor"))
        guard case let .syntax(m3, _, _)? = syntaxError("{# never closed") else { Issue.record("no error"); return }
        #expect(m3.contains("comment"))
        guard case .syntax? = syntaxError("{{ 'unterminated }}") else { Issue.record("no error"); return }
        guard case let .syntax(m4, _, _)? = syntaxError("{% endif %}") else { Issue.record("no error"); return }
        #expect(m4.contains("endif"))
        guard case let .syntax(m5, 1, 4)? = syntaxError("{% frobnicate %}") else { Issue.record("no error"); return }
        #expect(m5.contains("frobnicate"))
        guard case .syntax? = syntaxError("{{ 1 + }}") else { Issue.record("no error"); return }
    }

    @Test("unknown filter and test are runtime errors naming them")
    func unknownFilter() throws {
        #expect(try renderError("line\n{{ 'x' | frobnicate }}") == .runtime(message: "unknown filter 'frobnicate'", line: 2, column: 8))
        guard case let .runtime(m, _, _)? = try renderError("{{ 1 is frobnicated }}") else { Issue.record("no error"); return }
        #expect(m.contains("frobnicated"))
    }

    @Test("raise_exception is a typed error with the template's message")
    func raiseException() throws {
        let t = try ChatTemplate(jinja: "{% if messages[0].role != 'system' %}{{ raise_exception('System first!') }}{% endif %}")
        #expect(throws: ChatTemplateError.raised(message: "System first!", line: 1, column: 56)) {
            try t.render(messages: [ChatMessage(role: "user", content: "x")], addGenerationPrompt: false)
        }
        #expect(try t.render(messages: [ChatMessage(role: "system", content: "x")], addGenerationPrompt: false) == "")
    }

    @Test("runtime type errors and undefined attributes")
    func runtimeErrors() throws {
        for text in ["{{ 'a' + 1 }}", "{{ nothing.attribute }}", "{{ 1 // 0 }}", "{{ messages[5].role }}",
                     "{% for x in 3 %}{% endfor %}", "{% set x.y = 1 %}", "{{ none() }}", "{{ 'a'.nope() }}",
                     "{{ 9223372036854775807 + 1 }}", "{{ -9223372036854775807 - 2 }}", "{{ 9223372036854775807 * 2 }}",
                     "{{ 2 ** 64 }}", "{{ (-9223372036854775807 - 1) // -1 }}",
                     "{{ '{}{}'.format(1) }}", "{{ '{:>4}'.format(1) }}", "{{ '{'.format() }}"] {
            guard case .runtime? = try renderError(text) else { Issue.record("no runtime error for \(text)"); continue }
        }
    }

    @Test("random garbage templates never crash", arguments: 0..<4)
    func garbage(seed: UInt64) {
        var random = TestRandom(seed: 0xC4A7 + seed)
        let pieces = ["{{", "}}", "{%", "%}", "{#", "#}", "-", "+", " ", "\n", "if", "for", "in", "endif", "endfor",
                      "else", "elif", "set", "=", "x", "messages", "loop", ".", "[", "]", "(", ")", "|", "trim", "'",
                      "\"", "1", "0", ":", ",", "not", "and", "or", "is", "defined", "~", "*", "/", "%", "macro",
                      "endmacro", "namespace", "ns", "raise_exception", "é", "🙂", "{", "}", "range", "999999999"]
        for _ in 0..<400 {
            var text = ""
            for _ in 0..<Int.random(in: 1...24, using: &random) { text += pieces.randomElement(using: &random)! }
            guard let t = try? ChatTemplate(jinja: text) else { continue }
            _ = try? t.render(messages: [ChatMessage(role: "user", content: "hi")], addGenerationPrompt: true)
        }
    }

    @Test("mutated real templates never crash")
    func mutatedTemplates() {
        var random = TestRandom(seed: 0x5EED)
        let messages = [ChatMessage(role: "system", content: "s"), ChatMessage(role: "user", content: "u"),
                        ChatMessage(role: "assistant", content: "a")]
        let inserts: [Character] = ["{", "}", "%", "#", "-", "'", "\"", "(", ")", "[", "]", "|", ".", " ", "\n", "~", ":"]
        for (_, t) in ChatTemplateFixture.templates.sorted(by: { $0.key < $1.key }) {
            let original = Array(t.template)
            for _ in 0..<60 {
                var chars = original
                for _ in 0..<Int.random(in: 1...4, using: &random) where !chars.isEmpty {
                    let i = Int.random(in: 0..<chars.count, using: &random)
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: chars.remove(at: i)
                    case 1: chars.insert(inserts.randomElement(using: &random)!, at: i)
                    default: chars[i] = inserts.randomElement(using: &random)!
                    }
                }
                guard let template = try? ChatTemplate(jinja: String(chars)) else { continue }
                _ = try? template.render(messages: messages, addGenerationPrompt: true, extra: ["tools": [["type": "function"]]])
            }
        }
    }

    @Test("integer edges do not trap")
    func integerEdges() throws {
        let t = try ChatTemplate(jinja: "{{ range(9223372036854775806, 9223372036854775807, 5) | length }}|{{ [1, 2, 3][::9223372036854775807] }}|{{ [1, 2, 3][::-9223372036854775807] }}|{{ (-9223372036854775807 - 1) is divisibleby(-1) }}|{{ -9223372036854775807 is odd }}")
        #expect(try t.render(messages: [], addGenerationPrompt: false) == "1|[1]|[3]|True|True")
    }

    @Test("runaway templates stop with an error instead of hanging")
    func runaway() throws {
        guard case .runtime? = try renderError("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}")
        else { Issue.record("no error"); return }
        guard case .runtime? = try renderError("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}") else { Issue.record("no error"); return }
        guard case .runtime? = try renderError("{% set ns = namespace(s='ab') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}")
        else { Issue.record("no error"); return }
    }
}

@Suite("ChatTemplate: strftime_now")
struct ChatTemplateDateTests {
    @Test("strftime_now formats today's local date as Python's strftime does")
    func today() throws {
        let t = try ChatTemplate(jinja: "{{ strftime_now('%d %b %Y|%Y-%m-%d|%A %B %%') }}")
        let before = Date()
        let out = try t.render(messages: [], addGenerationPrompt: false)
        let after = Date()
        // Oracle: Foundation's formatter (C/POSIX names, as Python's default locale gives).
        func expected(_ d: Date) -> String {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = .current
            f.dateFormat = "dd MMM yyyy|yyyy-MM-dd|EEEE MMMM '%'"
            return f.string(from: d)
        }
        #expect(out == expected(before) || out == expected(after))
    }
}

@Suite("ChatTemplate: whitespace control")
struct ChatTemplateWhitespaceTests {
    func render(_ text: String) throws -> String {
        try ChatTemplate(jinja: text).render(messages: [], addGenerationPrompt: false)
    }

    // Expected strings: jinja2 3.1 with trim_blocks and lstrip_blocks, as transformers renders.
    @Test("trim_blocks, lstrip_blocks, - and + markers")
    func whitespace() throws {
        #expect(try render("a\n  {% if true %}\n  b\n  {% endif %}\nc") == "a\n  b\nc")
        #expect(try render("a  {%- if true -%}  b  {%- endif -%}  c") == "abc")
        #expect(try render("a\n  {%+ if true %}b{% endif %}") == "a\n  b")
        #expect(try render("a {{- ' b ' -}} c") == "a b c")
        #expect(try render("x\n  {# note #}\ny") == "x\ny")
        #expect(try render("{{ 'a' }}\n{{ 'b' }}") == "a\nb")
    }
}

@Suite("ChatTemplate: hostile templates (found by scripts/fuzz.sh)")
struct ChatTemplateHostileTests {
    /// The fuzzer's reproducer: a namespace set to hold itself, then printed: the cycle prints as `...`;
    /// the renderer once recursed until the stack overflowed (a crash of the whole server at template load).
    @Test("a namespace that holds itself prints its cycle as ..., not a stack overflow")
    func selfReferentialNamespace() throws {
        let t = try ChatTemplate(jinja: "{% set ns = namespace(n=0) %}{% set ns.n = ns %}{{ ns }}|{{ [ns] }}")
        #expect(try t.render(messages: [], addGenerationPrompt: false) == "<Namespace n=<Namespace ...>>|[<Namespace n=<Namespace ...>>]")
    }

    @Test("lists nested deeper than any chat needs print with an ellipsis")
    func deepNesting() throws {
        let t = try ChatTemplate(jinja: "{% set ns = namespace(x=[]) %}{% for i in range(300) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}")
        let out = try t.render(messages: [], addGenerationPrompt: false)
        #expect(out.hasPrefix(String(repeating: "[", count: 100)) && out.contains("..."))
    }
}
