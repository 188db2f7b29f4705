import CKernels
import GGUF
@testable import Kernels
import TestSupport
import Testing

/// Packing a tensor in slices of whole 16-row groups on several threads gives the bytes of packing it at once.
@Suite("Parallel weight packing")
struct ParallelPackTests {
    @Test("sliced packing equals whole packing, tail group included", arguments: [
        GGUFTensorType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K,
    ])
    func slicedEqualsWhole(type: GGUFTensorType) {
        let t = Int32(type.rawValue)
        guard ag_packed_kind(t) >= 0 else { return }  // no packed layout on this CPU path
        let rows = 16 * 37 + 5, columns = 512
        let rowBytes = Int(ag_row_bytes(t, Int64(columns)))
        var random = SeededRandom(seed: UInt64(type.rawValue))
        let source = (0 ..< rows * rowBytes).map { _ in UInt8.random(in: 0 ... 255, using: &random) }
        let size = ag_packed_bytes(t, Int64(rows), Int64(columns))
        let groupBytes = ag_packed_group_bytes(ag_packed_kind(t), Int64(columns))
        var whole = [UInt8](repeating: 0xAA, count: size), sliced = [UInt8](repeating: 0x55, count: size)
        source.withUnsafeBytes { src in
            whole.withUnsafeMutableBytes { #expect(ag_pack_weights(t, src.baseAddress!, Int64(rows), Int64(columns), $0.baseAddress!) == 0) }
            sliced.withUnsafeMutableBytes { dst in
                #expect(PackedWeights.pack(t, src.baseAddress!, rows: rows, columns: columns, into: dst.baseAddress!,
                                           groupBytes: groupBytes, slices: 4))
            }
        }
        #expect(whole == sliced)
    }
}
