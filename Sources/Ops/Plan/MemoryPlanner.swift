/// Where the weight bytes come from.
public enum WeightSource: Sendable, Equatable {
    /// Parameters x bytes per parameter of a precision.
    case precision(Precision)
    /// A real file, mapped whole (a GGUF's size), with its label ("Q4_1 GGUF").
    case file(bytes: Int, label: String)
}

/// Inference, or full training with Adam.
public enum PlanMode: Sendable, Equatable {
    case inference
    /// Full fine-tuning with Adam; `checkpointing` recomputes each layer's activations in the backward pass.
    case training(checkpointing: Bool)

    public var name: String {
        switch self {
        case .inference: "inference"
        case .training(let c): c ? "training (activation checkpointing)" : "training"
        }
    }
}

/// Everything a plan depends on.
public struct PlanRequest: Sendable, Equatable {
    public var shape: ModelShape
    public var weights: WeightSource
    /// Tokens of context per sequence (prompt + generation; for training, the sequence length).
    public var context: Int
    /// Sequences held at once (concurrent requests; for training, the micro-batch size).
    public var sequences: Int
    public var kvPrecision: KVPrecision
    public var mode: PlanMode
    /// Count `shape.extraParameters` (a vision tower) in the weights.
    public var includeExtraParameters: Bool
    public var model: EngineMemoryModel
    /// An image per request (`plan --image WxH`): its tokens share the context, the tower's activations are added.
    public var image: ImagePlan? = nil

    public init(
        shape: ModelShape, weights: WeightSource, context: Int, sequences: Int = 1, kvPrecision: KVPrecision = .f16,
        mode: PlanMode = .inference, includeExtraParameters: Bool = false, model: EngineMemoryModel = .cpuEngine
    ) {
        self.shape = shape
        self.weights = weights
        self.context = context
        self.sequences = sequences
        self.kvPrecision = kvPrecision
        self.mode = mode
        self.includeExtraParameters = includeExtraParameters
        self.model = model
    }
}

/// Bytes by purpose. Training adds gradients, optimizer state and master weights; inference leaves them 0.
public struct MemoryBreakdown: Sendable, Equatable, Codable {
    public var weightsBytes: Int
    public var kvCacheBytes: Int
    public var activationsBytes: Int
    public var overheadBytes: Int
    public var gradientsBytes: Int
    public var optimizerBytes: Int
    public var masterWeightsBytes: Int

    public var totalBytes: Int {
        weightsBytes + kvCacheBytes + activationsBytes + overheadBytes + gradientsBytes + optimizerBytes + masterWeightsBytes
    }
}

/// A memory budget to fit into: a GPU of a given size, or this machine's RAM.
public struct Device: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case gpu, host }
    public var name: String
    public var kind: Kind
    public var capacityBytes: Int
    /// What a plan may use: capacity x GPU utilization, or the RAM available now.
    public var usableBytes: Int

    public init(name: String, kind: Kind, capacityBytes: Int, usableBytes: Int) {
        self.name = name
        self.kind = kind
        self.capacityBytes = capacityBytes
        self.usableBytes = usableBytes
    }

    /// A GPU of `gib` GiB (GPU memory is sized in binary units: nvidia-smi reports MiB) at a utilization fraction.
    public static func gpu(gib: Int, utilization: Double = EngineMemoryModel.cpuEngine.gpuMemoryUtilization) -> Device {
        let bytes = gib << 30
        return Device(name: "\(gib) GB GPU", kind: .gpu, capacityBytes: bytes, usableBytes: Int(Double(bytes) * utilization))
    }

    /// The GPU sizes the issue asks about: 8, 16, 24, 40, 48, 80, 141 GB.
    public static func standardGPUs(utilization: Double = EngineMemoryModel.cpuEngine.gpuMemoryUtilization) -> [Device] {
        [8, 16, 24, 40, 48, 80, 141].map { gpu(gib: $0, utilization: utilization) }
    }

    /// This machine's RAM: usable is what the kernel reports available now (MemAvailable).
    public static func host(totalBytes: Int, availableBytes: Int) -> Device {
        Device(name: "this machine (RAM)", kind: .host, capacityBytes: totalBytes, usableBytes: availableBytes)
    }
}

