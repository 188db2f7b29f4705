import Foundation
public import Engine
public import GGUF
import Kernels
import SafeTensors
public import Tokenizer
import Imaging

/// How to load a model.
public struct ModelLoadOptions: Sendable, Equatable {
    /// Kernel worker threads.
    public var threads: Int
    /// For a Hugging Face directory: the type matrices are converted to at load time (`q8_0`, `q4_0`, `q4_K`,
    /// `f16`, `bf16`, `f32`); nil keeps each tensor's own float type. Not applicable to GGUF files.
    public var quantize: GGUFTensorType?
    /// The vision tower of a GGUF pair (llama.cpp's mmproj file, `--mmproj`). A Hugging Face directory of a
    /// vision-language model brings its own.
    public var mmproj: String?

    public init(threads: Int, quantize: GGUFTensorType? = nil, mmproj: String? = nil) {
        self.threads = threads
        self.quantize = quantize
        self.mmproj = mmproj
    }
}

/// A model ready to run, its tokenizer, and what loading did.
public struct LoadedModel: Sendable {
    public let model: any LanguageModel
    public let tokenizer: Tokenizer
    /// The GGUF the model runs from: the file itself, or the in-memory conversion of a Hugging Face directory.
    public let file: GGUFFile
    /// For a Hugging Face directory: bytes before and after conversion, per-type counts, fallbacks.
    public let conversion: HuggingFaceImport.Report?
    /// The vision tower and image processor of a vision-language model; nil for text models.
    public var vision: VisionSupport? = nil
}

/// Why a model could not be loaded; the description says what to do.
public enum ModelLoadError: Error, Sendable, CustomStringConvertible {
    case gguf(GGUFError)
    case engine(EngineError)
    case tokenizer(path: String, TokenizerError)
    case quantizeNeedsDirectory(path: String)
    /// The file or directory is not a model autoglm can plan or load.
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let message): return message
        case .gguf(let e): return e.description
        case .engine(let e): return e.description
        case .tokenizer(let path, let e): return "cannot build the tokenizer of \(path): \(e.description)"
        case .quantizeNeedsDirectory(let path):
            return "--quantize converts a Hugging Face (safetensors) directory at load time; \(path) is a GGUF file, already in its stored types. Drop --quantize, or quantize the file with llama-quantize."
        }
    }
}

/// The one entry point that turns a path into a running model: a GGUF file (mmap'd, weights in place) or a
/// Hugging Face model directory (config.json, *.safetensors, tokenizer.json), converted in memory to the same
/// GGUF layout `autoglm convert` writes, optionally quantized.
public enum ModelLoader {
    /// The types `quantize` (and `autoglm convert --type`) can write.
    public static var writableTypes: [GGUFTensorType] { WeightQuantization.writableTypes }

