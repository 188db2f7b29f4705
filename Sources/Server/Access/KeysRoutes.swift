import Foundation
import Hummingbird
import Logging
import NIOCore

extension ServerRoutes {
    /// `GET /admin/keys`, `POST /admin/keys`, `POST /admin/keys/{id}/revoke`, `POST /admin/keys/{id}/rotate`:
    /// the key file (auth.keys_file) through the admin API. A new key's token is in the answer once.
    func addKeyRoutes(to admin: RouterGroup<ServerContext>) {
        let store = access.store
        admin.get("keys") { _, _ in
            let store = try Self.requireStore(store)
            let file = try Self.keyOperation { () throws(KeyStoreError) in try store.current() }
            return Self.json(.object([("object", .string("list")), ("data", .array(file.keys.map(Self.keyJSON)))]))
        }
        admin.post("keys") { request, context in
            let store = try Self.requireStore(store)
            let r = try FieldReader(try await Self.body(request, context: context, limit: 1 << 16))
            guard let name = try r.string("name") else { throw APIError.invalidRequest("'name' is required.", param: "name") }
            let roleName = try r.string("role") ?? "user"
            guard let role = Role(rawValue: roleName) else {
                throw APIError.invalidRequest("'role' must be admin, user or viewer.", param: "role")
            }
            let models = try r.strings("models", max: 100)
            let expiresIn = try r.integer("expires_in", in: 1 ... 100 * 365 * 86400)
            let budgets = Budgets(requestsPerMinute: try r.integer("requests_per_minute", in: 1 ... 10_000_000),
                                  tokensPerMinute: try r.integer("tokens_per_minute", in: 1 ... 1_000_000_000),
                                  maxConcurrent: try r.integer("max_concurrent", in: 1 ... 100_000))
            let now = Int(Date().timeIntervalSince1970)
            let issued = try Self.keyOperation { () throws(KeyStoreError) in
                try store.create(name: name, role: role, models: models, expires: expiresIn.map { now + $0 }, budgets: budgets, now: now)
            }
            context.logger.notice("API key created by an admin", metadata: ["key_id": .string(issued.record.id), "role": .string(role.rawValue)])
            return Self.json(Self.issuedJSON(issued), status: .created)
        }
        admin.post("keys/{id}/revoke") { _, context in
            let store = try Self.requireStore(store)
            let id = context.parameters.get("id") ?? ""
            let record = try Self.keyOperation { () throws(KeyStoreError) in try store.revoke(id: id) }
            context.logger.notice("API key revoked by an admin", metadata: ["key_id": .string(id)])
            return Self.json(Self.keyJSON(record))
        }
        admin.post("keys/{id}/rotate") { request, context in
            let store = try Self.requireStore(store)
            let id = context.parameters.get("id") ?? ""
            let body = try await Self.body(request, context: context, limit: 1 << 16, emptyIsObject: true)
            let grace = try FieldReader(body).integer("grace_seconds", in: 0 ... 30 * 86400) ?? 86400
            let issued = try Self.keyOperation { () throws(KeyStoreError) in try store.rotate(id: id, grace: grace) }
            context.logger.notice("API key rotated by an admin", metadata: ["key_id": .string(id), "grace_seconds": .stringConvertible(grace)])
            return Self.json(Self.issuedJSON(issued))
        }
    }

    static func requireStore(_ store: KeyStore?) throws(APIError) -> KeyStore {
        guard let store else {
            throw APIError(status: .notFound, message: "No key file: set auth.keys_file to manage keys.", type: "invalid_request_error",
                           param: nil, code: "not_found")
        }
        return store
    }

    static func keyOperation<T>(_ body: () throws(KeyStoreError) -> T) throws(APIError) -> T {
        do {
            return try body()
        } catch {
            switch error {
            case .noSuchKey: throw APIError(status: .notFound, message: error.description, type: "invalid_request_error", param: "id", code: "key_not_found")
            case .invalidArgument: throw APIError.invalidRequest(error.description, param: nil)
            case .unreadable, .unwritable: throw APIError.internalError(error.description)
            }
        }
    }

    static func keyJSON(_ record: APIKeyRecord) -> JSON {
        var pairs: [(String, JSON)] = [("id", .string(record.id)), ("name", .string(record.name)), ("role", .string(record.role.rawValue)),
                                       ("models", .array(record.models.map { .string($0) })), ("created", .number(Double(record.created)))]
        pairs.append(("expires", record.expires.map { .number(Double($0)) } ?? .null))
        pairs.append(("revoked", record.revoked.map { .number(Double($0)) } ?? .null))
        var budgets: [(String, JSON)] = []
        if let v = record.budgets.requestsPerMinute { budgets.append(("requests_per_minute", .number(Double(v)))) }
        if let v = record.budgets.tokensPerMinute { budgets.append(("tokens_per_minute", .number(Double(v)))) }
        if let v = record.budgets.maxConcurrent { budgets.append(("max_concurrent", .number(Double(v)))) }
        pairs.append(("budgets", .object(budgets)))
        return .object(pairs)
    }

    static func issuedJSON(_ issued: IssuedKey) -> JSON {
        guard case .object(var pairs) = keyJSON(issued.record) else { return .null }
        pairs.insert(("key", .string(issued.token)), at: 1)
        return .object(pairs)
    }
}
