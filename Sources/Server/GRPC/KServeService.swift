import Foundation
import GRPCCore
import GRPCProtocols
import InferenceCore
import Serving

typealias KServe = Inference_GRPCInferenceService

/// The KServe Open Inference Protocol (`inference.GRPCInferenceService`) with Triton's `ModelStreamInfer`, as
/// Triton's LLM backends (vLLM, TensorRT-LLM) shape it: a `text_input` BYTES tensor in, `text_output` out.
///
/// Sampling fields come as request parameters (`max_tokens`, `temperature`, `top_p`, `top_k`, `min_p`, `seed`,
/// `stop`, `presence_penalty`, `frequency_penalty`, `repetition_penalty`, `ignore_eos`, `min_tokens`, `stream`,
/// `exclude_input_in_output`), as scalar input tensors of those names (TensorRT-LLM's style), or as a JSON
/// `sampling_parameters` BYTES input (the vLLM backend's). They become the request the HTTP API reads, so they are
/// checked the same. The output is the generated text (the prompt too with `exclude_input_in_output: false`);
/// each response carries `finish_reason`, `prompt_tokens` and `completion_tokens` parameters once known.
/// Streamed (`stream: true` over ModelStreamInfer): one response per token with the new text, the last marked
/// `triton_final_response`.
struct KServeService: KServe.SimpleServiceProtocol {
    let endpoint: GRPCEndpoint

    // MARK: health and metadata

    func serverLive(request: Inference_ServerLiveRequest, context: GRPCCore.ServerContext) async throws -> Inference_ServerLiveResponse {
        var out = Inference_ServerLiveResponse()
        out.live = true
        return out
    }

    func serverReady(request: Inference_ServerReadyRequest, context: GRPCCore.ServerContext) async throws -> Inference_ServerReadyResponse {
        var out = Inference_ServerReadyResponse()
        out.ready = endpoint.registry.isReady
        return out
    }

    func modelReady(request: Inference_ModelReadyRequest, context: GRPCCore.ServerContext) async throws -> Inference_ModelReadyResponse {
        let name = try endpoint.registry.servedName(request.name)
        try checkVersion(request.version, of: name)
        var out = Inference_ModelReadyResponse()
        out.ready = endpoint.registry.locals.isAcceptingRequests && endpoint.registry.locals.loaded.contains { $0.name == name }
        return out
    }

    func serverMetadata(request: Inference_ServerMetadataRequest, context: GRPCCore.ServerContext) async throws -> Inference_ServerMetadataResponse {
        var out = Inference_ServerMetadataResponse()
        out.name = "autoglm"
        out.version = "2"
        out.extensions = ["parameters", "binary_tensor_data", "model_stream_infer"]
        return out
    }

    func modelMetadata(request: Inference_ModelMetadataRequest, context: GRPCCore.ServerContext) async throws -> Inference_ModelMetadataResponse {
        let name = try endpoint.registry.servedName(request.name)
        try checkVersion(request.version, of: name)
        var out = Inference_ModelMetadataResponse()
        out.name = name
        out.versions = endpoint.registry.releases.versions(of: name).map(\.id)
        out.platform = "autoglm"
        func tensor(_ name: String, _ type: String, _ shape: [Int64]) -> Inference_ModelMetadataResponse.TensorMetadata {
            var t = Inference_ModelMetadataResponse.TensorMetadata()
            t.name = name
            t.datatype = type
            t.shape = shape
            return t
        }
        out.inputs = [tensor("text_input", "BYTES", [1]), tensor("stream", "BOOL", [1]), tensor("sampling_parameters", "BYTES", [1])]
        out.outputs = [tensor("text_output", "BYTES", [-1])]
        return out
    }

    private func checkVersion(_ version: String, of name: String) throws {
        guard !version.isEmpty else { return }
        let known = endpoint.registry.releases.versions(of: name).map(\.id)
        guard known.contains(version) else {
            throw RPCError(code: .notFound, message: "Model '\(name)' has no version '\(version)'; it has: \(known.joined(separator: ", ")).")
        }
    }

