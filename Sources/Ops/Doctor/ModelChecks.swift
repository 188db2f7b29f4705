import Foundation
import GGUF
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What this build of the engine can run.
public enum SupportedModels {
    /// `general.architecture` values the engine implements. Must equal the Engine's ArchitectureRegistry
    /// (a test in OpsTests checks it; Ops does not import the engine).
    public static let architectures: Set<String> = ["llama", "glm4", "chatglm"]
}

/// Model checks: file, permissions, GGUF, architecture and types, checksum, and whether it fits.
struct ModelChecks {
    let probe: any SystemProbe
    let environment: [String: String]

    struct Context {
        var memory: MemInfo?
        var cpu: CPUInfo?
        var gpu: GPUState
    }

    func check(_ model: AutoGLMConfig.Model, index: Int, context: Context) -> [DoctorFinding] {
        let id = "model.\(model.name)"
        let label = "model \(model.name)"
        if let url = model.url {
            var findings = [DoctorFinding("\(id).upstream", "\(label): upstream", .ok, found: "\(url) (doctor does not contact upstreams)")]
            if model.device == .gpu {
                if let presetName = model.preset, let preset = ModelPresets.named(presetName) {
                    let precision = model.precision.flatMap(Precision.init(name:)) ?? .bf16
                    findings.append(gpuFit(model, shape: preset, weights: .precision(precision), precision: precision, id: id, label: label, gpu: context.gpu))
                } else {
                    findings.append(DoctorFinding("\(id).fits", "\(label): fits", .warn, found: "no preset: cannot size this model",
                                                  fix: "set models[\(index)].preset to one of \(ModelPresets.names.joined(separator: ", "))"))
                }
            }
            return findings
        }
        guard let path = model.path else { return [] }
        var findings: [DoctorFinding] = []

        // 1. The file: exists, is a file, is readable.
        let status = probe.fileStatus(path)
        let openError = probe.openForReading(path)
        if status == nil, openError != EACCES, openError != EPERM {
            findings.append(DoctorFinding("\(id).file", "\(label): file", .fail, found: "\(path) does not exist", fix: missingFix(model, index: index)))
            return findings
        }
        if let status, status.isDirectory {
            findings.append(DoctorFinding("\(id).file", "\(label): file", .fail, found: "\(path) is a directory",
                                          fix: "point models[\(index)].path at the .gguf file inside it"))
            return findings
        }
        if openError == EACCES || openError == EPERM {
            findings.append(permissionFinding(path: path, status: status, id: id, label: label))
            return findings
        }
        if openError != 0 {
            findings.append(DoctorFinding("\(id).file", "\(label): file", .fail, found: "cannot open \(path): \(String(cString: strerror(openError))) (errno \(openError))"))
            return findings
        }
        if let status {
            let owner = probe.userName(uid: status.ownerUID) ?? "uid \(status.ownerUID)"
            findings.append(DoctorFinding("\(id).file", "\(label): file", .ok,
                                          found: "\(path): \(ByteFormat.gb(status.sizeBytes)), readable (owner \(owner), mode \(status.symbolicMode))"))
        }

        // 2. GGUF: parses, architecture and tensor types supported.
        let file: GGUFFile
        switch probe.loadGGUF(path) {
        case .failure(let error):
            findings.append(DoctorFinding("\(id).gguf", "\(label): GGUF", .fail, found: error.description, fix: ggufFix(error, model: model)))
            return findings
        case .success(let f):
            file = f
        }
        let shape: ModelShape
        do { shape = try ModelShape(gguf: file) } catch {
            findings.append(DoctorFinding("\(id).gguf", "\(label): GGUF", .fail, found: error.description,
                                          fix: "re-convert the model with a current llama.cpp convert_hf_to_gguf.py"))
            return findings
        }
        findings.append(supportFinding(file: file, shape: shape, id: id, label: label))
        if let mmproj = model.mmproj {
            findings.append(mmprojFinding(mmproj, text: file, index: index, id: id, label: label))
        }

        // 3. Checksum, when configured.
        if let expected = model.sha256 {
            if let actual = probe.sha256(path) {
                findings.append(actual == expected
                    ? DoctorFinding("\(id).sha256", "\(label): SHA-256", .ok, found: "matches \(expected.prefix(16))...")
                    : DoctorFinding("\(id).sha256", "\(label): SHA-256", .fail, found: "expected \(expected), file has \(actual)",
                                    fix: "the file is corrupt or another version: download it again (\(pullHint(model))), or correct models[\(index)].sha256"))
            } else {
                findings.append(DoctorFinding("\(id).sha256", "\(label): SHA-256", .fail, found: "could not read the file to hash it"))
            }
        }

        // 4. Context, threads, and memory.
        if let requested = model.contextLength, shape.maxContext > 0, requested > shape.maxContext {
            findings.append(DoctorFinding("\(id).context", "\(label): context", .warn,
                                          found: "context_length \(requested) exceeds the trained context \(shape.maxContext)",
                                          fix: "set models[\(index)].context_length <= \(shape.maxContext); beyond it quality degrades"))
        }
        if let threads = model.threads, let cpu = context.cpu, threads > cpu.logicalCores {
            findings.append(DoctorFinding("\(id).threads", "\(label): threads", .warn,
                                          found: "threads \(threads) > \(cpu.logicalCores) logical cores",
                                          fix: "set models[\(index)].threads to \(cpu.physicalCores) (physical cores); more threads than cores slows decoding"))
        }
        let weights = WeightSource.file(bytes: file.fileSize, label: PlanSubject.ggufLabel(file))
        if model.device == .gpu {
            findings.append(gpuFit(model, shape: shape, weights: weights, precision: nil, id: id, label: label, gpu: context.gpu))
        } else {
            findings.append(contentsOf: ramFit(model, index: index, shape: shape, weights: weights, id: id, label: label, memory: context.memory))
        }
        return findings
    }

