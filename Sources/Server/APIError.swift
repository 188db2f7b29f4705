import Foundation
import Hummingbird
import NIOCore
import OpenAIAPI

/// An error as the API returns it: OpenAI's shape `{"error": {"message", "type", "param", "code"}}`
/// with the HTTP status that says whose fault it is. Bad input is always a 4xx, never a 500.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var message: String
    var type: String
    var param: String?
    var code: String?
    /// Seconds for the Retry-After header (429/503).
    var retryAfter: Int?

    static func invalidRequest(_ message: String, param: String?, code: String? = nil) -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: code)
    }

    static func modelNotFound(_ name: String, available: [String]) -> APIError {
        APIError(status: .notFound,
                 message: "The model '\(name)' does not exist. This server serves: \(available.joined(separator: ", ")). GET /v1/models lists them.",
                 type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    static func contextOverflow(_ message: String) -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: "messages",
                 code: "context_length_exceeded")
    }

    static func overloaded(_ message: String, retryAfter: Int, code: String = "queue_full") -> APIError {
        APIError(status: .tooManyRequests, message: message, type: "server_overloaded", param: nil,
                 code: code, retryAfter: retryAfter)
    }

    static func unavailable(_ message: String, retryAfter: Int) -> APIError {
        APIError(status: .serviceUnavailable, message: message, type: "server_unavailable", param: nil,
                 code: "unavailable", retryAfter: retryAfter)
    }

    static func notFound(path: String) -> APIError {
        APIError(status: .notFound, message: "No route for \(path). See GET /v1/models, POST /v1/chat/completions, POST /v1/completions.",
                 type: "invalid_request_error", param: nil, code: "not_found")
    }

    /// `configurable`: the limit is limits.max_body_bytes (the admin routes' own 64 KiB is not).
    static func bodyTooLarge(limit: Int, configurable: Bool = true) -> APIError {
        let size = limit >= 1 << 20 ? "\(limit >> 20) MiB" : "\(limit >> 10) KiB"
        let advice = configurable ? " Send less (images by URL or smaller), or raise limits.max_body_bytes." : ""
        return APIError(status: .contentTooLarge,
                        message: "The request body is larger than \(limit) bytes (\(size)), the most this route reads.\(advice)",
                        type: "invalid_request_error", param: nil, code: "request_too_large")
    }

    static func internalError(_ message: String) -> APIError {
        APIError(status: .internalServerError, message: message, type: "server_error", param: nil, code: nil)
    }

    var body: ErrorResponse { ErrorResponse(message: message, type: type, param: param, code: code) }

    func response() -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAIJSON.text(body))))
    }
}

/// Reads typed fields out of a request object, naming the field in every error.
struct FieldReader {
    let object: [(String, JSON)]

    init(_ json: JSON) throws(APIError) {
        guard case .object(let pairs) = json else {
            throw .invalidRequest("The request body must be a JSON object, not \(json.typeName).", param: nil)
        }
        object = pairs
    }

    func value(_ key: String) -> JSON? {
        guard let v = object.last(where: { $0.0 == key })?.1, v != .null else { return nil }
        return v
    }

    func string(_ key: String) throws(APIError) -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else { throw .invalidRequest("'\(key)' must be a string, not \(v.typeName).", param: key) }
        return s
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .bool(let b) = v else { throw .invalidRequest("'\(key)' must be true or false, not \(v.typeName).", param: key) }
        return b
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws(APIError) -> Double? {
        guard let v = value(key) else { return nil }
        guard case .number(let d) = v else { throw .invalidRequest("'\(key)' must be a number, not \(v.typeName).", param: key) }
        guard range.contains(d) else {
            throw .invalidRequest("'\(key)' must be between \(Self.show(range.lowerBound)) and \(Self.show(range.upperBound)) (got \(Self.show(d))).", param: key)
        }
        return d
    }

    func integer(_ key: String, in range: ClosedRange<Int>) throws(APIError) -> Int? {
        guard let v = value(key) else { return nil }
        guard case .number(let d) = v, d == d.rounded(), abs(d) < 1e15 else {
            throw .invalidRequest("'\(key)' must be an integer, not \(v == .null ? "null" : v.text).", param: key)
        }
        let i = Int(d)
        guard range.contains(i) else {
            throw .invalidRequest("'\(key)' must be between \(range.lowerBound) and \(range.upperBound) (got \(i)).", param: key)
        }
        return i
    }

    /// A string or a list of strings (OpenAI's `stop`).
    func strings(_ key: String, max: Int) throws(APIError) -> [String] {
        guard let v = value(key) else { return [] }
        switch v {
        case .string(let s): return [s]
        case .array(let items):
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw .invalidRequest("'\(key)' must be a string or a list of strings.", param: key) }
                out.append(s)
            }
            guard out.count <= max else { throw .invalidRequest("'\(key)' takes at most \(max) entries (got \(out.count)).", param: key) }
            return out
        default: throw .invalidRequest("'\(key)' must be a string or a list of strings, not \(v.typeName).", param: key)
        }
    }

    static func show(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d) }
}