/// How one plan fits one device.
public struct DeviceFit: Sendable, Equatable, Codable {
    public var device: String
    public var kind: Device.Kind
    public var capacityBytes: Int
    public var usableBytes: Int
    /// The plan's total plus the device's own fixed cost (a CUDA context on GPUs).
    public var requiredBytes: Int
    public var fits: Bool
    public var headroomBytes: Int
    /// Largest context per sequence that fits at the requested number of sequences (0: none fits),
    /// capped at the model's trained context.
    public var maxContext: Int
    /// Most sequences that fit at the requested context (0: not even one).
    public var maxSequences: Int
}

/// A complete plan: inputs, breakdown, fit table and advice.
public struct MemoryPlan: Sendable, Equatable {
    public var request: PlanRequest
    public var breakdown: MemoryBreakdown
    public var parameterCount: Int
    public var fits: [DeviceFit]
    public var recommendation: [String]
    public var notes: [String]
}

/// The memory planner: pure functions from a model's shape and a deployment to bytes.
public enum MemoryPlanner {
    /// Bytes by purpose for a request.
    public static func breakdown(_ r: PlanRequest) -> MemoryBreakdown {
        let shape = r.shape
        let parameters = shape.parameterCount + (r.includeExtraParameters ? shape.extraParameters : 0)
        let weights: Int
        switch r.weights {
        case .precision(let p): weights = bytes(Double(parameters) * p.bytesPerParameter)
        case .file(let bytes, _): weights = bytes + (r.includeExtraParameters ? Int(Double(shape.extraParameters) * 2) : 0)
        }
        let overhead = r.model.overheadBytes(shape: shape)
        switch r.mode {
        case .inference:
            let kv = bytes(Double(r.context) * Double(r.sequences) * shape.kvBytesPerToken(r.kvPrecision))
            let activations = r.model.inferenceActivationBytes(shape: shape, context: r.context, sequences: r.sequences)
                + (r.image?.activationBytes ?? 0)
            return MemoryBreakdown(weightsBytes: weights, kvCacheBytes: kv, activationsBytes: activations,
                                   overheadBytes: overhead, gradientsBytes: 0, optimizerBytes: 0, masterWeightsBytes: 0)
        case .training(let checkpointing):
            // Mixed precision with Adam (ZeRO paper's 16 bytes per parameter for fp16/bf16): 16-bit weights and
            // gradients, fp32 master weights and two fp32 moments. Pure fp32 training has no master copy.
            let bytes: Double
            if case .precision(let p) = r.weights { bytes = p.bytesPerParameter } else { bytes = 2 }
            let gradients = Self.bytes(Double(parameters) * bytes)
            let optimizer = parameters * 8
            let master = bytes < 4 ? parameters * 4 : 0
            let activations = trainingActivationBytes(shape: shape, sequenceLength: r.context, batch: r.sequences,
                                                      elementBytes: bytes, checkpointing: checkpointing)
            return MemoryBreakdown(weightsBytes: weights, kvCacheBytes: 0, activationsBytes: activations,
                                   overheadBytes: overhead, gradientsBytes: gradients, optimizerBytes: optimizer,
                                   masterWeightsBytes: master)
        }
    }

    /// Training activations kept for the backward pass.
    ///
    /// Per layer `34 x s x b x h` bytes at 16-bit (Korthikanti et al. 2022, "Reducing Activation Recomputation
    /// in Large Transformer Models", eq. 1 with tensor parallelism 1, minus the `5 a s^2 b` attention-score
    /// term that FlashAttention does not store). Full checkpointing keeps each layer's 16-bit input
    /// (`2 s b h`) and recomputes one layer at a time. Logits and their gradient in fp32 (`2 x 4 s b V`).
    public static func trainingActivationBytes(
        shape: ModelShape, sequenceLength s: Int, batch b: Int, elementBytes: Double, checkpointing: Bool
    ) -> Int {
        let sbh = Double(s) * Double(b) * Double(shape.hiddenSize)
        let scale = elementBytes / 2
        let perLayer = 34 * sbh * scale
        let layers = checkpointing
            ? Double(shape.layerCount) * 2 * sbh * scale + perLayer
            : Double(shape.layerCount) * perLayer
        let logits = 8 * Double(s) * Double(b) * Double(shape.vocabularySize)
        return bytes(layers + logits)
    }

