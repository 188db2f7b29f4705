import CKernels
import Foundation
import GGUF
import Kernels
import Testing

/// Packed F16 and BF16 weights (packed_float.c) through `Operations.matmul`, on each path the CPU has. The F16
/// kernels and the BF16 kernel of the AVX2 path compute each output as one chain of fused multiply-adds in input
/// order, which this test recomputes in Swift and expects bit for bit; the vdpbf16ps kernel (AVX-512 with
/// avx512_bf16) multiplies bf16 activations and is held to a bound.
@Suite("Packed F16 and BF16 products", .serialized, .enabled(if: KernelPath.detected.rawValue >= KernelPath.avx2.rawValue))
struct PackedFloatTests {
    static let types: [GGUFTensorType] = [.f16, .bf16]

    /// `value` rounded to nearest even in `type` (finite values).
    static func bits(_ value: Float, _ type: GGUFTensorType) -> UInt16 {
        if type == .f16 { return ag_fp32_to_fp16(value) }
        let u = value.bitPattern
        return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }

    static func value(_ bits: UInt16, _ type: GGUFTensorType) -> Float {
        type == .f16 ? Float(Float16(bitPattern: bits)) : Float(bitPattern: UInt32(bits) << 16)
    }

    /// A `rows` x `columns` matrix of `type` with random weights (some exact zeros, some large), in memory.
    static func matrix(_ type: GGUFTensorType, rows: Int, columns: Int, seed: UInt64, name: String = "w") throws -> WeightMatrix {
        var random = SplitRandom(seed: seed)
        var data: [UInt8] = []
        data.reserveCapacity(rows * columns * 2)
        for i in 0 ..< rows * columns {
            let v = i % 97 == 0 ? 0 : random.gaussian() * (i % 89 == 0 ? 30 : 0.05)
            let b = bits(v, type)
            data += [UInt8(b & 0xFF), UInt8(b >> 8)]
        }
        var writer = GGUFWriter()
        writer.addTensor(name: name, dimensions: [columns, rows], type: type, data: data)
        let file = try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: "packed-float"))
        return WeightMatrix(file: file, tensor: try #require(file.tensorInfo(named: name)))
    }

    static func inputs(batch: Int, columns: Int, seed: UInt64) -> [Float] {
        var random = SplitRandom(seed: seed)
        return (0 ..< batch * columns).map { _ in random.gaussian() }
    }

    static func product(_ matrices: [WeightMatrix], input: [Float], batch: Int, threads: Int = 2) -> [[Float]] {
        let x = FloatBuffer(input)
        let outputs = matrices.map { FloatBuffer(count: batch * $0.rows) }
        Operations.matmul(zip(matrices, outputs).map { MatmulTarget($0, output: $1) }, input: x, stride: matrices[0].columns,
                          batch: batch, pool: WorkerPool(threads: threads), scratch: ScratchBuffer())
        return outputs.map { $0.slice(0, $0.count) }
    }

    /// Whether the calling thread's path multiplies BF16 weights by bf16 activations (vdpbf16ps).
    static var bf16Dot: Bool { ag_packed_input_format(Int32(AG_PACKED_BF16)) == Int32(AG_PACKED_INPUT_BF16) }

    @Test("equal to a fused multiply-add chain in input order (vdpbf16ps: within its bound)", arguments: types)
    func againstChain(type: GGUFTensorType) throws {
        // A partial last group and an odd group count; 1176 inputs (a vision patch); 70 rows: a slice of 64 + 6.
        let rows = 45, columns = 1176, batch = 70
        let plain = try Self.matrix(type, rows: rows, columns: columns, seed: 3)
        let packed = plain.packedForBatching()
        #expect(packed.usesPackedKernels && !plain.usesPackedKernels)
        let x = Self.inputs(batch: batch, columns: columns, seed: 5)
        let weights = (0 ..< rows).map { plain.dequantizedRow($0) }
        PackedKernelTests.eachPath { path in
            for threads in [1, 2] {
                let y = Self.product([packed], input: x, batch: batch, threads: threads)[0]
                for b in 0 ..< batch {
                    for r in 0 ..< rows {
                        let w = weights[r]
                        let got = y[b * rows + r]
                        if type == .bf16 && Self.bf16Dot {
                            // bf16 x bf16 products are exact in float; the sum is rounded once per pair at most.
                            var exact = 0.0, magnitude = 0.0
                            for k in 0 ..< columns {
                                let xk = Double(Self.value(Self.bits(x[b * columns + k], .bf16), .bf16))
                                exact += Double(w[k]) * xk
                                magnitude += abs(Double(w[k]) * xk)
                            }
                            #expect(abs(Double(got) - exact) <= 1e-5 * magnitude + 1e-6, "\(path) row \(r) batch \(b): \(got) vs \(exact)")
                        } else {
                            var acc: Float = 0
                            for k in 0 ..< columns { acc = acc.addingProduct(x[b * columns + k], w[k]) }
                            #expect(got == acc, "\(path) \(type) row \(r) batch \(b): \(got) vs \(acc)")
                        }
                    }
                }
            }
        }
    }

    @Test("within bf16 rounding of the float64 product of the original activations")
    func bf16AgainstFloat64() throws {
        let rows = 33, columns = 512, batch = 9
        let plain = try Self.matrix(.bf16, rows: rows, columns: columns, seed: 13)
        let packed = plain.packedForBatching()
        let x = Self.inputs(batch: batch, columns: columns, seed: 15)
        PackedKernelTests.eachPath { path in
            let y = Self.product([packed], input: x, batch: batch)[0]
            for b in 0 ..< batch {
                for r in 0 ..< rows {
                    let w = plain.dequantizedRow(r)
                    var exact = 0.0, magnitude = 0.0
                    for k in 0 ..< columns {
                        exact += Double(w[k]) * Double(x[b * columns + k])
                        magnitude += abs(Double(w[k]) * Double(x[b * columns + k]))
                    }
                    // Each activation rounded to bf16 (8 significant bits) is off by at most 2^-8 of itself.
                    #expect(abs(Double(y[b * rows + r]) - exact) <= magnitude / 256 + 1e-6, "\(path) row \(r) batch \(b)")
                }
            }
        }
    }

    @Test("a row's result is bitwise the same alone, in any batch, in a fused call and in a row slice", arguments: types)
    func batchInvariance(type: GGUFTensorType) throws {
        let rows = 70, columns = 96, batch = 131  // slices of 64, chunks of 8 + 4 + 2 + 1 rows inside a slice
        let packed = try Self.matrix(type, rows: rows, columns: columns, seed: 21).packedForBatching()
        let other = try Self.matrix(type == .f16 ? .bf16 : .f16, rows: 40, columns: columns, seed: 22).packedForBatching()
        let x = Self.inputs(batch: batch, columns: columns, seed: 9)
        PackedKernelTests.eachPath { path in
            let all = Self.product([packed], input: x, batch: batch)[0]
            for b in [0, 5, 63, 64, 127, 130] {
                let alone = Self.product([packed], input: Array(x[b * columns ..< (b + 1) * columns]), batch: 1)[0]
                #expect(alone == Array(all[b * rows ..< (b + 1) * rows]), "\(path) row \(b) alone differs from the batch")
            }
            let head = packed.rowSlice(0, count: 32), middle = packed.rowSlice(32, count: 21)
            #expect(head.usesPackedKernels && middle.usesPackedKernels)
            // F16 and BF16 share an input format (float32) unless vdpbf16ps runs: then they are not fused.
            let fuse = MatmulTarget.groupedByActivationFormat([head, middle, other].map { MatmulTarget($0, output: FloatBuffer(count: 1)) })
            #expect(fuse.count == (Self.bf16Dot ? 2 : 1))
            let fused = Self.product(fuse.count == 1 ? [head, middle, other] : [head, middle], input: x, batch: batch)
            for b in 0 ..< batch {
                #expect(Array(fused[0][b * 32 ..< (b + 1) * 32]) == Array(all[b * rows ..< b * rows + 32]))
                #expect(Array(fused[1][b * 21 ..< (b + 1) * 21]) == Array(all[b * rows + 32 ..< b * rows + 53]))
            }
        }
    }

    @Test("the AVX2 and AVX-512 F16 kernels give bitwise equal results")
    func pathsAgree() throws {
        guard PackedKernelTests.paths.count > 1 else { return }  // one path only on this CPU: nothing to compare
        let packed = try Self.matrix(.f16, rows: 50, columns: 300, seed: 31).packedForBatching()
        let x = Self.inputs(batch: 23, columns: 300, seed: 17)
        var results: [[Float]] = []
        PackedKernelTests.eachPath { _ in results.append(Self.product([packed], input: x, batch: 23)[0]) }
        #expect(results.count == 2 && results[0] == results[1])
    }

    @Test("an odd input width is not packed, and packing keeps the source bytes")
    func limits() throws {
        let odd = try Self.matrix(.f16, rows: 16, columns: 33, seed: 1)
        #expect(!odd.packedForBatching().usesPackedKernels)
        #expect(ag_packed_bytes(Int32(GGUFTensorType.bf16.rawValue), 17, 64) == 2 * 16 * 64 * 2)
        let m = try Self.matrix(.bf16, rows: 20, columns: 64, seed: 2)
        let before = m.dequantized()
        let packed = m.packedForBatching()
        #expect(packed.usesPackedKernels && m.dequantized() == before && packed.dequantized() == before)
    }
}
