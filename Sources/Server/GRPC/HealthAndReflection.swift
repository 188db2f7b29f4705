import Foundation
import GRPCCore
import GRPCProtocols
import SwiftProtobuf

/// `grpc.health.v1.Health`: SERVING while the server takes requests (as /ready), NOT_SERVING while a pinned model
/// loads or the server drains. The service names it knows: "" (the server) and each served gRPC service.
struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
    let endpoint: GRPCEndpoint
    let services: Set<String>

    private func status(_ service: String) throws -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
        guard service.isEmpty || services.contains(service) else {
            throw RPCError(code: .notFound, message: "Unknown service '\(service)'; this server has: \(services.sorted().joined(separator: ", ")).")
        }
        return endpoint.registry.isReady ? .serving : .notServing
    }

    func check(request: Grpc_Health_V1_HealthCheckRequest, context: GRPCCore.ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        var out = Grpc_Health_V1_HealthCheckResponse()
        out.status = try status(request.service)
        return out
    }

    /// The status now, then each change (checked every half second) until the client ends the call, or the server
    /// drains (NOT_SERVING is the last message: an open watch would hold the shutdown).
    func watch(request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
               context: GRPCCore.ServerContext) async throws {
        var last: Grpc_Health_V1_HealthCheckResponse.ServingStatus?
        while !Task.isCancelled {
            let now: Grpc_Health_V1_HealthCheckResponse.ServingStatus
            do { now = try status(request.service) } catch { now = .serviceUnknown }
            if now != last {
                var out = Grpc_Health_V1_HealthCheckResponse()
                out.status = now
                try await response.write(out)
                last = now
            }
            if !endpoint.registry.locals.isAcceptingRequests { return }
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}

/// What server reflection answers, from the descriptors of the served protos (ServedDescriptors, generated with
/// the code): the services, the file defining a symbol, a file by name, each with the files it imports.
struct ReflectionIndex: Sendable {
    enum Answer {
        case files([Data])
        case services([String])
        case extensionNumbers(type: String, numbers: [Int32])
        case error(RPCError.Code, String)
    }

    let services: [String]
    private let files: [String: Google_Protobuf_FileDescriptorProto]
    private let encoded: [String: Data]
    private let symbols: [String: String]

    init(services: [String]) {
        self.services = services
        var files: [String: Google_Protobuf_FileDescriptorProto] = [:]
        var encoded: [String: Data] = [:]
        var symbols: [String: String] = [:]
        let data = Data(base64Encoded: ServedDescriptors.fileDescriptorSetBase64) ?? Data()
        let set = (try? Google_Protobuf_FileDescriptorSet(serializedBytes: data)) ?? Google_Protobuf_FileDescriptorSet()
        for file in set.file {
            files[file.name] = file
            encoded[file.name] = try? file.serializedData()
            let prefix = file.package.isEmpty ? "" : file.package + "."
            func addMessage(_ m: Google_Protobuf_DescriptorProto, _ scope: String) {
                let name = scope + m.name
                symbols[name] = file.name
                for nested in m.nestedType { addMessage(nested, name + ".") }
                for e in m.enumType { symbols[name + "." + e.name] = file.name }
            }
            for m in file.messageType { addMessage(m, prefix) }
            for e in file.enumType { symbols[prefix + e.name] = file.name }
            for s in file.service {
                symbols[prefix + s.name] = file.name
                for m in s.method { symbols[prefix + s.name + "." + m.name] = file.name }
            }
        }
        self.files = files
        self.encoded = encoded
        self.symbols = symbols
    }

    /// A file and every file it imports, itself first.
    private func withDependencies(_ name: String) -> [Data] {
        var seen: Set<String> = []
        var order: [String] = []
        func visit(_ n: String) {
            guard seen.insert(n).inserted, let file = files[n] else { return }
            order.append(n)
            for dependency in file.dependency { visit(dependency) }
        }
        visit(name)
        return order.compactMap { encoded[$0] }
    }

    func fileByName(_ name: String) -> Answer {
        files[name] == nil ? .error(.notFound, "No file '\(name)'.") : .files(withDependencies(name))
    }

    func fileContaining(symbol: String) -> Answer {
        let trimmed = symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol
        guard let file = symbols[trimmed] else { return .error(.notFound, "No symbol '\(symbol)'.") }
        return .files(withDependencies(file))
    }

    func extensionNumbers(of type: String) -> Answer {
        // proto3 messages declare no extension ranges.
        symbols[type] == nil ? .error(.notFound, "No type '\(type)'.") : .extensionNumbers(type: type, numbers: [])
    }
}

/// `grpc.reflection.v1.ServerReflection` (grpcurl, Postman).
struct ReflectionV1Service: Grpc_Reflection_V1_ServerReflection.SimpleServiceProtocol {
    let index: ReflectionIndex

    func serverReflectionInfo(request: RPCAsyncSequence<Grpc_Reflection_V1_ServerReflectionRequest, any Error>,
                              response: RPCWriter<Grpc_Reflection_V1_ServerReflectionResponse>, context: GRPCCore.ServerContext) async throws {
        for try await message in request { try await response.write(Self.answer(message, index: index)) }
    }

    static func answer(_ message: Grpc_Reflection_V1_ServerReflectionRequest, index: ReflectionIndex) -> Grpc_Reflection_V1_ServerReflectionResponse {
        let answer: ReflectionIndex.Answer
        switch message.messageRequest {
        case .fileByFilename(let name)?: answer = index.fileByName(name)
        case .fileContainingSymbol(let symbol)?: answer = index.fileContaining(symbol: symbol)
        case .fileContainingExtension?: answer = .error(.notFound, "This server's protos declare no extensions.")
        case .allExtensionNumbersOfType(let type)?: answer = index.extensionNumbers(of: type)
        case .listServices?: answer = .services(index.services)
        case nil: answer = .error(.invalidArgument, "The request names nothing to look up.")
        }
        var out = Grpc_Reflection_V1_ServerReflectionResponse()
        out.validHost = message.host
        out.originalRequest = message
        switch answer {
        case .files(let files): out.fileDescriptorResponse.fileDescriptorProto = files
        case .services(let names): out.listServicesResponse.service = names.map { n in .with { $0.name = n } }
        case .extensionNumbers(let type, let numbers):
            out.allExtensionNumbersResponse.baseTypeName = type
            out.allExtensionNumbersResponse.extensionNumber = numbers
        case .error(let code, let text):
            out.errorResponse.errorCode = Int32(code.rawValue)
            out.errorResponse.errorMessage = text
        }
        return out
    }
}

/// `grpc.reflection.v1alpha.ServerReflection` (grpcio-reflection's client, older grpcurl). Its messages are v1's
/// byte for byte (only the package differs), so each request is read as v1's and answered by it.
struct ReflectionV1AlphaService: Grpc_Reflection_V1alpha_ServerReflection.SimpleServiceProtocol {
    let index: ReflectionIndex

    func serverReflectionInfo(request: RPCAsyncSequence<Grpc_Reflection_V1alpha_ServerReflectionRequest, any Error>,
                              response: RPCWriter<Grpc_Reflection_V1alpha_ServerReflectionResponse>, context: GRPCCore.ServerContext) async throws {
        for try await message in request {
            let v1 = try Grpc_Reflection_V1_ServerReflectionRequest(serializedBytes: try message.serializedBytes() as [UInt8])
            let answer: [UInt8] = try ReflectionV1Service.answer(v1, index: index).serializedBytes()
            try await response.write(try Grpc_Reflection_V1alpha_ServerReflectionResponse(serializedBytes: answer))
        }
    }
}
