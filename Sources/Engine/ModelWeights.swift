public import GGUF
public import Kernels

/// Typed access to a GGUF file's tensors with shape checks, for the architecture files.
public struct WeightLoader {
    public let file: GGUFFile
    public let architecture: String

    public init(file: GGUFFile, architecture: String) {
        self.file = file
        self.architecture = architecture
    }

    public func has(_ name: String) -> Bool { file.tensorInfo(named: name) != nil }

    /// A matrix mapping `columns` inputs to `rows` outputs (GGUF ne = [columns, rows]), packed for the
    /// batched kernels where the CPU has them (`packed: false` for a table read by rows: embeddings).
    public func matrix(_ name: String, columns: Int, rows: Int, packed: Bool = true) throws(EngineError) -> WeightMatrix {
        guard let info = file.tensorInfo(named: name) else { throw .missingTensor(name, architecture: architecture) }
        guard info.dimensions.count <= 2, info.rowLength == columns, info.rowCount == rows else {
            throw .badTensorShape(name, expected: [columns, rows], found: info.dimensions)
        }
        guard info.type.isWeightType else { throw .unsupportedTensorType(name, info.type) }
        let matrix = WeightMatrix(file: file, tensor: info)
        return packed ? matrix.packedForBatching() : matrix
    }

    /// A vector of `count` values (norm weights, biases) as float32.
    public func vector(_ name: String, count: Int) throws(EngineError) -> FloatBuffer {
        guard let info = file.tensorInfo(named: name) else { throw .missingTensor(name, architecture: architecture) }
        guard info.elementCount == count else { throw .badTensorShape(name, expected: [count], found: info.dimensions) }
        guard info.type.isWeightType else { throw .unsupportedTensorType(name, info.type) }
        return FloatBuffer(WeightMatrix(file: file, tensor: info).dequantized())
    }
}
