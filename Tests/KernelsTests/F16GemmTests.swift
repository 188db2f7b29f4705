import Foundation
import GGUF
import Kernels
import Testing
import TestSupport

/// The vision tower's F16 product (`PackedF16Matrix`: tiles of 16 outputs, 8 rows x 32 outputs per kernel call,
/// input cut in chunks of 1024) against the engine's plain F16 kernels, at sizes that leave every remainder.
@Suite("F16 batched products for the vision tower")
struct F16GemmTests {
    static func matrix(rows: Int, columns: Int, seed: UInt64) throws -> WeightMatrix {
        var random = SeededRandom(seed: seed)
        var halves: [UInt8] = []
        halves.reserveCapacity(rows * columns * 2)
        for _ in 0 ..< rows * columns {
            let value = Float(Double(random.next() >> 11) / Double(1 << 53) * 2 - 1) * 0.1
            let bits = Float16(value).bitPattern
            halves += [UInt8(bits & 0xff), UInt8(bits >> 8)]
        }
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("test"))
        writer.addTensor(name: "w", dimensions: [columns, rows], type: .f16, data: halves)
        let file = try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: "f16 test"))
        return WeightMatrix(file: file, tensor: try #require(file.tensorInfo(named: "w")))
    }

    @Test("equal to the plain F16 kernels (odd rows, batch and input width; chunked input)",
          arguments: [(45, 1100, 70), (32, 64, 8), (17, 2050, 1), (100, 48, 129)])
    func matchesPlainKernels(shape: (Int, Int, Int)) throws {
        let (rows, columns, batch) = shape
        let w = try Self.matrix(rows: rows, columns: columns, seed: UInt64(rows * 31 + columns))
        let pool = WorkerPool(threads: 2)
        let packed = try #require(PackedF16Matrix(w, pool: pool))
        var random = SeededRandom(seed: 99)
        let stride = columns + 3
        let x = FloatBuffer((0 ..< batch * stride).map { _ in Float(Double(random.next() >> 11) / Double(1 << 53) * 2 - 1) })
        let fast = FloatBuffer(count: batch * (rows + 5)), plain = FloatBuffer(count: batch * rows)
        packed.multiply(x, stride: stride, batch: batch, into: fast, outputStride: rows + 5, pool: pool)
        Operations.matmul([MatmulTarget(w, output: plain)], input: x, stride: stride, batch: batch, pool: pool, scratch: ScratchBuffer())
        var worst: Float = 0
        for b in 0 ..< batch {
            for r in 0 ..< rows { worst = max(worst, abs(fast[b * (rows + 5) + r] - plain[b * rows + r])) }
            for r in rows ..< rows + 5 { #expect(fast[b * (rows + 5) + r] == 0, "wrote past the row's outputs") }
        }
        #expect(worst < 1e-4, "largest difference \(worst)")
    }

    @Test("only F16 matrices are packed this way")
    func onlyF16() throws {
        var writer = GGUFWriter()
        writer.set("general.architecture", .string("test"))
        writer.addTensor(name: "w", dimensions: [4, 2], type: .f32, data: [UInt8](repeating: 0, count: 32))
        let file = try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: "f32 test"))
        let w = WeightMatrix(file: file, tensor: try #require(file.tensorInfo(named: "w")))
        #expect(PackedF16Matrix(w, pool: WorkerPool(threads: 1)) == nil)
    }
}