    // MARK: inference

    func modelInfer(request: Inference_ModelInferRequest, context: GRPCCore.ServerContext) async throws -> Inference_ModelInferResponse {
        let input = try KServeInput(request)
        return try await endpoint.withLocalModel(request.modelName.isEmpty ? nil : request.modelName,
                                                 version: request.modelVersion.isEmpty ? nil : request.modelVersion) { model, version in
            let job = try endpoint.api.completionJob(input.body, model: model)
            let choices = try endpoint.submit(job)
            var text = input.echo ? job.prompts[0].text : ""
            var outcome: GenerationOutcome?
            try await withTaskCancellationHandler {
                for await event in choices[0].events {
                    switch event {
                    case .token(let t): text += t.text
                    case .finished(let o):
                        text += o.trailingText
                        outcome = o
                    case .failed(let error): throw CompletionsAPI.apiError(error)
                    }
                }
            } onCancel: {
                model.backend.cancel(choices[0].requestID)
            }
            endpoint.settle(prompt: outcome?.promptTokens ?? 0, completion: outcome?.completionTokens ?? 0)
            return Self.response(to: request, model: model.name, version: version.id, text: text, outcome: outcome, final: nil)
        }
    }

    func modelStreamInfer(request: RPCAsyncSequence<Inference_ModelInferRequest, any Error>,
                          response: RPCWriter<Inference_ModelStreamInferResponse>, context: GRPCCore.ServerContext) async throws {
        // Requests are served concurrently as they arrive; their responses go out through one writer, in the
        // order they are made. When the server drains, the stream takes no more requests and ends once those in
        // flight are answered (an idle stream would otherwise hold the shutdown for server.drain).
        let (messages, continuation) = AsyncStream<Inference_ModelStreamInferResponse>.makeStream()
        let (incoming, inbox) = AsyncStream<Inference_ModelInferRequest>.makeStream()
        let call = GRPCCall.current ?? GRPCCall()
        let registry = endpoint.registry
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in request { inbox.yield(message) }
                } catch {
                    // The client's side failed: its requests end with the call.
                }
                inbox.finish()
            }
            group.addTask {
                while !Task.isCancelled, registry.locals.isAcceptingRequests {
                    try? await Task.sleep(for: .milliseconds(250))
                }
                inbox.finish()
            }
            group.addTask {
                await withTaskGroup(of: Void.self) { requests in
                    for await message in incoming {
                        requests.addTask { await serveStreamed(message, call: call, into: continuation) }
                    }
                }
                continuation.finish()
            }
            do {
                for await message in messages { try await response.write(message) }
            } catch {
                group.cancelAll()
                throw error
            }
            // Every request is answered: stop reading the client and watching the drain.
            group.cancelAll()
        }
    }

    /// One request of a stream: its responses, or one error response (Triton's in-stream errors: the stream goes on).
    private func serveStreamed(_ request: Inference_ModelInferRequest, call: GRPCCall,
                               into out: AsyncStream<Inference_ModelStreamInferResponse>.Continuation) async {
        func fail(_ error: any Error) {
            var message = Inference_ModelStreamInferResponse()
            let rpcError = GRPCAccessInterceptor.rpcError(error)
            message.errorMessage = "[\(GRPCMetrics.name(rpcError.code))] \(rpcError.message)"
            message.inferResponse.id = request.id
            message.inferResponse.modelName = request.modelName
            out.yield(message)
        }
        do {
            let admission = try endpoint.admit(call)
            let input = try KServeInput(request)
            try await endpoint.withLocalModel(request.modelName.isEmpty ? nil : request.modelName,
                                              version: request.modelVersion.isEmpty ? nil : request.modelVersion) { model, version in
                let job = try endpoint.api.completionJob(input.body, model: model)
                let choices = try endpoint.submit(job, budget: admission.budget)
                var text = input.echo ? job.prompts[0].text : ""
                try await withTaskCancellationHandler {
                    for await event in choices[0].events {
                        switch event {
                        case .token(let t):
                            guard input.stream else { text += t.text; continue }
                            // Text held back (part of a character, a possible stop string) comes with a later token.
                            guard !t.text.isEmpty || !text.isEmpty else { continue }
                            var message = Inference_ModelStreamInferResponse()
                            message.inferResponse = Self.response(to: request, model: model.name, version: version.id,
                                                                  text: text + t.text, outcome: nil, final: false)
                            text = ""
                            out.yield(message)
                        case .finished(let o):
                            text += o.trailingText
                            endpoint.settle(prompt: o.promptTokens, completion: o.completionTokens, budget: admission.budget)
                            var message = Inference_ModelStreamInferResponse()
                            message.inferResponse = Self.response(to: request, model: model.name, version: version.id, text: text,
                                                                  outcome: o, final: true)
                            out.yield(message)
                        case .failed(let error):
                            throw CompletionsAPI.apiError(error)
                        }
                    }
                } onCancel: {
                    model.backend.cancel(choices[0].requestID)
                }
                withExtendedLifetime(admission) {}
            }
        } catch {
            fail(error)
        }
    }

    /// A response with the `text_output` tensor (BYTES, raw: a 4-byte little-endian length, then the UTF-8 text).
    static func response(to request: Inference_ModelInferRequest, model: String, version: String, text: String,
                         outcome: GenerationOutcome?, final: Bool?) -> Inference_ModelInferResponse {
        var out = Inference_ModelInferResponse()
        out.modelName = model
        out.modelVersion = version
        out.id = request.id
        var tensor = Inference_ModelInferResponse.InferOutputTensor()
        tensor.name = "text_output"
        tensor.datatype = "BYTES"
        tensor.shape = [1]
        out.outputs = [tensor]
        out.rawOutputContents = [KServeBytes.encode(text)]
        if let final { out.parameters["triton_final_response"] = Inference_InferParameter(bool: final) }
        if let outcome {
            out.parameters["finish_reason"] = Inference_InferParameter(string: CompletionsAPI.finishReason(outcome.finishReason))
            out.parameters["prompt_tokens"] = Inference_InferParameter(int64: Int64(outcome.promptTokens))
            out.parameters["completion_tokens"] = Inference_InferParameter(int64: Int64(outcome.completionTokens))
        }
        return out
    }
}

