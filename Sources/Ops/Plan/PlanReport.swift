import Foundation
import GGUF

/// What `autoglm plan MODEL` was pointed at, resolved to a shape and its natural weight source.
public struct PlanSubject: Sendable, Equatable {
    public var shape: ModelShape
    /// The file's own weights for a GGUF; nil for presets and configs (they need a precision, default bf16).
    public var fileWeights: WeightSource?

    /// Resolves a preset name, a `.gguf` file, a `config.json` (or a directory holding one).
    public static func resolve(_ model: String) throws(PlanError) -> PlanSubject {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory)
        if exists, isDirectory.boolValue {
            let config = (model as NSString).appendingPathComponent("config.json")
            guard FileManager.default.fileExists(atPath: config) else {
                throw .configUnreadable(path: model, reason: "it is a directory without a config.json")
            }
            return try resolve(config)
        }
        if model.lowercased().hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: model) else {
                throw .configUnreadable(path: model, reason: exists ? "permission denied" : "no such file")
            }
            return PlanSubject(shape: try ModelShape(huggingFaceConfig: data, path: model), fileWeights: nil)
        }
        if exists || model.lowercased().hasSuffix(".gguf") {
            let file: GGUFFile
            do { file = try GGUFFile(path: model) } catch { throw .gguf(path: model, error) }
            let shape = try ModelShape(gguf: file)
            return PlanSubject(shape: shape, fileWeights: .file(bytes: file.fileSize, label: ggufLabel(file)))
        }
        guard let preset = ModelPresets.named(model) else { throw .unknownModel(model, presets: ModelPresets.names) }
        return PlanSubject(shape: preset, fileWeights: nil)
    }

    /// "GGUF Q4_1 (98.2 MB)": the most common weight type among 2-D tensors.
    static func ggufLabel(_ file: GGUFFile) -> String {
        var counts: [GGUFTensorType: Int] = [:]
        for t in file.tensors where t.dimensions.count >= 2 { counts[t.type, default: 0] += t.byteCount }
        let dominant = counts.max { $0.value < $1.value }?.key.description ?? "?"
        return "GGUF \(dominant)"
    }
}

/// Renders a plan as a terminal report or as JSON.
public enum PlanReport {
    /// A Kubernetes `resources:` block for a pod serving this plan on the CPU engine (`plan --kubernetes`): memory
    /// requested = the plan + 15% (allocator slack, the mapped file's pages while packing), limit = the plan + 50%,
    /// both rounded up to 256 MiB. Nil for a training plan.
    public static func kubernetes(_ plan: MemoryPlan, threads: Int? = nil) -> String? {
        guard case .inference = plan.request.mode else { return nil }
        let b = plan.breakdown, r = plan.request
        func mebibytes(_ factor: Double) -> Int {
            let mib = Double(b.totalBytes) * factor / 1_048_576
            return Int((mib / 256).rounded(.up)) * 256
        }
        func gib(_ bytes: Int) -> String { String(format: "%.2f GiB", Double(bytes) / 1_073_741_824) }
        var out = "# autoglm plan: \(r.shape.name), \(r.context) tokens x \(r.sequences) sequences: \(gib(b.totalBytes))"
        out += " (weights \(gib(b.weightsBytes)), KV cache \(gib(b.kvCacheBytes)), work \(gib(b.activationsBytes + b.overheadBytes)))\n"
        out += "resources:\n  requests:\n"
        if let threads { out += "    cpu: \"\(threads)\"\n" }
        out += "    memory: \(mebibytes(1.15))Mi\n  limits:\n    memory: \(mebibytes(1.5))Mi\n"
        if threads == nil { out += "# cpu: the cores the engine may use (serve --threads, default all the pod sees)\n" }
        return out
    }

