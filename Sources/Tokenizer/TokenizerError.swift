import GGUF

/// Why a tokenizer could not be built from a model's metadata. Each case names what was found and what to do.
///
/// Encoding and decoding never throw: every string and every id has an answer.
public enum TokenizerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `tokenizer.ggml.model` names a tokenizer family autoglm does not implement.
    case unsupportedModel(String)
    /// A metadata key the tokenizer needs is absent.
    case missingKey(String)
    /// A metadata key has the wrong type (for example a string where an array is expected).
    case wrongType(key: String, expected: String, found: String)
    /// A per-token array does not have one entry per token.
    case inconsistentArrays(key: String, count: Int, tokenCount: Int)
    /// The vocabulary has no tokens at all.
    case emptyVocabulary
    /// A Hugging Face tokenizer.json / tokenizer_config.json that cannot be used (`reason` says why and what to do).
    case huggingFace(path: String, reason: String)

    public var description: String {
        switch self {
        case .unsupportedModel(let name):
            return "tokenizer.ggml.model is '\(name)', which autoglm does not support: it reads 'gpt2' (byte-level BPE) and 'llama' (SentencePiece BPE). Use a GGUF of a Llama-, GLM-4-, Qwen- or SmolLM-family model."
        case .missingKey(let key):
            return "the GGUF file has no '\(key)', which the tokenizer needs: the file is incomplete or was converted without its tokenizer. Re-convert it with a current llama.cpp converter."
        case .wrongType(let key, let expected, let found):
            return "metadata key '\(key)' should be \(expected) but is \(found): the file is corrupt or from an incompatible converter."
        case .inconsistentArrays(let key, let count, let tokenCount):
            return "'\(key)' has \(count) entries but the vocabulary has \(tokenCount) tokens: the file is corrupt. Re-convert or download it again."
        case .emptyVocabulary:
            return "tokenizer.ggml.tokens is empty: the model has no vocabulary. Re-convert the model with its tokenizer."
        case .huggingFace(let path, let reason):
            return "\(path): \(reason)"
        }
    }

    init(_ error: GGUFError) {
        switch error {
        case .missingKey(let key): self = .missingKey(key)
        case .wrongValueType(let key, let expected, let found): self = .wrongType(key: key, expected: expected, found: found)
        default: self = .wrongType(key: "tokenizer.*", expected: "readable metadata", found: error.description)
        }
    }
}
