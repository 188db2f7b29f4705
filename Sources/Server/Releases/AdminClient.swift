import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The admin API from the command line (`autoglm rollout ...`): one request, its status and body.
public struct AdminClient: Sendable {
    public let baseURL: String
    public let key: String?

    public init(baseURL: String, key: String?) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.key = key
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Sends `body` (JSON) to `path`; a connection failure says which server could not be reached.
    public func send(_ method: String, _ path: String, body: String? = nil, timeoutSeconds: Int64 = 900) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = HTTPMethod(rawValue: method)
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let response = try await client.execute(request, timeout: .seconds(timeoutSeconds))
            let text = String(buffer: try await response.body.collect(upTo: 16 << 20))
            try? await client.shutdown()
            return (Int(response.status.code), text)
        } catch {
            try? await client.shutdown()
            throw Failure(description: "cannot reach \(baseURL) (\(error)). Is `autoglm serve` running there? Pass --url.")
        }
    }
}