/// A ModelInferRequest read: the prompt, whether to stream, and the body of an HTTP completion with its fields.
struct KServeInput {
    var body: JSON
    var stream = false
    /// exclude_input_in_output: false: the output starts with the prompt (the vLLM backend's default is to include
    /// it; here the output is the generated text unless asked).
    var echo = false

    /// Sampling fields taken from parameters and scalar input tensors, with their JSON kind.
    static let numberFields: Set<String> = ["max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty",
                                            "frequency_penalty", "repetition_penalty", "min_tokens"]
    static let boolFields: Set<String> = ["ignore_eos", "stream", "exclude_input_in_output"]
    /// Parameters Triton's clients set for the server itself (sequence batching, priority, timeouts, the empty
    /// final response): accepted and not used.
    static let reserved: Set<String> = ["sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "binary_data_output",
                                        "triton_enable_empty_final_response", "headers"]

    init(_ r: Inference_ModelInferRequest) throws {
        if !r.rawInputContents.isEmpty && r.rawInputContents.count != r.inputs.count {
            throw RPCError.invalidArgument("raw_input_contents has \(r.rawInputContents.count) entries for \(r.inputs.count) inputs: give one per input.",
                                           field: "raw_input_contents")
        }
        var fields: [String: JSON] = [:]
        var prompt: String?
        for (i, input) in r.inputs.enumerated() {
            let raw = r.rawInputContents.isEmpty ? nil : r.rawInputContents[i]
            let tensor = TensorReader(input: input, raw: raw)
            switch input.name {
            case "text_input", "prompt":
                let items = try tensor.strings()
                guard items.count == 1 else {
                    throw RPCError.invalidArgument("'\(input.name)' must hold one string (batch 1); it holds \(items.count).", field: "inputs.\(input.name)")
                }
                prompt = items[0]
            case "sampling_parameters":
                let items = try tensor.strings()
                guard items.count == 1, let parsed = try? JSON.parse(Array(items[0].utf8)), case .object(let pairs) = parsed else {
                    throw RPCError.invalidArgument("'sampling_parameters' must hold one JSON object.", field: "inputs.sampling_parameters")
                }
                for (key, value) in pairs { fields[key] = try Self.check(key, value, field: "inputs.sampling_parameters.\(key)") }
            case "stop", "stop_words", "bad_words":
                guard input.name != "bad_words" else {
                    throw RPCError.invalidArgument("'bad_words' is not supported.", field: "inputs.bad_words")
                }
                fields["stop"] = .array(try tensor.strings().map { .string($0) })
            default:
                guard Self.numberFields.contains(input.name) || Self.boolFields.contains(input.name) else {
                    throw RPCError.invalidArgument(
                        "Input '\(input.name)' is not one this model takes: text_input (BYTES), sampling_parameters (BYTES, JSON), stop (BYTES), or a scalar sampling field (\((Self.numberFields.union(Self.boolFields)).sorted().joined(separator: ", "))).",
                        field: "inputs.\(input.name)")
                }
                fields[input.name] = try Self.check(input.name, try tensor.scalar(), field: "inputs.\(input.name)")
            }
        }
        for (key, parameter) in r.parameters.sorted(by: { $0.key < $1.key }) {
            if Self.reserved.contains(key) || key.hasPrefix("triton_") { continue }
            let value: JSON
            switch parameter.parameterChoice {
            case .boolParam(let b)?: value = .bool(b)
            case .int64Param(let v)?: value = .number(Double(v))
            case .uint64Param(let v)?: value = .number(Double(v))
            case .doubleParam(let v)?: value = .number(v)
            case .stringParam(let s)?: value = .string(s)
            case nil: continue
            }
            fields[key] = try Self.check(key, value, field: "parameters.\(key)")
        }
        for output in r.outputs where output.name != "text_output" {
            throw RPCError.invalidArgument("Output '\(output.name)' does not exist: this model returns text_output.", field: "outputs.\(output.name)")
        }
        guard let prompt else {
            throw RPCError.invalidArgument("The input 'text_input' (BYTES, shape [1]) is required.", field: "inputs.text_input")
        }
        if case .bool(let s)? = fields.removeValue(forKey: "stream") { stream = s }
        if case .bool(let exclude)? = fields.removeValue(forKey: "exclude_input_in_output") { echo = !exclude }
        body = .object([("prompt", .string(prompt))] + fields.sorted { $0.key < $1.key })
    }

