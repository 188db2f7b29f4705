import Engine
import Foundation
import GGUF
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtocols
import InferenceCore
import Logging
import Prometheus
import Runtime
@testable import Server
import Serving
import SwiftProtobuf
import TestSupport
import Testing
import Tokenizer

/// The gRPC API: how its requests are read (the same fields as HTTP's, proto3's zeros, Triton's tensors), how errors
/// become status codes, what reflection answers, and a real server on 127.0.0.1 driven by grpc-swift's client.
@Suite("gRPC API", .serialized, .timeLimit(.minutes(10)))
struct GRPCTests {
    // MARK: reading requests

    static func sglRequest(_ ids: [UInt32], _ set: (inout Sglang_Grpc_Scheduler_SamplingParams) -> Void = { _ in }) -> Sglang_Grpc_Scheduler_GenerateRequest {
        var r = Sglang_Grpc_Scheduler_GenerateRequest()
        r.requestID = "t"
        r.tokenized.inputIds = ids
        set(&r.samplingParams)
        return r
    }

    static func object(_ json: JSON) -> [String: JSON] {
        guard case .object(let pairs) = json else { return [:] }
        return Dictionary(pairs, uniquingKeysWith: { a, _ in a })
    }

    @Test("SGLang sampling params: proto3 zeros read as SGLang's defaults, set fields as HTTP's")
    func sglangBody() throws {
        let plain = Self.object(try SGLangService.body(Self.sglRequest([1, 2, 3])))
        #expect(plain["prompt"] == .array([.number(1), .number(2), .number(3)]))
        #expect(plain["temperature"] == .number(0))
        // top_p 0, top_k 0, repetition_penalty 0, n 0, unset max_new_tokens: not sent, so HTTP's defaults apply.
        for key in ["top_p", "top_k", "repetition_penalty", "n", "max_tokens", "logprobs"] { #expect(plain[key] == nil, "\(key)") }
        let set = Self.object(try SGLangService.body(Self.sglRequest([5]) {
            $0.temperature = 0.5; $0.topP = 0.9; $0.topK = 40; $0.maxNewTokens = 7; $0.stop = ["\n"]; $0.stopTokenIds = [2]
            $0.n = 2; $0.ignoreEos = true; $0.minNewTokens = 3; $0.logitBias = ["11": -5]
        }))
        #expect(set["top_p"] == .number(Double(Float(0.9))))
        #expect(set["top_k"] == .number(40))
        #expect(set["max_tokens"] == .number(7))
        #expect(set["stop"] == .array([.string("\n")]))
        #expect(set["stop_token_ids"] == .array([.number(2)]))
        #expect(set["n"] == .number(2))
        #expect(set["ignore_eos"] == .bool(true))
        #expect(set["min_tokens"] == .number(3))
        #expect(set["logit_bias"] == .object([("11", .number(-5))]))
        // top_k -1 is SGLang's "off".
        #expect(Self.object(try SGLangService.body(Self.sglRequest([5]) { $0.topK = -1 }))["top_k"] == nil)
    }

    @Test("SGLang requests this server cannot honour are refused, naming the field")
    func sglangRefusals() {
        func field(_ r: Sglang_Grpc_Scheduler_GenerateRequest) -> String? {
            do { _ = try SGLangService.body(r) } catch let e as RPCError {
                #expect(e.code == .invalidArgument)
                return e.metadata[stringValues: "autoglm-param"].first(where: { _ in true })
            } catch { return "other" }
            return nil
        }
        #expect(field(Self.sglRequest([])) == "tokenized.input_ids")
        #expect(field(Self.sglRequest([1]) { $0.regex = "a+" }) == "sampling_params.regex")
        #expect(field(Self.sglRequest([1]) { $0.jsonSchema = "{}" }) == "sampling_params.json_schema")
        #expect(field(Self.sglRequest([1]) { $0.topK = -2 }) == "sampling_params.top_k")
        #expect(field(Self.sglRequest([1]) { $0.maxNewTokens = 0 }) == "sampling_params.max_new_tokens")
        var images = Self.sglRequest([1])
        images.mmInputs.imageData = [Data([1, 2, 3])]
        #expect(field(images) == "mm_inputs")
        var lora = Self.sglRequest([1])
        lora.loraID = "adapter"
        #expect(field(lora) == "lora_id")
        var custom = Self.sglRequest([1])
        custom.samplingParams.customParams.fields["beam"] = Google_Protobuf_Value(numberValue: 2)
        #expect(field(custom) == "sampling_params.custom_params.beam")
    }

    static func bytesTensor(_ name: String, _ items: [String]) -> (Inference_ModelInferRequest.InferInputTensor, Data) {
        var t = Inference_ModelInferRequest.InferInputTensor()
        t.name = name
        t.datatype = "BYTES"
        t.shape = [Int64(items.count)]
        return (t, KServeBytes.encode(items.map { Array($0.utf8) }))
    }

    @Test("KServe requests: raw BYTES text, scalar tensors, parameters, vLLM's sampling_parameters")
    func kserveInput() throws {
        var r = Inference_ModelInferRequest()
        let (text, textRaw) = Self.bytesTensor("text_input", ["héllo"])
        var maxTokens = Inference_ModelInferRequest.InferInputTensor()
        maxTokens.name = "max_tokens"
        maxTokens.datatype = "INT32"
        maxTokens.shape = [1, 1]
        var temperature = Inference_ModelInferRequest.InferInputTensor()
        temperature.name = "temperature"
        temperature.datatype = "FP32"
        temperature.shape = [1]
        var stream = Inference_ModelInferRequest.InferInputTensor()
        stream.name = "stream"
        stream.datatype = "BOOL"
        stream.shape = [1]
        let (sampling, samplingRaw) = Self.bytesTensor("sampling_parameters", [#"{"top_p": 0.5, "stop": ["END"]}"#])
        r.inputs = [text, maxTokens, temperature, stream, sampling]
        r.rawInputContents = [textRaw, Data([9, 0, 0, 0]), Data(withUnsafeBytes(of: Float(0.25).bitPattern.littleEndian) { Array($0) }),
                              Data([1]), samplingRaw]
        r.parameters["seed"] = Inference_InferParameter(int64: 7)
        r.parameters["sequence_id"] = Inference_InferParameter(int64: 1)  // Triton's own: accepted, not used
        r.parameters["triton_enable_empty_final_response"] = Inference_InferParameter(bool: true)
        let input = try KServeInput(r)
        #expect(input.stream)
        #expect(!input.echo)
        let body = Self.object(input.body)
        #expect(body["prompt"] == .string("héllo"))
        #expect(body["max_tokens"] == .number(9))
        #expect(body["temperature"] == .number(0.25))
        #expect(body["top_p"] == .number(0.5))
        #expect(body["stop"] == .array([.string("END")]))
        #expect(body["seed"] == .number(7))
        #expect(body["sequence_id"] == nil)

        // The same text in `contents` instead of raw bytes.
        var plain = Inference_ModelInferRequest()
        var t = Inference_ModelInferRequest.InferInputTensor()
        t.name = "text_input"
        t.datatype = "BYTES"
        t.shape = [1]
        t.contents.bytesContents = [Data("hi".utf8)]
        plain.inputs = [t]
        plain.parameters["exclude_input_in_output"] = Inference_InferParameter(bool: false)
        let read = try KServeInput(plain)
        #expect(Self.object(read.body)["prompt"] == .string("hi"))
        #expect(read.echo)
    }

    @Test("KServe requests that cannot be read are refused, naming the input or parameter")
    func kserveRefusals() {
        func field(_ r: Inference_ModelInferRequest) -> String? {
            do { _ = try KServeInput(r) } catch let e as RPCError {
                #expect(e.code == .invalidArgument)
                return e.metadata[stringValues: "autoglm-param"].first(where: { _ in true })
            } catch { return "other" }
            return nil
        }
        var none = Inference_ModelInferRequest()
        #expect(field(none) == "inputs.text_input")
        let (two, twoRaw) = Self.bytesTensor("text_input", ["a", "b"])
        none.inputs = [two]
        none.rawInputContents = [twoRaw]
        #expect(field(none) == "inputs.text_input")  // batch of two
        var truncated = Inference_ModelInferRequest()
        let (one, oneRaw) = Self.bytesTensor("text_input", ["abcdef"])
        truncated.inputs = [one]
        truncated.rawInputContents = [oneRaw.prefix(6)]
        #expect(field(truncated) == "inputs.text_input")
        var unknown = Inference_ModelInferRequest()
        unknown.inputs = [one]
        unknown.rawInputContents = [oneRaw]
        unknown.parameters["beam_width"] = Inference_InferParameter(int64: 4)
        #expect(field(unknown) == "parameters.beam_width")
        var wrongType = unknown
        wrongType.parameters = ["temperature": Inference_InferParameter(string: "warm")]
        #expect(field(wrongType) == "parameters.temperature")
        var mismatch = unknown
        mismatch.parameters = [:]
        mismatch.rawInputContents = []
        mismatch.rawInputContents = [oneRaw, oneRaw]
        #expect(field(mismatch) == "raw_input_contents")
        var output = unknown
        output.parameters = [:]
        var requested = Inference_ModelInferRequest.InferRequestedOutputTensor()
        requested.name = "logits"
        output.outputs = [requested]
        #expect(field(output) == "outputs.logits")
    }

    @Test("HTTP's errors become gRPC's status codes with the same message")
    func statusCodes() {
        #expect(RPCError(APIError.invalidRequest("bad", param: "top_p")).code == .invalidArgument)
        #expect(RPCError(APIError.modelNotFound("x", available: ["y"])).code == .notFound)
        let overloaded = RPCError(APIError.overloaded("full", retryAfter: 3))
        #expect(overloaded.code == .resourceExhausted)
        #expect(overloaded.metadata[stringValues: "retry-after"].first(where: { _ in true }) == "3")
        #expect(RPCError(APIError.unavailable("draining", retryAfter: 5)).code == .unavailable)
        #expect(RPCError(AccessControl.unauthenticated("No credentials.", code: "missing_api_key")).code == .unauthenticated)
        #expect(RPCError(APIError.bodyTooLarge(limit: 1024)).code == .resourceExhausted)
        #expect(RPCError(APIError.internalError("boom")).message == "boom")
        #expect(GRPCMetrics.name(.resourceExhausted) == "RESOURCE_EXHAUSTED")
    }

    @Test("reflection: the services, a file by a nested symbol or a method, with its imports")
    func reflection() throws {
        let index = ReflectionIndex(services: ["sglang.grpc.scheduler.SglangScheduler", "inference.GRPCInferenceService"])
        guard case .files(let files) = index.fileContaining(symbol: "sglang.grpc.scheduler.SglangScheduler.Generate") else {
            Issue.record("no file for the Generate method")
            return
        }
        let names = try files.map { try Google_Protobuf_FileDescriptorProto(serializedBytes: $0).name }
        #expect(names.first == "sglang_scheduler.proto")
        #expect(names.contains("google/protobuf/struct.proto") && names.contains("google/protobuf/timestamp.proto"))
        guard case .files(let kserve) = index.fileContaining(symbol: ".inference.ModelInferRequest.InferInputTensor") else {
            Issue.record("no file for a nested message")
            return
        }
        let file = try Google_Protobuf_FileDescriptorProto(serializedBytes: kserve[0])
        #expect(file.service.first?.method.map(\.name).contains("ModelStreamInfer") == true)
        guard case .error(let code, _) = index.fileContaining(symbol: "no.Such") else {
            Issue.record("an unknown symbol was found")
            return
        }
        #expect(code == .notFound)
        guard case .error = index.fileByName("missing.proto"), case .files = index.fileByName("health.proto") else {
            Issue.record("file lookup by name")
            return
        }
    }

    // MARK: a real server

    /// This suite's own model: an engine instance is driven by one scheduler at a time, and other suites run beside
    /// this one.
    static let shared: (any LanguageModel, Tokenizer)? = {
        guard let file = try? GGUFFile(path: Fixtures.defaultModelPath) else { return nil }
        guard let model = try? ArchitectureRegistry.load(file, threads: 1), let tokenizer = try? Tokenizer(gguf: file) else { return nil }
        return (model, tokenizer)
    }()

    /// The HTTP side and the gRPC API over the default model, the gRPC server on an ephemeral port; `body` gets a client.
    static func withServer(options extra: (inout ServerOptions) -> Void = { _ in },
                           _ body: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>, ServedModel) async throws -> Void) async throws {
        let (engine, tokenizer) = try #require(Self.shared, "the default model is missing: run scripts/setup-model.sh")
        let registry = PrometheusCollectorRegistry()
        let metrics = ServerMetrics(registry: registry, model: "smol")
        let scheduler = Scheduler(model: engine, tokenizer: tokenizer,
                                  configuration: SchedulerConfiguration(maxSequences: 2, maxQueue: 8, cacheTokens: 2048),
                                  contextLength: 512, observer: metrics)
        scheduler.start()
        let served = ServedModel(name: "smol", backend: LocalBackend(scheduler: scheduler), maxTokensLimit: 256)
        defer { served.backend.shutdown() }
        var options = ServerOptions(port: 0)
        options.grpcPort = -1
        extra(&options)
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let (port, ports) = AsyncStream<Int>.makeStream()
        let (_, grpc) = try AutoGLMServer.applications(models: [served], metrics: ["smol": metrics], registry: registry, options: options,
                                                        logger: logger, onGRPCListening: { ports.yield($0) })
        let service = try #require(grpc)
        let running = Task { try await service.run() }
        defer { service.server.beginGracefulShutdown(); running.cancel() }
        var iterator = port.makeAsyncIterator()
        let grpcPort = try #require(await iterator.next())
        try await withGRPCClient(transport: .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: grpcPort), transportSecurity: .plaintext)) { client in
            try await body(client, served)
        }
    }

