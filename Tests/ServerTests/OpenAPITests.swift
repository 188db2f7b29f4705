import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
@testable import Server
import Serving
import Testing

/// A small JSON Schema checker for the keywords the document uses ($ref, type, properties, required, items,
/// enum, const, anyOf, oneOf, allOf, minimum, maximum, additionalProperties): enough to hold real responses
/// against the document.
struct SchemaChecker {
    let document: JSON

    func resolve(_ schema: JSON) -> JSON {
        guard case .string(let ref)? = schema["$ref"], ref.hasPrefix("#/") else { return schema }
        var node: JSON? = document
        for part in ref.dropFirst(2).split(separator: "/") { node = node?[String(part)] }
        return resolve(node ?? .object([]))
    }

    /// Problems of `value` against `schema`, each with its JSON path; empty: it conforms.
    func problems(_ value: JSON, _ schema: JSON, at path: String = "$") -> [String] {
        let s = resolve(schema)
        var out: [String] = []
        let types: [String]? = switch s["type"] {
        case .string(let t)?: [t]
        case .array(let list)?: list.compactMap { if case .string(let t) = $0 { t } else { nil } }
        default: nil
        }
        if let types, !types.contains(where: { Self.isType(value, $0) }) {
            return ["\(path): \(value.typeName) is not \(types.joined(separator: "|"))"]
        }
        if case .array(let options)? = s["enum"], !options.contains(value) { out.append("\(path): \(value.text) not in enum") }
        if let c = s["const"], c != value { out.append("\(path): \(value.text) is not \(c.text)") }
        if case .number(let n) = value {
            if case .number(let min)? = s["minimum"], n < min { out.append("\(path): \(n) < minimum \(min)") }
            if case .number(let max)? = s["maximum"], n > max { out.append("\(path): \(n) > maximum \(max)") }
        }
        if case .object(let pairs) = value {
            if case .array(let required)? = s["required"] {
                for case .string(let key) in required where value[key] == nil { out.append("\(path): required '\(key)' missing") }
            }
            for (key, v) in pairs {
                if let p = s["properties"]?[key] {
                    out += problems(v, p, at: "\(path).\(key)")
                } else if let extra = s["additionalProperties"], case .object = extra {
                    out += problems(v, extra, at: "\(path).\(key)")
                } else if s["additionalProperties"] == .bool(false) {
                    out.append("\(path): '\(key)' not allowed")
                }
            }
        }
        if case .array(let items) = value, let itemSchema = s["items"] {
            for (i, v) in items.enumerated() { out += problems(v, itemSchema, at: "\(path)[\(i)]") }
        }
        for key in ["anyOf", "oneOf"] {
            if case .array(let options)? = s[key] {
                let passing = options.filter { problems(value, $0, at: path).isEmpty }.count
                if passing == 0 || (key == "oneOf" && passing > 1) { out.append("\(path): \(passing) of the \(key) options match \(value.text.prefix(80))") }
            }
        }
        if case .array(let all)? = s["allOf"] { for option in all { out += problems(value, option, at: path) } }
        return out
    }

    static func isType(_ v: JSON, _ type: String) -> Bool {
        switch (type, v) {
        case ("null", .null), ("boolean", .bool), ("number", .number), ("string", .string), ("array", .array), ("object", .object): return true
        case ("integer", .number(let n)): return n == n.rounded()
        default: return false
        }
    }
}

@Suite("The OpenAPI document: every route, and real responses conform", .serialized, .timeLimit(.minutes(5)))
struct OpenAPITests {
    static let document: JSON = (try? JSON.parse(PackageResources.openapi_json)) ?? .null