    /// A sampling field by name, as JSON of the kind the HTTP API reads (a string `stop` may be one stop or a JSON list).
    static func check(_ key: String, _ value: JSON, field: String) throws -> JSON {
        if numberFields.contains(key) {
            if case .number = value { return value }
            if case .string(let s) = value, let d = Double(s) { return .number(d) }
            throw RPCError.invalidArgument("'\(key)' must be a number.", field: field)
        }
        if boolFields.contains(key) {
            if case .bool = value { return value }
            if case .number(let d) = value, d == 0 || d == 1 { return .bool(d == 1) }
            throw RPCError.invalidArgument("'\(key)' must be a boolean.", field: field)
        }
        if key == "stop" {
            switch value {
            case .array: return value
            case .string(let s):
                if s.hasPrefix("["), let parsed = try? JSON.parse(Array(s.utf8)), case .array = parsed { return parsed }
                return .array([.string(s)])
            default: throw RPCError.invalidArgument("'stop' must be a string or a list of strings.", field: field)
            }
        }
        throw RPCError.invalidArgument(
            "'\(key)' is not a parameter this server reads; it reads \((numberFields.union(boolFields).union(["stop"])).sorted().joined(separator: ", ")).",
            field: field)
    }
}

/// Reads a tensor's elements from `contents` or its `raw_input_contents` entry (little-endian; BYTES elements each
/// a 4-byte length and the bytes).
struct TensorReader {
    let input: Inference_ModelInferRequest.InferInputTensor
    let raw: Data?

