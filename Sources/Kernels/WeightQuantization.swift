import CKernels
public import GGUF

/// The weight formats autoglm can write (`convert --type`, load-time `--quantize`).
public enum WeightQuantization {
    public static let writableTypes: [GGUFTensorType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_K]

    /// `values` (a multiple of the type's block size) in `type`'s layout, as ggml's reference quantizers write
    /// them; nil when the type cannot be written or the count is not a whole number of blocks.
    public static func quantize(_ values: [Float], to type: GGUFTensorType) -> [UInt8]? {
        guard writableTypes.contains(type), values.count % type.blockSize == 0 else { return nil }
        var out = [UInt8](repeating: 0, count: type.byteCount(elements: values.count))
        guard !values.isEmpty else { return out }
        let status = values.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBytes { dst in
                ag_quantize_weights(Int32(type.rawValue), src.baseAddress!, dst.baseAddress!, Int64(values.count))
            }
        }
        return status == 0 ? out : nil
    }
}