    // MARK: pieces

    /// A vision tower file (models[].mmproj) checked like a model file: present, readable, a GGUF, a GLM-4.1V
    /// projector, and a pair with the text model (its width, and M-RoPE in the text model).
    func mmprojFinding(_ path: String, text: GGUFFile, index: Int, id: String, label: String) -> DoctorFinding {
        let check = "\(id).mmproj", title = "\(label): mmproj"
        let status = probe.fileStatus(path)
        let openError = probe.openForReading(path)
        if status == nil, openError != EACCES, openError != EPERM {
            return DoctorFinding(check, title, .fail, found: "\(path) does not exist",
                                 fix: "download the model's mmproj GGUF (llama.cpp's vision projector) or correct models[\(index)].mmproj")
        }
        if let status, status.isDirectory {
            return DoctorFinding(check, title, .fail, found: "\(path) is a directory", fix: "point models[\(index)].mmproj at the mmproj .gguf file")
        }
        if openError != 0 {
            return DoctorFinding(check, title, .fail, found: "cannot open \(path): \(String(cString: strerror(openError))) (errno \(openError))",
                                 fix: "make the file readable by the user autoglm runs as")
        }
        let file: GGUFFile
        switch probe.loadGGUF(path) {
        case .failure(let error): return DoctorFinding(check, title, .fail, found: error.description, fix: "download the mmproj file again")
        case .success(let f): file = f
        }
        let projector = (try? file.string("clip.projector_type")) ?? "none"
        guard projector == "glm4v" else {
            return DoctorFinding(check, title, .fail, found: "\(path) has clip.projector_type '\(projector)'",
                                 fix: "autoglm runs GLM-4.1V projectors (glm4v): use AutoGLM-Phone-9B's or GLM-4.1V's mmproj file")
        }
        let architecture = (try? text.string("general.architecture")) ?? "?"
        let width = try? text.int("\(architecture).embedding_length")
        let projection = try? file.int("clip.vision.projection_dim")
        if let width, let projection, width != projection {
            return DoctorFinding(check, title, .fail, found: "the mmproj projects to \(projection) wide embeddings, the text model is \(width) wide",
                                 fix: "use the mmproj file made with this text model")
        }
        guard text.value("\(architecture).rope.dimension_sections") != nil else {
            return DoctorFinding(check, title, .fail, found: "the text model has no rope.dimension_sections (M-RoPE): it cannot take image tokens",
                                 fix: "re-convert GLM-4.1V with a current llama.cpp convert_hf_to_gguf.py, or serve its Hugging Face directory")
        }
        let size = status.map { ByteFormat.gb($0.sizeBytes) } ?? "?"
        return DoctorFinding(check, title, .ok, found: "\(path): \(size), glm4v projector, \((try? file.int("clip.vision.block_count")) ?? 0) blocks, pairs with the text model")
    }

    func missingFix(_ model: AutoGLMConfig.Model, index: Int) -> String {
        let defaultPath = ModelStore.defaultModelPath(environment: environment)
        if model.path == defaultPath || ModelStore.defaultModelAliases.contains(model.name.lowercased()) {
            return "fetch it: `autoglm models pull \(ModelStore.defaultModelName)` (or scripts/setup-model.sh)"
        }
        return "check models[\(index)].path (or --model); `autoglm models list` shows the models in \(ModelStore.directory(environment: environment))"
    }