    /// A byte count from a floating-point estimate, rounded up and capped at 1 EiB so that sums of parts
    /// cannot overflow on absurd inputs.
    static func bytes(_ value: Double) -> Int {
        guard value.isFinite, value > 0 else { return 0 }
        return value >= 0x1p60 ? 1 << 60 : Int(value.rounded(.up))
    }

    /// The bytes a request needs on a device: the breakdown plus the device's own fixed cost.
    public static func requiredBytes(_ r: PlanRequest, on device: Device) -> Int {
        breakdown(r).totalBytes + (device.kind == .gpu ? r.model.gpuRuntimeOverheadBytes : 0)
    }

    /// Largest context per sequence that fits `device` at `r.sequences` (0 when even one token does not).
    public static func maxContext(_ r: PlanRequest, on device: Device) -> Int {
        let cap = r.shape.maxContext > 0 ? r.shape.maxContext : 1 << 20
        return largest(in: 1 ... cap) { c in
            var q = r
            q.context = c
            return requiredBytes(q, on: device) <= device.usableBytes
        }
    }

    /// Most sequences that fit `device` at `r.context` (0 when not even one), searched up to 65,536.
    public static func maxSequences(_ r: PlanRequest, on device: Device) -> Int {
        largest(in: 1 ... 65536) { n in
            var q = r
            q.sequences = n
            return requiredBytes(q, on: device) <= device.usableBytes
        }
    }

