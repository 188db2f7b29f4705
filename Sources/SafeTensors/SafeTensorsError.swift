/// Everything that can be wrong with a safetensors file or a Hugging Face model directory. Each case names the
/// file (and the tensor, where there is one) and says what to do.
public enum SafeTensorsError: Error, Equatable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    /// The 8-byte header length is missing, zero, or larger than the file.
    case badHeaderLength(path: String, length: UInt64, fileSize: Int)
    /// The header is not a JSON object of tensor entries (`reason` says where it breaks).
    case badHeader(path: String, reason: String)
    /// A tensor entry is malformed: missing or mistyped dtype, shape or data_offsets.
    case badTensorEntry(path: String, tensor: String, reason: String)
    case unsupportedDType(path: String, tensor: String, dtype: String)
    /// data_offsets outside the data section, or shape x dtype size different from the byte length.
    case badTensorExtent(path: String, tensor: String, reason: String)
    case overlappingTensors(path: String, first: String, second: String)
    /// A directory without config.json or without any *.safetensors file.
    case notAModelDirectory(path: String, reason: String)
    /// model.safetensors.index.json names a shard that is not there.
    case missingShard(index: String, shard: String, tensor: String)
    case missingTensor(directory: String, tensor: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], found: [Int])
    case badConfig(path: String, key: String, reason: String)
    case duplicateTensor(tensor: String, first: String, second: String)

    private static let redownload = "the download is incomplete or corrupt: download the model again (huggingface-cli download, or git lfs pull)"

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot read \(path): \(reason). Check the path and its permissions."
        case .badHeaderLength(let path, let length, let fileSize):
            return "\(path) is not a safetensors file: its header length field reads \(length) but the file has \(fileSize) bytes; \(Self.redownload)."
        case .badHeader(let path, let reason):
            return "\(path) has a corrupt safetensors header (\(reason)); \(Self.redownload)."
        case .badTensorEntry(let path, let tensor, let reason):
            return "tensor '\(tensor)' in \(path) has a malformed header entry (\(reason)); \(Self.redownload)."
        case .unsupportedDType(let path, let tensor, let dtype):
            return "tensor '\(tensor)' in \(path) has dtype \(dtype); autoglm reads F32, F16 and BF16 safetensors. Use the model's float checkpoint (not a GPTQ/AWQ/FP8 export), or a GGUF of it."
        case .badTensorExtent(let path, let tensor, let reason):
            return "tensor '\(tensor)' in \(path): \(reason); \(Self.redownload)."
        case .overlappingTensors(let path, let first, let second):
            return "tensors '\(first)' and '\(second)' in \(path) share bytes; \(Self.redownload)."
        case .notAModelDirectory(let path, let reason):
            return "\(path) is not a Hugging Face model directory: \(reason). Pass a directory with config.json and *.safetensors (as downloaded from the Hub), or a .gguf file."
        case .missingShard(let index, let shard, let tensor):
            return "\(index) puts tensor '\(tensor)' in shard \(shard), which is missing; download every shard of the model (huggingface-cli download REPO --include '*.safetensors')."
        case .missingTensor(let directory, let tensor):
            return "tensor '\(tensor)' is missing from the safetensors files in \(directory): the checkpoint is incomplete or is not the architecture config.json names. Download it again."
        case .shapeMismatch(let path, let tensor, let expected, let found):
            return "tensor '\(tensor)' in \(path) has shape \(found), but config.json implies \(expected): config.json and the weights disagree. Download the model again, or fix config.json."
        case .badConfig(let path, let key, let reason):
            return "\(path): '\(key)' \(reason). Fix config.json, or download the model again."
        case .duplicateTensor(let tensor, let first, let second):
            return "tensor '\(tensor)' appears in both \(first) and \(second): remove stray files from the model directory."
        }
    }
}