    func pullHint(_ model: AutoGLMConfig.Model) -> String {
        ModelStore.defaultModelAliases.contains(model.name.lowercased()) || model.path == ModelStore.defaultModelPath(environment: environment)
            ? "`autoglm models pull \(ModelStore.defaultModelName)`" : "`autoglm models pull URL --sha256 ...`"
    }

    /// Permission denied: name the owner, the mode and who we run as, or the directory that blocks the path.
    func permissionFinding(path: String, status: FileStatus?, id: String, label: String) -> DoctorFinding {
        let me = probe.effectiveUserID
        let meName = probe.userName(uid: me).map { "\($0) (uid \(me))" } ?? "uid \(me)"
        if let status, !Self.canRead(status, uid: me) || !Self.blockingDirectoryExists(path, probe: probe, uid: me) {
            let owner = probe.userName(uid: status.ownerUID)
            let ownerText = owner.map { "\($0) (uid \(status.ownerUID))" } ?? "uid \(status.ownerUID)"
            let fix: String
            if status.ownerUID == me {
                fix = "`chmod u+r \(path)`"
            } else {
                fix = "`sudo chmod a+r \(path)` (or `sudo chown \(probe.userName(uid: me) ?? String(me)) \(path)`), or run autoglm as \(owner ?? "uid \(status.ownerUID)")"
            }
            return DoctorFinding("\(id).file", "\(label): file", .fail,
                                 found: "\(path): permission denied: owner \(ownerText), mode \(status.symbolicMode) (\(status.octalMode)), running as \(meName)",
                                 fix: fix)
        }
        // The file's bits allow reading: a directory on the way is not searchable.
        var dir = (path as NSString).deletingLastPathComponent
        while !dir.isEmpty, dir != "/" {
            if let s = probe.fileStatus(dir), !Self.canSearch(s, uid: me) {
                let owner = probe.userName(uid: s.ownerUID) ?? "uid \(s.ownerUID)"
                return DoctorFinding("\(id).file", "\(label): file", .fail,
                                     found: "\(path): permission denied: directory \(dir) (owner \(owner), mode \(s.symbolicMode)) is not searchable by \(meName)",
                                     fix: "`sudo chmod o+x \(dir)`, or move the model to a directory \(meName) can read")
            }
            dir = (dir as NSString).deletingLastPathComponent
        }
        return DoctorFinding("\(id).file", "\(label): file", .fail, found: "\(path): permission denied for \(meName)",
                             fix: "check the permissions of the file and of every directory above it (`namei -l \(path)`)")
    }

    static func canRead(_ s: FileStatus, uid: UInt32) -> Bool {
        if uid == 0 { return true }
        return s.ownerUID == uid ? s.mode & 0o400 != 0 : s.mode & 0o044 != 0
    }

    static func canSearch(_ s: FileStatus, uid: UInt32) -> Bool {
        if uid == 0 { return true }
        return s.ownerUID == uid ? s.mode & 0o100 != 0 : s.mode & 0o011 != 0
    }

    static func blockingDirectoryExists(_ path: String, probe: any SystemProbe, uid: UInt32) -> Bool {
        var dir = (path as NSString).deletingLastPathComponent
        while !dir.isEmpty, dir != "/" {
            if let s = probe.fileStatus(dir), !canSearch(s, uid: uid) { return true }
            dir = (dir as NSString).deletingLastPathComponent
        }
        return false
    }

    func ggufFix(_ error: GGUFError, model: AutoGLMConfig.Model) -> String {
        switch error {
        case .truncated, .tensorOutOfBounds:
            return "the file is incomplete (an interrupted download?): download it again (\(pullHint(model)))"
        case .notAGGUFFile:
            return "convert the model to GGUF with llama.cpp's convert_hf_to_gguf.py, or point the path at the .gguf file"
        case .unsupportedVersion:
            return "re-convert with a current llama.cpp converter (GGUF v3)"
        case .unknownTensorType:
            return "re-quantize to a supported type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)"
        case .permissionDenied:
            return "make the file readable (chmod a+r)"
        default:
            return "the file is corrupt: download or convert it again"
        }
    }

