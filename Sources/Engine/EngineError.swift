public import GGUF
public import SafeTensors

/// What can go wrong loading or running a model, each saying what to do.
public enum EngineError: Error, Sendable, CustomStringConvertible {
    case gguf(GGUFError)
    /// A Hugging Face model directory (safetensors, config.json) that cannot be read.
    case safetensors(SafeTensorsError)
    case unsupportedArchitecture(String, supported: [String])
    case missingTensor(String, architecture: String)
    case badTensorShape(String, expected: [Int], found: [Int])
    case unsupportedTensorType(String, GGUFTensorType)
    case badHyperparameter(key: String, value: String, reason: String)
    case contextOverflow(needed: Int, contextLength: Int)
    case outOfKVBlocks(needed: Int, free: Int)
    case invalidToken(Int, vocabularySize: Int)
    case emptyInput

    public var description: String {
        switch self {
        case .gguf(let e): return e.description
        case .safetensors(let e): return e.description
        case .unsupportedArchitecture(let name, let supported):
            return "model architecture '\(name)' is not supported; this build runs \(supported.joined(separator: ", "))."
        case .missingTensor(let name, let arch):
            return "tensor '\(name)' is missing: the file does not look like a complete \(arch) model. Re-convert or download it again."
        case .badTensorShape(let name, let expected, let found):
            return "tensor '\(name)' has shape \(found), expected \(expected) from the model's hyperparameters: the file is inconsistent."
        case .unsupportedTensorType(let name, let type):
            return "tensor '\(name)' has type \(type), which cannot be used as model weights."
        case .badHyperparameter(let key, let value, let reason):
            return "metadata '\(key)' = \(value) is not usable: \(reason)."
        case .contextOverflow(let needed, let contextLength):
            return "the sequence needs \(needed) positions but the context holds \(contextLength). Shorten the prompt, lower max tokens, or raise the context length."
        case .outOfKVBlocks(let needed, let free):
            return "the KV cache is full: \(needed) more blocks needed, \(free) free. Raise the KV memory budget or run fewer sequences."
        case .invalidToken(let id, let size):
            return "token id \(id) is outside the vocabulary (0..<\(size))."
        case .emptyInput:
            return "nothing to process: the input has no tokens."
        }
    }
}