    public static func load(path: String, options: ModelLoadOptions) throws(ModelLoadError) -> LoadedModel {
        if SafeTensorsDirectory.isModelDirectory(path) {
            let (writer, report) = try huggingFaceGGUF(directory: path, type: options.quantize)
            let file: GGUFFile
            do {
                file = try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: path))
            } catch { throw .gguf(error) }
            var loaded = try build(file, path: path, threads: options.threads, conversion: report)
            if let projector = try huggingFaceMMProj(directory: path, type: options.quantize) {
                let mmproj: GGUFFile
                do { mmproj = try GGUFFile(mappedFile: try MappedFile(copying: projector.0.serialize(), name: path + " (vision)")) } catch { throw .gguf(error) }
                let processor = try imageProcessor(json: (path as NSString).appendingPathComponent("preprocessor_config.json"))
                loaded.vision = try vision(mmproj, processor: processor, loaded: loaded, threads: options.threads)
            } else if options.mmproj != nil {
                throw .invalid("\(path) is a text model; --mmproj goes with a GLM-4.1V text model")
            }
            return loaded
        }
        if options.quantize != nil { throw .quantizeNeedsDirectory(path: path) }
        let file: GGUFFile
        do { file = try GGUFFile(path: path) } catch { throw .gguf(error) }
        var loaded = try build(file, path: path, threads: options.threads, conversion: nil)
        if let projector = options.mmproj {
            let mmproj: GGUFFile
            do { mmproj = try GGUFFile(path: projector) } catch { throw .gguf(error) }
            loaded.vision = try vision(mmproj, processor: nil, loaded: loaded, threads: options.threads)
        }
        return loaded
    }

    /// GLM-4.1V's published image processor settings, for a GGUF pair (which carries mean and std only).
    public static let defaultImageMinPixels = 12_544
    public static let defaultImageMaxPixels = 9_633_792

    static func imageProcessor(json path: String) throws(ModelLoadError) -> GLM4VImageProcessor? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw .invalid("\(path) is not a JSON object")
        }
        do { return try GLM4VImageProcessor(json: json) } catch { throw .invalid("\(path): \(error.description)") }
    }

    static func vision(_ mmproj: GGUFFile, processor: GLM4VImageProcessor?, loaded: LoadedModel, threads: Int) throws(ModelLoadError) -> VisionSupport {
        guard let text = loaded.model as? GLM4Model, text.ropeSections != nil else {
            throw .invalid("the text model has no M-RoPE (rope.dimension_sections): it cannot take image tokens. Convert GLM-4.1V with llama.cpp's current converter or serve its Hugging Face directory")
        }
        let encoder: any VisionEncoder
        do { encoder = try GLM4VisionEncoder(file: mmproj, threads: threads) } catch { throw .engine(error) }
        guard encoder.configuration.outputWidth == text.configuration.embeddingWidth else {
            throw .invalid("the mmproj writes \(encoder.configuration.outputWidth)-wide embeddings but the text model is \(text.configuration.embeddingWidth) wide: they are not a pair")
        }
        var p = processor ?? GLM4VImageProcessor()
        if processor == nil {
            p.minPixels = defaultImageMinPixels
            p.maxPixels = defaultImageMaxPixels
            p.mean = encoder.configuration.imageMean
            p.std = encoder.configuration.imageStd
        }
        p.patchSize = encoder.configuration.patchSize
        p.mergeSize = encoder.configuration.mergeSize
        p.temporalPatchSize = encoder.configuration.temporalPatchSize
        do { return try VisionSupport(encoder: encoder, processor: p, tokenizer: loaded.tokenizer) } catch { throw .engine(error) }
    }

    /// The vision tower of a Hugging Face vision-language directory as llama.cpp's mmproj GGUF, or nil for a text model.
    public static func huggingFaceMMProj(directory path: String, type: GGUFTensorType?) throws(ModelLoadError) -> (GGUFWriter, HuggingFaceImport.Report)? {
        let directory: SafeTensorsDirectory
        let config: HuggingFaceConfig
        do {
            directory = try SafeTensorsDirectory(path: path)
            config = try HuggingFaceConfig(directory: directory)
        } catch { throw .engine(.safetensors(error)) }
        guard config.vision != nil else { return nil }
        var writer = GGUFWriter()
        let report: HuggingFaceImport.Report
        do { report = try HuggingFaceImport.convertVision(directory, config: config, type: type, into: &writer) } catch { throw .engine(error) }
        return (writer, report)
    }

    /// A Hugging Face directory as a complete GGUF (architecture, tensors in `type`, tokenizer): what `load`
    /// runs and what `autoglm convert` writes.
    public static func huggingFaceGGUF(directory path: String, type: GGUFTensorType?) throws(ModelLoadError) -> (GGUFWriter, HuggingFaceImport.Report) {
        let directory: SafeTensorsDirectory
        let config: HuggingFaceConfig
        do {
            directory = try SafeTensorsDirectory(path: path)
            config = try HuggingFaceConfig(directory: directory)
        } catch { throw .engine(.safetensors(error)) }
        var writer = GGUFWriter()
        let report: HuggingFaceImport.Report
        do { report = try HuggingFaceImport.convert(directory, config: config, type: type, into: &writer) } catch { throw .engine(error) }
        let vocabulary: TokenizerVocabulary
        do {
            vocabulary = try TokenizerVocabulary(huggingFaceDirectory: path, architecture: config.ggufArchitecture)
        } catch { throw .tokenizer(path: path, error) }
        for (key, value) in vocabulary.ggufMetadata { writer.set(key, value) }
        return (writer, report)
    }

    private static func build(_ file: GGUFFile, path: String, threads: Int, conversion: HuggingFaceImport.Report?) throws(ModelLoadError) -> LoadedModel {
        let model: any LanguageModel
        do { model = try ArchitectureRegistry.load(file, threads: threads) } catch { throw .engine(error) }
        let tokenizer: Tokenizer
        do { tokenizer = try Tokenizer(gguf: file) } catch { throw .tokenizer(path: path, error) }
        return LoadedModel(model: model, tokenizer: tokenizer, file: file, conversion: conversion)
    }
}