    func supportFinding(file: GGUFFile, shape: ModelShape, id: String, label: String) -> DoctorFinding {
        var types: [GGUFTensorType: Int] = [:]
        for t in file.tensors { types[t.type, default: 0] += 1 }
        let typeList = types.sorted { $0.value > $1.value }.map { "\($0.key) x\($0.value)" }.joined(separator: ", ")
        let found = "\(shape.architecture), \(shape.layerCount) layers, \(String(format: "%.3f", Double(shape.parameterCount) / 1e9)) B parameters, context \(shape.maxContext); tensors \(typeList)"
        if !SupportedModels.architectures.contains(shape.architecture) {
            return DoctorFinding("\(id).gguf", "\(label): GGUF", .fail, found: found,
                                 fix: "architecture '\(shape.architecture)' is not supported by this build (supported: \(SupportedModels.architectures.sorted().joined(separator: ", "))); serve it through an upstream (models[].url) instead")
        }
        let unsupported = types.keys.filter { !$0.isWeightType }
        if !unsupported.isEmpty {
            return DoctorFinding("\(id).gguf", "\(label): GGUF", .fail, found: found,
                                 fix: "tensor types \(unsupported.map(\.description).joined(separator: ", ")) are activation formats, not weights: re-quantize the model")
        }
        if file.value("tokenizer.chat_template") == nil {
            return DoctorFinding("\(id).gguf", "\(label): GGUF", .warn, found: found + "; no tokenizer.chat_template",
                                 fix: "chat requests need a template: re-convert with the model's tokenizer_config.json so the GGUF carries it")
        }
        return DoctorFinding("\(id).gguf", "\(label): GGUF", .ok, found: found)
    }

    /// The CPU engine's plan for this model against the RAM available now.
    func ramFit(_ model: AutoGLMConfig.Model, index: Int, shape: ModelShape, weights: WeightSource, id: String, label: String,
                memory: MemInfo?) -> [DoctorFinding] {
        let context = model.contextLength ?? (shape.maxContext > 0 ? shape.maxContext : 4096)
        // The engine's KV element type for this model (models[].kv_type, f16 by default).
        let kv = KVPrecision(name: model.kvType) ?? .f16
        var request = PlanRequest(shape: shape, weights: weights, context: context, sequences: model.maxSequences, kvPrecision: kv)
        var findings: [DoctorFinding] = []
        var kvNote = ""
        if let budget = model.kvMemoryBudgetBytes {
            let perSequence = Double(context) * shape.kvBytesPerToken(kv)
            let sequencesInBudget = Int(Double(budget) / perSequence)
            if sequencesInBudget < 1 {
                let tokens = Int(Double(budget) / shape.kvBytesPerToken(kv))
                findings.append(DoctorFinding("\(id).kv", "\(label): KV budget", .fail,
                                              found: "kv_memory_budget \(ByteFormat.gib(budget)) holds \(tokens) tokens, less than one sequence of \(context)",
                                              fix: "raise models[\(index)].kv_memory_budget to at least \(ByteFormat.gib(Int(perSequence.rounded(.up)))) or lower context_length to \(tokens)"))
            } else if sequencesInBudget < model.maxSequences {
                findings.append(DoctorFinding("\(id).kv", "\(label): KV budget", .warn,
                                              found: "kv_memory_budget \(ByteFormat.gib(budget)) holds \(sequencesInBudget) full-length sequences; max_sequences is \(model.maxSequences)",
                                              fix: "fine if prompts are short; for \(model.maxSequences) full-length sequences set kv_memory_budget to \(ByteFormat.gib(Int((perSequence * Double(model.maxSequences)).rounded(.up))))"))
            }
            // The arena is the budget: plan with the sequences it holds (KV = budget).
            request.sequences = max(1, min(model.maxSequences, sequencesInBudget))
            kvNote = " (KV budget \(ByteFormat.gib(budget)))"
        }
        guard let memory else {
            findings.append(DoctorFinding("\(id).fits", "\(label): fits RAM", .warn, found: "RAM unknown", fix: nil))
            return findings
        }
        let host = Device.host(totalBytes: memory.totalBytes, availableBytes: memory.availableBytes)
        let b = MemoryPlanner.breakdown(request)
        var total = b.totalBytes
        if let budget = model.kvMemoryBudgetBytes { total += budget - b.kvCacheBytes }
        let what = "\(context) tokens x \(request.sequences) seq\(kvNote)"
        let found = "needs \(ByteFormat.gib(total)) (weights \(ByteFormat.gib(b.weightsBytes)) + KV \(ByteFormat.gib(total - b.weightsBytes - b.activationsBytes - b.overheadBytes)) + work \(ByteFormat.gib(b.activationsBytes + b.overheadBytes))) for \(what); \(ByteFormat.gib(memory.availableBytes)) available"
        if total > memory.availableBytes {
            var fixes: [String] = []
            let maxContext = MemoryPlanner.maxContext(request, on: host)
            if maxContext > 0 { fixes.append("set models[\(index)].context_length to \(maxContext) or less") }
            let maxSequences = MemoryPlanner.maxSequences(request, on: host)
            if maxSequences > 0, maxSequences < request.sequences { fixes.append("set max_sequences to \(maxSequences)") }
            fixes.append("use a smaller quantization, or free memory (`autoglm plan \(model.path ?? "")` shows the options)")
            findings.append(DoctorFinding("\(id).fits", "\(label): fits RAM", .fail, found: found, fix: fixes.joined(separator: "; ")))
        } else if Double(total) > 0.8 * Double(memory.availableBytes) {
            findings.append(DoctorFinding("\(id).fits", "\(label): fits RAM", .warn, found: found,
                                          fix: "over 80% of available RAM: other processes or the page cache may push it into swap or the OOM killer"))
        } else {
            findings.append(DoctorFinding("\(id).fits", "\(label): fits RAM", .ok, found: found))
        }
        return findings
    }