    static func generate(_ client: GRPCClient<HTTP2ClientTransport.Posix>, _ request: Sglang_Grpc_Scheduler_GenerateRequest,
                         metadata: Metadata = [:]) async throws -> (chunks: [UInt32], complete: Sglang_Grpc_Scheduler_GenerateComplete?) {
        try await SGL.Client(wrapping: client).generate(request: ClientRequest(message: request, metadata: metadata)) { response in
            var chunks: [UInt32] = []
            var complete: Sglang_Grpc_Scheduler_GenerateComplete?
            for try await message in response.messages {
                switch message.response {
                case .chunk(let c)?: chunks += c.tokenIds
                case .complete(let c)?: complete = c
                case nil: break
                }
            }
            return (chunks, complete)
        }
    }

    @Test("Generate over a real connection: the engine's greedy tokens, streamed and counted")
    func generateLive() async throws {
        try await Self.withServer { client, served in
            let prompt = served.backend.encode("The capital of France is", addSpecial: true)
            // The engine's own greedy answer, asked directly.
            var direct: [Int] = []
            for await event in try served.backend.submit(GenerationRequest(id: "direct", promptTokens: prompt, sampling: .greedy,
                                                                           stop: StopCondition(maxTokens: 12, ignoreEOS: true))) {
                if case .token(let t) = event { direct.append(t.id) }
            }
            var request = Self.sglRequest(prompt.map(UInt32.init)) { $0.maxNewTokens = 12; $0.ignoreEos = true }
            request.stream = true
            let (chunks, complete) = try await Self.generate(client, request)
            #expect(chunks.map(Int.init) == direct)
            #expect(complete?.outputIds == chunks)
            #expect(complete?.finishReason == "length")
            #expect(complete?.promptTokens == UInt32(prompt.count))

            // An error as a status code.
            do {
                _ = try await Self.generate(client, Self.sglRequest([UInt32(served.backend.vocabularySize)]))
                Issue.record("a token outside the vocabulary was accepted")
            } catch let error as RPCError {
                #expect(error.code == .invalidArgument)
            }
            // KServe's ModelInfer, the same greedy text.
            var infer = Inference_ModelInferRequest()
            infer.modelName = "smol"
            let (text, raw) = Self.bytesTensor("text_input", ["The capital of France is"])
            infer.inputs = [text]
            infer.rawInputContents = [raw]
            infer.parameters["max_tokens"] = Inference_InferParameter(int64: 12)
            infer.parameters["temperature"] = Inference_InferParameter(double: 0)
            infer.parameters["ignore_eos"] = Inference_InferParameter(bool: true)
            let response = try await KServe.Client(wrapping: client).modelInfer(infer)
            let bytes = [UInt8](try #require(response.rawOutputContents.first))
            #expect(String(decoding: bytes.dropFirst(4), as: UTF8.self) == served.backend.decode(direct))
            #expect(response.parameters["completion_tokens"]?.int64Param == 12)
        }
    }

    @Test("a cancelled Generate frees its sequence; Abort ends another by its request id")
    func cancelAndAbort() async throws {
        try await Self.withServer { client, served in
            var request = Self.sglRequest([1, 2, 3, 4]) { $0.maxNewTokens = 250; $0.ignoreEos = true }
            request.stream = true
            request.requestID = "long"
            let scheduler = SGL.Client(wrapping: client)
            let call = Task {
                try await scheduler.generate(request: ClientRequest(message: request)) { response in
                    var n = 0
                    for try await _ in response.messages {
                        n += 1
                        if n == 3 { throw CancellationError() }  // the client stops reading and the call ends
                    }
                }
            }
            _ = await call.result
            var running = served.backend.statistics.running
            for _ in 0 ..< 200 where running > 0 {
                try await Task.sleep(for: .milliseconds(25))
                running = served.backend.statistics.running
            }
            #expect(running == 0)

            let aborted = Task { try await Self.generate(client, request) }
            for _ in 0 ..< 200 where served.backend.statistics.running == 0 { try await Task.sleep(for: .milliseconds(10)) }
            let answer = try await scheduler.abort(Sglang_Grpc_Scheduler_AbortRequest.with { $0.requestID = "long" })
            #expect(answer.success)
            let (chunks, complete) = try await aborted.value
            #expect(complete?.finishReason == "abort")
            #expect(chunks.count < 250)
        }
    }

    @Test("keys: no or a wrong bearer token is UNAUTHENTICATED; health needs none")
    func authentication() async throws {
        try await Self.withServer(options: { $0.apiKeys = ["k1"] }) { client, _ in
            let request = Self.sglRequest([1, 2]) { $0.maxNewTokens = 2; $0.ignoreEos = true }
            for metadata: Metadata in [[:], ["authorization": "Bearer nope"]] {
                do {
                    _ = try await Self.generate(client, request, metadata: metadata)
                    Issue.record("served without a valid key")
                } catch let error as RPCError {
                    #expect(error.code == .unauthenticated)
                }
            }
            let (_, complete) = try await Self.generate(client, request, metadata: ["authorization": "Bearer k1"])
            #expect(complete?.completionTokens == 2)
            let health = try await Grpc_Health_V1_Health.Client(wrapping: client).check(Grpc_Health_V1_HealthCheckRequest())
            #expect(health.status == .serving)
        }
    }
}
