public import Engine
import Foundation
import GGUF
public import Kernels
import Ops
public import Serving
public import Tokenizer

/// How one model is served by autoglm's own engine: the values `serve` resolved from its flags and
/// the configuration file (the CLI parses; this decides).
public struct LocalServingSettings: Sendable, Equatable {
    /// Tokens of context per sequence; nil (or more than the model has): the model's.
    public var contextLength: Int?
    public var maxSequences: Int
    public var maxBatchTokens: Int
    public var maxQueue: Int
    public var kvType: KVCacheType
    /// Bytes for the KV cache; nil: context x sequences, at most 1 GiB.
    public var kvMemoryBytes: Int?
    public var prefixCaching: Bool

    public init(contextLength: Int? = nil, maxSequences: Int = 8, maxBatchTokens: Int = 512, maxQueue: Int = 256,
                kvType: KVCacheType = .engineDefault, kvMemoryBytes: Int? = nil, prefixCaching: Bool = true) {
        self.contextLength = contextLength
        self.maxSequences = maxSequences
        self.maxBatchTokens = maxBatchTokens
        self.maxQueue = maxQueue
        self.kvType = kvType
        self.kvMemoryBytes = kvMemoryBytes
        self.prefixCaching = prefixCaching
    }

    /// Default KV budget when none is given: every sequence at full context, capped.
    public static let defaultKVBudgetCap = 1 << 30

    /// The context a model of `modelContext` tokens is served with.
    public func servedContext(modelContext: Int) -> Int { min(contextLength ?? modelContext, modelContext) }

    /// Tokens the KV cache holds for a model whose keys and values take `bytesPerToken`: the budget
    /// divided by it, but never under one sequence's worth of a short context (256 tokens or the
    /// context, whichever is less), so that a tiny budget still serves something.
    public func cacheTokens(context: Int, bytesPerToken: Int) -> Int {
        let budget = kvMemoryBytes ?? min(context * maxSequences * bytesPerToken, Self.defaultKVBudgetCap)
        return max(min(context, 256), budget / max(1, bytesPerToken))
    }
}

extension LocalBackend {
    /// The engine loop, scheduler and KV cache for a loaded model, sized by `settings`.
    public convenience init(model: any LanguageModel, tokenizer: Tokenizer, settings: LocalServingSettings,
                            observer: (any SchedulerObserver)? = nil, vision: VisionSupport? = nil) {
        let context = settings.servedContext(modelContext: model.configuration.contextLength)
        let bytesPerToken = PagedKVCache.bytesPerToken(model.configuration, elementType: settings.kvType)
        let scheduler = Scheduler(
            model: model, tokenizer: tokenizer,
            configuration: SchedulerConfiguration(
                maxSequences: settings.maxSequences, maxBatchTokens: settings.maxBatchTokens, maxQueue: settings.maxQueue,
                cacheTokens: settings.cacheTokens(context: context, bytesPerToken: bytesPerToken),
                prefixCaching: settings.prefixCaching, kvType: settings.kvType),
            contextLength: context, observer: observer)
        self.init(scheduler: scheduler, vision: vision)
    }
}

/// What a local model will take once loaded, planned from its file's header before any weight is read.
public struct LocalModelPlan: Sendable, Equatable {
    /// Weights (the file, mapped), KV cache, activations and overhead.
    public var bytes: Int
    /// The context it will be served with.
    public var context: Int
}

extension LocalServingSettings {
    /// Plans `path` (a GGUF file or a Hugging Face directory) served with these settings. Reads the
    /// header only; a missing or corrupt file fails here, at start, not at the first request.
    public func plan(path: String) throws(ModelLoadError) -> LocalModelPlan {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .gguf(.fileNotFound(path: path))
        }
        let shape: ModelShape
        let weightBytes: Int
        if isDirectory.boolValue {
            guard let data = FileManager.default.contents(atPath: path + "/config.json"),
                  let parsed = try? ModelShape(huggingFaceConfig: data, path: path) else {
                throw .invalid("\(path) is a directory without a readable config.json: not a Hugging Face model directory")
            }
            shape = parsed
            let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            weightBytes = files.filter { $0.hasSuffix(".safetensors") }.reduce(0) { sum, name in
                sum + ((try? FileManager.default.attributesOfItem(atPath: path + "/" + name)[.size] as? Int) ?? 0)
            }
        } else {
            let file: GGUFFile
            do {
                file = try GGUFFile(path: path)
            } catch {
                throw .gguf(error)
            }
            do {
                shape = try ModelShape(gguf: file)
            } catch {
                throw .invalid("\(path): \(error)")
            }
            weightBytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        }
        let context = servedContext(modelContext: shape.maxContext)
        let bytesPerToken = Int(shape.kvBytesPerToken(KVPrecision(rawValue: kvType.rawValue) ?? .f16))
        let kvBytes = cacheTokens(context: context, bytesPerToken: bytesPerToken) * bytesPerToken
        let rest = MemoryPlanner.breakdown(PlanRequest(shape: shape, weights: .file(bytes: weightBytes, label: "file"),
                                                       context: context, sequences: maxSequences))
        return LocalModelPlan(bytes: weightBytes + kvBytes + rest.activationsBytes + rest.overheadBytes, context: context)
    }
}