    /// A GPU model's plan against the GPU with the most usable memory (vLLM's 0.9 of total, at most what is free).
    func gpuFit(_ model: AutoGLMConfig.Model, shape: ModelShape, weights: WeightSource, precision: Precision?, id: String,
                label: String, gpu: GPUState) -> DoctorFinding {
        let check = "\(label): fits GPU"
        let context = model.contextLength ?? (shape.maxContext > 0 ? shape.maxContext : 4096)
        let engine = EngineMemoryModel.cpuEngine
        let request = PlanRequest(shape: shape, weights: weights, context: context, sequences: model.maxSequences,
                                  kvPrecision: .bf16, model: engine)
        guard !gpu.gpus.isEmpty else {
            let need = MemoryPlanner.requiredBytes(request, on: .gpu(gib: 80))
            return DoctorFinding("\(id).fits", check, .fail, found: "needs \(ByteFormat.gib(need)) of GPU memory; no GPU found",
                                 fix: "run it on a GPU host (`autoglm plan \(shape.name) --context \(context) --sequences \(model.maxSequences)` lists GPU sizes), or serve a GGUF on the CPU engine")
        }
        let devices = gpu.gpus.map { g -> Device in
            let total = g.memoryTotalMiB << 20
            let usable = min(Int(Double(total) * engine.gpuMemoryUtilization), g.memoryFreeMiB << 20)
            return Device(name: "GPU \(g.index) (\(g.name))", kind: .gpu, capacityBytes: total, usableBytes: usable)
        }
        let best = devices.max { $0.usableBytes < $1.usableBytes }!
        let bestGPU = gpu.gpus[devices.firstIndex(of: best)!]
        let b = MemoryPlanner.breakdown(request)
        let required = MemoryPlanner.requiredBytes(request, on: best)
        let found = "needs \(ByteFormat.gib(required)) (weights \(ByteFormat.gib(b.weightsBytes)) + KV \(ByteFormat.gib(b.kvCacheBytes)) + work and CUDA context) for \(context) tokens x \(model.maxSequences) seq; \(best.name) has \(ByteFormat.gib(best.usableBytes)) usable"
        if precision == .bf16, let cc = bestGPU.computeCapability.flatMap(DottedVersion.init), cc < DottedVersion("8.0")! {
            return DoctorFinding("\(id).fits", check, .fail, found: found + "; BF16 on compute capability \(cc)",
                                 fix: "BF16 needs compute capability 8.0+: set precision fp16 (vLLM `--dtype half`) or use an Ampere or newer GPU")
        }
        if required <= best.usableBytes {
            return DoctorFinding("\(id).fits", check, .ok, found: found)
        }
        var fixes: [String] = []
        let maxContext = MemoryPlanner.maxContext(request, on: best)
        if maxContext > 0 { fixes.append("lower context_length to \(maxContext) (vLLM --max-model-len)") }
        if case .precision(let p) = weights, let smaller = MemoryPlanner.smallerPrecisionThatFits(request, current: p, usable: best.usableBytes - engine.gpuRuntimeOverheadBytes) {
            fixes.append("quantize to \(smaller.0.rawValue) (needs \(ByteFormat.gib(smaller.1 + engine.gpuRuntimeOverheadBytes)))")
        }
        let totalUsable = devices.reduce(0) { $0 + $1.usableBytes }
        if devices.count > 1, required <= totalUsable { fixes.append("shard across the \(devices.count) GPUs (vLLM --tensor-parallel-size \(devices.count))") }
        fixes.append("or use a GPU with at least \(ByteFormat.gib(Int(Double(required) / engine.gpuMemoryUtilization))) of memory")
        return DoctorFinding("\(id).fits", check, .fail, found: found, fix: fixes.joined(separator: "; "))
    }
}