    var field: String { "inputs.\(input.name)" }

    func strings() throws -> [String] {
        guard input.datatype == "BYTES" else {
            throw RPCError.invalidArgument("'\(input.name)' must be a BYTES tensor, not \(input.datatype).", field: field)
        }
        var items: [[UInt8]] = []
        if let raw {
            let bytes = [UInt8](raw)
            var i = 0
            while i < bytes.count {
                guard i + 4 <= bytes.count else {
                    throw RPCError.invalidArgument("'\(input.name)': raw BYTES data ends inside an element's length.", field: field)
                }
                let n = Int(bytes[i]) | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 24
                i += 4
                guard n <= bytes.count - i else {
                    throw RPCError.invalidArgument("'\(input.name)': a raw BYTES element claims \(n) bytes; \(bytes.count - i) remain.", field: field)
                }
                items.append(Array(bytes[i ..< i + n]))
                i += n
            }
        } else {
            items = input.contents.bytesContents.map { [UInt8]($0) }
        }
        let declared = input.shape.reduce(Int64(1)) { $0 &* max(0, $1) }
        guard !input.shape.isEmpty, declared == Int64(items.count) else {
            throw RPCError.invalidArgument("'\(input.name)' has shape \(input.shape) but \(items.count) elements.", field: field)
        }
        return try items.map { item in
            guard let s = String(validating: item, as: UTF8.self) else {
                throw RPCError.invalidArgument("'\(input.name)' is not valid UTF-8 text.", field: field)
            }
            return s
        }
    }

    /// A one-element numeric or boolean tensor as a JSON value.
    func scalar() throws -> JSON {
        let declared = input.shape.reduce(Int64(1)) { $0 &* max(0, $1) }
        guard declared == 1 else {
            throw RPCError.invalidArgument("'\(input.name)' must hold one value (shape [1] or [1, 1]), not shape \(input.shape).", field: field)
        }
        if let raw {
            let b = [UInt8](raw)
            func le(_ n: Int) throws -> UInt64 {
                guard b.count == n else {
                    throw RPCError.invalidArgument("'\(input.name)' (\(input.datatype)) needs \(n) raw bytes, got \(b.count).", field: field)
                }
                return b.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            }
            switch input.datatype {
            case "BOOL": return .bool(try le(1) != 0)
            case "INT32": return .number(Double(Int32(truncatingIfNeeded: try le(4))))
            case "INT64": return .number(Double(Int64(bitPattern: try le(8))))
            case "UINT32": return .number(Double(try le(4)))
            case "UINT64": return .number(Double(try le(8)))
            case "FP32": return .number(Double(Float(bitPattern: UInt32(try le(4)))))
            case "FP64": return .number(Double(bitPattern: try le(8)))
            default: break
            }
        } else {
            let c = input.contents
            switch input.datatype {
            case "BOOL" where c.boolContents.count == 1: return .bool(c.boolContents[0])
            case "INT32" where c.intContents.count == 1: return .number(Double(c.intContents[0]))
            case "INT64" where c.int64Contents.count == 1: return .number(Double(c.int64Contents[0]))
            case "UINT32" where c.uintContents.count == 1: return .number(Double(c.uintContents[0]))
            case "UINT64" where c.uint64Contents.count == 1: return .number(Double(c.uint64Contents[0]))
            case "FP32" where c.fp32Contents.count == 1: return .number(Double(c.fp32Contents[0]))
            case "FP64" where c.fp64Contents.count == 1: return .number(c.fp64Contents[0])
            default: break
            }
        }
        throw RPCError.invalidArgument("'\(input.name)' must be one BOOL, INT32, INT64, UINT32, UINT64, FP32 or FP64 value (got \(input.datatype)).",
                                       field: field)
    }
}
