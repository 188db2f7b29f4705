/// The inputs of `autoglm plan`, as the CLI parsed them (strings are validated here, not in the CLI).
public struct PlanOptions: Sendable, Equatable {
    /// A preset name, a `.gguf` path or a `config.json` path; nil for the default model (its file when present,
    /// else the `smollm2-135m` preset).
    public var model: String?
    public var precision: String?
    public var context: Int?
    public var sequences: Int
    public var kvPrecision: String
    public var training: Bool
    public var checkpointing: Bool
    public var includeVision: Bool
    public var gpuUtilization: Double?
    public var prefillChunk: Int?
    /// One image per request, WIDTHxHEIGHT (vision-language models), at `imageMaxPixels`.
    public var image: String? = nil
    public var imageMaxPixels: Int? = nil

    public init(
        model: String? = nil, precision: String? = nil, context: Int? = nil, sequences: Int = 1, kvPrecision: String = "f16",
        training: Bool = false, checkpointing: Bool = false, includeVision: Bool = false, gpuUtilization: Double? = nil,
        prefillChunk: Int? = nil, image: String? = nil, imageMaxPixels: Int? = nil
    ) {
        self.image = image
        self.imageMaxPixels = imageMaxPixels
        self.model = model
        self.precision = precision
        self.context = context
        self.sequences = sequences
        self.kvPrecision = kvPrecision
        self.training = training
        self.checkpointing = checkpointing
        self.includeVision = includeVision
        self.gpuUtilization = gpuUtilization
        self.prefillChunk = prefillChunk
    }

    /// The default context: the model's trained context, capped at 8192 (4096 when unknown).
    public static func defaultContext(for shape: ModelShape) -> Int {
        shape.maxContext > 0 ? min(shape.maxContext, 8192) : 4096
    }

    /// Validates the options and builds the request.
    public func request(environment: [String: String]) throws(PlanError) -> PlanRequest {
        let target: String
        if let model { target = model } else {
            let path = ModelStore.defaultModelPath(environment: environment)
            target = ModelStore.fileExists(path) ? path : "smollm2-135m"
        }
        let subject = try PlanSubject.resolve(target)
        let weights: WeightSource
        if let precision {
            guard let p = Precision(name: precision) else {
                throw .invalidOption(name: "--precision", value: precision, allowed: Precision.allowedNames)
            }
            weights = .precision(p)
        } else {
            weights = subject.fileWeights ?? .precision(.bf16)
        }
        guard let kv = KVPrecision(name: kvPrecision) else {
            throw .invalidOption(name: "--kv-precision", value: kvPrecision, allowed: KVPrecision.allowedNames)
        }
        let context = self.context ?? Self.defaultContext(for: subject.shape)
        guard (1 ... 1 << 24).contains(context) else {
            throw .invalidOption(name: "--context", value: "\(context)", allowed: "a number of tokens in 1...\(1 << 24)")
        }
        guard (1 ... 65536).contains(sequences) else { throw .invalidOption(name: "--sequences", value: "\(sequences)", allowed: "a count in 1...65536") }
        if training {
            if case .precision(let p) = weights, !p.isTrainable {
                throw .invalidOption(name: "--precision", value: p.rawValue, allowed: "fp32, fp16, bf16 for --training (quantized fine-tuning such as QLoRA is not modelled)")
            }
            if case .file = weights {
                throw .invalidOption(name: "--precision", value: "(GGUF file)", allowed: "fp32, fp16, bf16: --training needs the precision to train in")
            }
        }
        var model = EngineMemoryModel.cpuEngine
        if let u = gpuUtilization {
            guard u > 0, u <= 1 else { throw .invalidOption(name: "--gpu-utilization", value: "\(u)", allowed: "a fraction in (0, 1]") }
            model.gpuMemoryUtilization = u
        }
        if let chunk = prefillChunk {
            guard (1 ... 1 << 24).contains(chunk) else {
                throw .invalidOption(name: "--prefill-chunk", value: "\(chunk)", allowed: "a number of tokens in 1...\(1 << 24)")
            }
            model.prefillChunkTokens = chunk
        }
        var request = PlanRequest(shape: subject.shape, weights: weights, context: context, sequences: sequences, kvPrecision: kv,
                                  mode: training ? .training(checkpointing: checkpointing) : .inference,
                                  includeExtraParameters: includeVision, model: model)
        if let image {
            guard let vision = subject.shape.vision else {
                throw .invalidOption(name: "--image", value: image, allowed: "a vision-language model (autoglm-phone-9b)")
            }
            let parts = image.lowercased().split(separator: "x").compactMap { Int($0) }
            let maxPixels = imageMaxPixels ?? 9_633_792
            guard parts.count == 2, parts.allSatisfy({ (1 ... 65536).contains($0) }), maxPixels > 0,
                  let plan = ImagePlan(width: parts[0], height: parts[1], maxPixels: maxPixels, vision: vision) else {
                throw .invalidOption(name: "--image", value: image, allowed: "WIDTHxHEIGHT with an aspect ratio under 200, e.g. 1080x2400")
            }
            request.image = plan
            request.includeExtraParameters = true
        }
        return request
    }

    /// The devices of the fit table: the standard GPU sizes and, when known, this machine's RAM.
    public static func devices(host: MemInfo?, gpuUtilization: Double) -> [Device] {
        var devices = Device.standardGPUs(utilization: gpuUtilization)
        if let host { devices.append(.host(totalBytes: host.totalBytes, availableBytes: host.availableBytes)) }
        return devices
    }
}