    /// The largest value in `range` for which a monotone (true, then false) predicate holds; 0 if none.
    static func largest(in range: ClosedRange<Int>, _ fits: (Int) -> Bool) -> Int {
        guard fits(range.lowerBound) else { return 0 }
        var low = range.lowerBound, high = range.upperBound
        if fits(high) { return high }
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if fits(mid) { low = mid } else { high = mid }
        }
        return low
    }

    /// The full plan against `devices` (typically the standard GPUs and this machine's RAM).
    public static func plan(_ r: PlanRequest, devices: [Device]) -> MemoryPlan {
        let b = breakdown(r)
        let fits = devices.map { d -> DeviceFit in
            let required = requiredBytes(r, on: d)
            return DeviceFit(
                device: d.name, kind: d.kind, capacityBytes: d.capacityBytes, usableBytes: d.usableBytes,
                requiredBytes: required, fits: required <= d.usableBytes, headroomBytes: d.usableBytes - required,
                maxContext: maxContext(r, on: d), maxSequences: maxSequences(r, on: d))
        }
        let parameters = r.shape.parameterCount + (r.includeExtraParameters ? r.shape.extraParameters : 0)
        return MemoryPlan(request: r, breakdown: b, parameterCount: parameters, fits: fits,
                          recommendation: recommend(r, breakdown: b, fits: fits), notes: notes(r))
    }

    static func recommend(_ r: PlanRequest, breakdown b: MemoryBreakdown, fits: [DeviceFit]) -> [String] {
        var lines: [String] = []
        let what = "\(r.context) tokens x \(r.sequences) sequence\(r.sequences == 1 ? "" : "s")"
        if let host = fits.first(where: { $0.kind == .host }) {
            if host.fits {
                lines.append("Fits this machine: needs \(ByteFormat.gb(host.requiredBytes)) of \(ByteFormat.gb(host.usableBytes)) available RAM (\(ByteFormat.gb(host.headroomBytes)) spare).")
            } else {
                lines.append("Does not fit this machine: needs \(ByteFormat.gb(host.requiredBytes)), \(ByteFormat.gb(host.usableBytes)) RAM available.")
                if host.maxContext > 0 {
                    lines.append("On this machine: at most \(host.maxContext) tokens of context at \(r.sequences) sequence\(r.sequences == 1 ? "" : "s") (`--context \(host.maxContext)`).")
                }
                if case .precision(let p) = r.weights, r.mode == .inference, let smaller = smallerPrecisionThatFits(r, current: p, usable: host.usableBytes) {
                    lines.append("Or quantize the weights: \(smaller.0.rawValue) needs \(ByteFormat.gb(smaller.1)) for \(what).")
                }
                if r.mode == .inference, r.kvPrecision == .f32 {
                    var q = r
                    q.kvPrecision = .f16
                    let saved = b.kvCacheBytes - breakdown(q).kvCacheBytes
                    if saved > 0 { lines.append("An f16 KV cache would save \(ByteFormat.gb(saved)) (`--kv-precision f16`; serve `--kv-type f16`, the engine's default).") }
                }
            }
        }
        if let gpu = fits.first(where: { $0.kind == .gpu && $0.fits }) {
            lines.append("Smallest listed GPU that fits \(what): \(gpu.device) (needs \(ByteFormat.gb(gpu.requiredBytes)) of \(ByteFormat.gb(gpu.usableBytes)) usable at \(Int(r.model.gpuMemoryUtilization * 100))%).")
        } else if fits.contains(where: { $0.kind == .gpu }) {
            lines.append("No listed GPU holds \(what) on one card: quantize, shorten the context or shard across GPUs.")
        }
        if r.shape.maxContext > 0, r.context > r.shape.maxContext {
            lines.append("Warning: \(r.context) tokens is beyond the model's trained context of \(r.shape.maxContext).")
        }
        return lines
    }

    /// The largest precision below `current` whose plan fits `usable` bytes, with its total.
    static func smallerPrecisionThatFits(_ r: PlanRequest, current: Precision, usable: Int) -> (Precision, Int)? {
        let ladder: [Precision] = [.fp16, .q8_0, .q6_K, .q5_K, .q4_K, .q4_0, .q3_K, .q2_K]
        for p in ladder where p.bytesPerParameter < current.bytesPerParameter {
            var q = r
            q.weights = .precision(p)
            let total = breakdown(q).totalBytes
            if total <= usable { return (p, total) }
        }
        return nil
    }

    static func notes(_ r: PlanRequest) -> [String] {
        var notes: [String] = []
        switch r.weights {
        case .file(_, let label): notes.append("Weights: the whole \(label) file, memory-mapped (counted once touched).")
        case .precision(let p): notes.append("Weights: \(r.shape.parameterCount.formatted) parameters x \(p.bytesPerParameter) bytes (\(p.rawValue)).")
        }
        if r.mode == .inference {
            notes.append("KV cache: 2 x \(r.shape.layerCount) layers x \(r.shape.kvHeadCount) KV heads x \(r.shape.headDim) head dim x \(r.context) tokens x \(r.sequences) seq x \(r.kvPrecision.bytesPerElement) bytes (\(r.kvPrecision.rawValue)).")
        }
        notes.append("GPU rows add \(ByteFormat.gib(r.model.gpuRuntimeOverheadBytes)) for the CUDA context and count \(Int(r.model.gpuMemoryUtilization * 100))% of the card as usable; the RAM row counts what is available now.")
        if r.shape.extraParameters > 0, let note = r.shape.extraParametersNote {
            notes.append(r.includeExtraParameters ? "Includes the \(note)." : "Excludes the \(note); add `--include-vision` to count it.")
        }
        if let i = r.image {
            notes.append("Image \(i.width)x\(i.height) at max_pixels \(i.maxPixels) (both temporal copies counted): resized to \(i.resizedWidth)x\(i.resizedHeight), \(i.patches) patches, \(i.tokens) image tokens of the \(r.context)-token context (their KV is in the KV row)\(i.tokens + 2 > r.context ? ": MORE THAN THE CONTEXT, raise --context or lower --max-pixels" : "").")
            let tflop = { (x: Double) in "\((x / 1e11).rounded() / 10)" }
            notes.append("Vision tower per image: \(tflop(i.matrixFLOP)) TFLOP in matrix products and \(tflop(i.attentionFLOP)) in attention; \(ByteFormat.gib(i.activationBytes)) of activations while it encodes (added to the activations row).")
        }
        return notes
    }
}

extension Int {
    /// 9400279040 -> "9,400,279,040".
    var formatted: String {
        let digits = String(magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (self < 0 ? "-" : "") + out
    }
}
