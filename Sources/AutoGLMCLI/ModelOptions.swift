import ArgumentParser
import Engine
import Foundation
import GGUF
import InferenceCore
import Kernels
import Ops
import Runtime
import Tokenizer

/// Which model to load and how many threads to run it on (shared by generate, chat, perplexity).
struct ModelOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "A GGUF model file, or a Hugging Face model directory (config.json, *.safetensors, tokenizer.json) (default: the default model in the model directory).")
    var model: String?

    @Option(help: "For a Hugging Face directory: quantize the weights at load time to q8_0, q4_0 or q4_k (also f16, bf16, f32); default keeps the stored float type.")
    var quantize: String?

    @Option(name: .shortAndLong, help: "Worker threads for the kernels (default: the number of cores).")
    var threads: Int?

    @Option(help: "How the KV cache stores keys and values: f16 (default), bf16, q8_0 (about half of f16) or f32.")
    var kvType: String?

    var kvCacheType: KVCacheType {
        get throws { try Self.kvCacheType(kvType) }
    }

    /// The `--kv-type` value (shared with `serve`, where `models[].kv_type` is the fallback).
    static func kvCacheType(_ text: String?, fallback: String? = nil) throws -> KVCacheType {
        guard let name = text ?? fallback else { return .engineDefault }
        guard let type = KVCacheType(name: name) else {
            throw ValidationError("--kv-type must be one of f16, bf16, q8_0, f32 (got \(name)).")
        }
        return type
    }

    /// A path as given; a bare name ("smollm2-135m-instruct", a file stem) looked up in the model
    /// directory ($AUTOGLM_MODELS, default ~/.cache/autoglm/models) as `autoglm models list` shows it.
    var resolvedPath: String {
        let environment = ProcessInfo.processInfo.environment
        guard let model else { return ModelStore.defaultModelPath(environment: environment) }
        if model.contains("/") || model.hasSuffix(".gguf") { return model }
        return ModelStore.resolve(name: model, environment: environment) ?? model
    }

    var threadCount: Int { max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount) }

    var quantizeType: GGUFTensorType? {
        get throws { try Self.quantizeType(quantize) }
    }

    /// The `--quantize` value as a tensor type (shared with `serve`).
    static func quantizeType(_ text: String?) throws -> GGUFTensorType? {
        guard let text else { return nil }
        guard let type = GGUFTensorType(name: text), ModelLoader.writableTypes.contains(type) else {
            throw ValidationError("--quantize must be one of q8_0, q4_0, q4_k, f16, bf16, f32 (got \(text)).")
        }
        return type
    }

    func validate() throws {
        _ = try quantizeType
        _ = try kvCacheType
        if let threads, threads < 1 || threads > 1024 {
            throw ValidationError("--threads must be between 1 and 1024 (got \(threads)).")
        }
    }

    /// Opens the file (or converts the Hugging Face directory), builds the model and its tokenizer, or explains
    /// what is wrong.
    func load() throws -> (any LanguageModel, Tokenizer) {
        let path = resolvedPath
        do {
            let loaded = try ModelLoader.load(path: path, options: ModelLoadOptions(threads: threadCount, quantize: try quantizeType))
            if let report = loaded.conversion {
                printError("converted \(path): \(report.summary)")
                for note in report.notes { printError("note: \(note)") }
            }
            if let problem = try kvCacheType.problem(headDimension: loaded.model.configuration.headDimension) {
                throw CLIError(problem)
            }
            return (loaded.model, loaded.tokenizer)
        } catch let error as CLIError {
            throw error
        } catch ModelLoadError.gguf(let error) {
            if case .fileNotFound = error, let model, !model.contains("/"), !model.hasSuffix(".gguf") {
                let directory = ModelStore.directory(environment: ProcessInfo.processInfo.environment)
                throw CLIError("no model named '\(model)' in \(directory). `autoglm models list` shows the models there; pass a path to use another file.")
            }
            if case .fileNotFound = error, model == nil {
                throw CLIError("the default model is not installed at \(path). Fetch it with `scripts/setup-model.sh` (set AUTOGLM_MODELS to choose the directory), or pass --model PATH.")
            }
            throw CLIError(error.description)
        } catch let error as ModelLoadError {
            throw CLIError("cannot load \(path): \(error.description)")
        } catch {
            throw CLIError("cannot load \(path): \(error)")
        }
    }
}

/// Sampling flags, named as llama.cpp's and vLLM's users know them.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0: off).") var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (1: off).") var topP: Float = 0.95
    @Option(name: .customLong("min-p"), help: "Drop tokens below min-p times the best (0: off).") var minP: Float = 0.05
    @Option(name: .customLong("repeat-penalty"), help: "Repetition penalty (1: off).") var repeatPenalty: Float = 1
    @Option(name: .customLong("presence-penalty")) var presencePenalty: Float = 0
    @Option(name: .customLong("frequency-penalty")) var frequencyPenalty: Float = 0
    @Option(help: "Random seed; the same seed gives the same output.") var seed: UInt64?

    func validate() throws {
        guard temperature >= 0 && temperature <= 100 else { throw ValidationError("--temperature must be in 0...100 (got \(temperature)).") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1] (got \(topP)).") }
        guard minP >= 0 && minP < 1 else { throw ValidationError("--min-p must be in [0, 1) (got \(minP)).") }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 or more (got \(topK)).") }
        guard repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be positive (got \(repeatPenalty)).") }
    }

    var parameters: SamplingParameters {
        SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repeatPenalty,
                           presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, seed: seed)
    }
}

/// A user-facing failure: printed as "error: ..." with exit code 1, no stack trace.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes to standard error.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Peak resident memory of this process in bytes: VmHWM from /proc/self/status (Linux), which belongs
/// to this program's own address space (unlike rusage, which can carry a spawning parent's pages).
func peakResidentBytes() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let digits = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first
        return digits.flatMap { Int($0) }.map { $0 * 1024 }
    }
    return nil
}

/// The model's own chat template (GGUF `tokenizer.chat_template`), or ChatML when it has none or it
/// does not parse (said on standard error).
/// The CLI's view of `ChatPromptFormatter`: notes a template fallback once, wraps template errors.
struct ChatFormatter {
    let formatter: ChatPromptFormatter

    init(tokenizer: Tokenizer) {
        formatter = ChatPromptFormatter(tokenizer: tokenizer)
        if let reason = formatter.fallbackReason, tokenizer.chatTemplate != nil { printError("note: \(reason).") }
    }

    /// The conversation as prompt token ids, ending where the assistant's reply begins.
    func tokens(for messages: [ChatMessage]) throws -> [Int] {
        do {
            return try formatter.tokens(for: messages)
        } catch {
            throw CLIError("the chat template rejected the conversation: \(error)")
        }
    }
}