    @Test("it is OpenAPI 3.1, and its operations are exactly the server's routes")
    func routesMatch() throws {
        #expect(Self.document["openapi"] == .string("3.1.0"))
        let h = try ServerTests.harness(start: false)
        defer { h.model.backend.shutdown() }
        let routes = ServerRoutes(registry: ModelRegistry([h.model]), metrics: [:], prometheus: h.registry, requestTimeout: nil)
        let served = Set(routes.router().routes.map { "\($0.method.rawValue) \(String(describing: $0.path).hasPrefix("/") ? "" : "/")\($0.path)" })
        guard case .object(let paths)? = Self.document["paths"] else { Issue.record("no paths"); return }
        let methods = ["get", "post", "put", "delete", "patch", "head"]
        let documented = Set(paths.flatMap { path, item -> [String] in
            guard case .object(let ops) = item else { return [] }
            return ops.map(\.0).filter(methods.contains).map { "\($0.uppercased()) \(path)" }
        })
        #expect(served.subtracting(documented).isEmpty, "routes not in the document: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
        // Every operation documents its errors in OpenAI's shape.
        for (path, item) in paths {
            guard case .object(let ops) = item else { continue }
            for (method, op) in ops where methods.contains(method) {
                guard case .object(let responses)? = op["responses"] else { Issue.record("\(method) \(path): no responses"); continue }
                #expect(responses.contains { $0.0.hasPrefix("2") }, "\(method) \(path): no success response")
                if method == "post" && (path.hasPrefix("/v1/") || path == "/generate" || path == "/tokenize" || path == "/detokenize") {
                    #expect(responses.contains { $0.0 == "400" }, "\(method) \(path): no 400")
                }
            }
        }
    }

    /// The schema of `status`'s JSON body for an operation.
    static func responseSchema(_ method: String, _ path: String, _ status: Int) -> JSON? {
        let checker = SchemaChecker(document: document)
        guard let responses = document["paths"]?[path]?[method]?["responses"],
              let response = responses[String(status)] ?? responses["default"] else { return nil }
        return checker.resolve(response)["content"]?["application/json"]?["schema"] ?? .object([])
    }

    @Test("real answers of the default model (successes and errors) match their documented schemas")
    func responsesConform() async throws {
        let h = try ServerTests.harness()
        defer { h.model.backend.shutdown() }
        let checker = SchemaChecker(document: Self.document)
        let cases: [(HTTPRequest.Method, String, String, String?)] = [
            (.get, "/health", "/health", nil), (.get, "/v1/models", "/v1/models", nil), (.get, "/openapi.json", "/openapi.json", nil),
            (.post, "/v1/chat/completions", "/v1/chat/completions", #"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":3,"logprobs":true,"top_logprobs":2}"#),
            (.post, "/v1/chat/completions", "/v1/chat/completions", #"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"n":2,"temperature":0.7,"seed":1}"#),
            (.post, "/v1/completions", "/v1/completions", #"{"prompt":"The sky is","max_tokens":3,"logprobs":2,"echo":true}"#),
            (.post, "/v1/completions", "/v1/completions", #"{"prompt":[[1,2,3],[4,5]],"max_tokens":2}"#),
            (.post, "/generate", "/generate", #"{"prompt":"Hello","max_tokens":3}"#),
            (.post, "/tokenize", "/tokenize", #"{"prompt":"Hello world"}"#),
            (.post, "/tokenize", "/tokenize", #"{"messages":[{"role":"user","content":"Hi"}]}"#),
            (.post, "/detokenize", "/detokenize", #"{"tokens":[19556,905]}"#),
            (.post, "/v1/chat/completions", "/v1/chat/completions", #"{"messages":[]}"#),
            (.post, "/v1/chat/completions", "/v1/chat/completions", #"{"model":"nope","messages":[{"role":"user","content":"Hi"}]}"#),
            (.post, "/v1/completions", "/v1/completions", #"{"prompt":"x","max_tokens":"ten"}"#),
            (.post, "/v1/completions", "/v1/completions", #"{"prompt":"x","#),
            (.post, "/detokenize", "/detokenize", #"{"tokens":[-1]}"#),
            (.get, "/admin/models", "/admin/models", nil),
        ]
        try await h.app.test(.router) { client in
            for (method, route, uri, body) in cases {
                let r = try await client.execute(uri: uri, method: method, headers: [.contentType: "application/json"],
                                                  body: body.map { ByteBuffer(string: $0) })
                let status = Int(r.status.code)
                let schema = Self.responseSchema(method.rawValue.lowercased(), route, status)
                #expect(schema != nil, "\(method) \(route): status \(status) is not documented")
                guard let schema, let value = try? JSON.parse(Array(r.body.readableBytesView)) else { continue }
                let problems = checker.problems(value, schema)
                #expect(problems.isEmpty, "\(method) \(route) \(status): \(problems.prefix(5))")
            }
        }
    }
}
