import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtocols
import OpenAIAPI

/// Sends a request as something that times it: over HTTP (RequestSender) or over gRPC (KServeStreamSender).
protocol RequestSending: Sendable {
    func send(_ body: Data) async -> RequestTiming
}

extension RequestSender: RequestSending {}

/// Where `--grpc` sends: the KServe/Triton inference protocol's ModelStreamInfer (the one gRPC protocol that takes
/// text, as the benchmark's prompts are), streamed, on this host and port.
public struct GRPCTarget: Sendable, Equatable {
    public let host: String
    public let port: Int

    /// "HOST:PORT".
    public init(_ text: String) throws(BenchError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1 ... 65535).contains(port),
              colon != text.startIndex else {
            throw .invalidOption("--grpc wants HOST:PORT (the server's server.grpc.port), not '\(text)'.")
        }
        host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        self.port = port
    }
}

/// Times one request sent over KServe's ModelStreamInfer with `stream: true`: each response with text is a chunk (its
/// receive time as an SSE chunk's), the final one carries the usage. The body is the HTTP request the benchmark
/// built (a completions body: prompt text, max_tokens, min_tokens, ignore_eos), so both protocols get the same work.
struct KServeStreamSender: RequestSending {
    let client: GRPCClient<HTTP2ClientTransport.Posix>
    let timeout: Double

    func send(_ body: Data) async -> RequestTiming {
        guard let request = Self.request(body) else { return RequestTiming(failure: .other) }
        let clock = ContinuousClock()
        let start = clock.now
        @Sendable func elapsed() -> Double {
            let d = clock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        var options = CallOptions.defaults
        options.timeout = .milliseconds(Int64(timeout * 1000))
        do {
            return try await Inference_GRPCInferenceService.Client(wrapping: client).modelStreamInfer(
                request: StreamingClientRequest(of: Inference_ModelInferRequest.self) { writer in try await writer.write(request) },
                options: options
            ) { response in
                var timing = RequestTiming()
                for try await message in response.messages {
                    let now = elapsed()
                    if !message.errorMessage.isEmpty {
                        timing.failure = .streamError
                        timing.failureDetail = message.errorMessage
                        return timing
                    }
                    let r = message.inferResponse
                    if let raw = r.rawOutputContents.first, raw.count > 4 {
                        timing.choiceChunkTimes.append(now)
                        timing.contentChunks += 1
                    }
                    timing.lastDataTime = now
                    if r.parameters["triton_final_response"]?.boolParam == true {
                        timing.usage = Usage(promptTokens: Int(r.parameters["prompt_tokens"]?.int64Param ?? 0),
                                             completionTokens: Int(r.parameters["completion_tokens"]?.int64Param ?? 0))
                        return timing
                    }
                }
                timing.failure = .connectionClosed
                return timing
            }
        } catch let error as RPCError {
            var timing = RequestTiming(failure: error.code == .unavailable ? .connect : error.code == .deadlineExceeded ? .timeout : .streamError)
            timing.failureDetail = "\(error.code): \(error.message)"
            return timing
        } catch {
            var timing = RequestTiming(failure: .other)
            timing.failureDetail = "\(error)"
            return timing
        }
    }

    /// The HTTP body's prompt and lengths as a ModelInferRequest (nil: a chat body, which this protocol cannot carry).
    static func request(_ body: Data) -> Inference_ModelInferRequest? {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let prompt = object["prompt"] as? String else {
            return nil
        }
        var r = Inference_ModelInferRequest()
        r.modelName = object["model"] as? String ?? ""
        var input = Inference_ModelInferRequest.InferInputTensor()
        input.name = "text_input"
        input.datatype = "BYTES"
        input.shape = [1]
        r.inputs = [input]
        r.rawInputContents = [KServeBytes.encode(prompt)]
        r.parameters["stream"] = Inference_InferParameter(bool: true)
        for key in ["max_tokens", "min_tokens"] {
            if let value = object[key] as? Int { r.parameters[key] = Inference_InferParameter(int64: Int64(value)) }
        }
        if let ignore = object["ignore_eos"] as? Bool { r.parameters["ignore_eos"] = Inference_InferParameter(bool: ignore) }
        return r
    }
}