    public static func text(_ plan: MemoryPlan) -> String {
        let r = plan.request
        let b = plan.breakdown
        var out: [String] = []
        let weightsLabel: String
        switch r.weights {
        case .precision(let p): weightsLabel = p.rawValue
        case .file(_, let label): weightsLabel = label
        }
        out.append("Model      \(r.shape.name) (\(r.shape.architecture), \(String(format: "%.3f", Double(plan.parameterCount) / 1e9)) B parameters, \(r.shape.layerCount) layers, \(r.shape.headCount) heads / \(r.shape.kvHeadCount) KV heads x \(r.shape.headDim))")
        out.append("Plan       \(r.mode.name), weights \(weightsLabel), context \(r.context), sequences \(r.sequences)\(r.mode == .inference ? ", KV \(r.kvPrecision.rawValue)" : "")")
        out.append("")
        var rows: [[String]] = [
            ["weights", ByteFormat.gb(b.weightsBytes), ByteFormat.gib(b.weightsBytes), "\(b.weightsBytes)"],
        ]
        if r.mode == .inference {
            rows.append(["KV cache", ByteFormat.gb(b.kvCacheBytes), ByteFormat.gib(b.kvCacheBytes), "\(b.kvCacheBytes)"])
        } else {
            rows.append(["gradients", ByteFormat.gb(b.gradientsBytes), ByteFormat.gib(b.gradientsBytes), "\(b.gradientsBytes)"])
            rows.append(["Adam moments", ByteFormat.gb(b.optimizerBytes), ByteFormat.gib(b.optimizerBytes), "\(b.optimizerBytes)"])
            rows.append(["master weights", ByteFormat.gb(b.masterWeightsBytes), ByteFormat.gib(b.masterWeightsBytes), "\(b.masterWeightsBytes)"])
        }
        rows.append(["activations/workspace", ByteFormat.gb(b.activationsBytes), ByteFormat.gib(b.activationsBytes), "\(b.activationsBytes)"])
        rows.append(["runtime overhead", ByteFormat.gb(b.overheadBytes), ByteFormat.gib(b.overheadBytes), "\(b.overheadBytes)"])
        rows.append(["total", ByteFormat.gb(b.totalBytes), ByteFormat.gib(b.totalBytes), "\(b.totalBytes)"])
        out.append(TextTable(headers: ["MEMORY", "GB", "GiB", "BYTES"], rows: rows, rightAligned: [1, 2, 3]).render())
        out.append("")
        let fitRows = plan.fits.map { f -> [String] in
            [f.device, ByteFormat.gib(f.usableBytes), ByteFormat.gib(f.requiredBytes), f.fits ? "yes" : "no",
             f.maxContext == 0 ? "-" : "\(f.maxContext)", f.maxSequences == 0 ? "-" : "\(f.maxSequences)"]
        }
        out.append(TextTable(
            headers: ["DEVICE", "USABLE", "NEEDS", "FITS", "MAX CONTEXT @\(r.sequences) SEQ", "MAX SEQ @\(r.context)"],
            rows: fitRows, rightAligned: [1, 2, 4]).render())
        out.append("")
        out.append(contentsOf: plan.recommendation)
        out.append("")
        out.append(contentsOf: plan.notes.map { "note: " + $0 })
        return out.joined(separator: "\n")
    }

    /// The machine-readable plan: one object with `weights_bytes`, `kv_cache_bytes`, `activations_bytes`,
    /// `overhead_bytes`, `total_bytes`, training fields, the fit table and the recommendation.
    public static func json(_ plan: MemoryPlan) -> String {
        let r = plan.request
        let weights: String
        switch r.weights {
        case .precision(let p): weights = p.rawValue
        case .file(_, let label): weights = label
        }
        let doc = PlanJSON(
            model: r.shape, parameters: plan.parameterCount, mode: r.mode.name, weights: weights,
            context: r.context, sequences: r.sequences, kvPrecision: r.kvPrecision.rawValue,
            weightsBytes: plan.breakdown.weightsBytes, kvCacheBytes: plan.breakdown.kvCacheBytes,
            activationsBytes: plan.breakdown.activationsBytes, overheadBytes: plan.breakdown.overheadBytes,
            gradientsBytes: plan.breakdown.gradientsBytes, optimizerBytes: plan.breakdown.optimizerBytes,
            masterWeightsBytes: plan.breakdown.masterWeightsBytes, totalBytes: plan.breakdown.totalBytes,
            fits: plan.fits, recommendation: plan.recommendation, notes: plan.notes, memoryModel: r.model)
        return JSONOutput.encode(doc)
    }
}

struct PlanJSON: Encodable {
    var model: ModelShape
    var parameters: Int
    var mode: String
    var weights: String
    var context: Int
    var sequences: Int
    var kvPrecision: String
    var weightsBytes: Int
    var kvCacheBytes: Int
    var activationsBytes: Int
    var overheadBytes: Int
    var gradientsBytes: Int
    var optimizerBytes: Int
    var masterWeightsBytes: Int
    var totalBytes: Int
    var fits: [DeviceFit]
    var recommendation: [String]
    var notes: [String]
    var memoryModel: EngineMemoryModel
}

/// JSON with snake_case keys and sorted, pretty output: stable for diffs and scripts.
public enum JSONOutput {
    public static func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value), let text = String(data: data, encoding: .utf8) else { return "{}" }
        return text
    }
}
