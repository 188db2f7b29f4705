import CKernels
import Foundation
import GGUF
import Kernels
import Testing

/// The row-interleaved weights and their batched kernels (packed.c), on each path the CPU has
/// (AVX-512 VNNI and AVX2). Skipped on a CPU without AVX2, where no matrix is packed and the plain
/// kernels (tested elsewhere) run.
@Suite("Packed batched kernels", .serialized, .enabled(if: KernelPath.detected.rawValue >= KernelPath.avx2.rawValue))
struct PackedKernelTests {
    static let paths = KernelPath.allCases.filter { $0.rawValue >= KernelPath.avx2.rawValue && $0.rawValue <= KernelPath.detected.rawValue }

    /// Runs `body` with each packed path selected on this thread (the kernels take the caller's path).
    static func eachPath(_ body: (KernelPath) throws -> Void) rethrows {
        defer { KernelPath.select(.detected) }
        for path in paths {
            #expect(KernelPath.select(path) == path)
            try body(path)
        }
    }

    static let types: [GGUFTensorType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]
    static let kQuants: [GGUFTensorType] = [.q4_K, .q5_K, .q6_K]

    /// Random rows of `type`: Q4_1, Q5_0, Q5_1, Q5_K and Q6_K blocks are written directly (there is
    /// no quantizer for them here): random bits, small positive scales; the others quantized from
    /// random floats.
    static func weightBytes(_ type: GGUFTensorType, rows: Int, columns: Int, seed: UInt64) -> [UInt8] {
        var random = SplitRandom(seed: seed)
        let t = Int32(type.rawValue)
        func half(_ v: Float) -> [UInt8] { let h = ag_fp32_to_fp16(v); return [UInt8(h & 0xFF), UInt8(h >> 8)] }
        func bytes(_ count: Int) -> [UInt8] { (0 ..< count).map { _ in UInt8(truncatingIfNeeded: random.next() >> 32) } }
        let blocks = rows * columns / type.blockSize
        switch type {
        case .q5_1:  // d, m, qh[4], qs[16]
            return (0 ..< blocks).flatMap { _ in half(0.002 + 0.01 * abs(random.signedUnit())) + half(0.05 * random.signedUnit()) + bytes(20) }
        case .q5_K:  // d, dmin, scales[12], qh[32], qs[128]
            return (0 ..< blocks).flatMap { _ in half(0.0005 + 0.001 * abs(random.signedUnit())) + half(0.0005 * abs(random.signedUnit())) + bytes(172) }
        case .q6_K:  // ql[128], qh[64], scales[16] (signed, the full range), d
            return (0 ..< blocks).flatMap { _ in bytes(208) + half(0.0001 + 0.0002 * abs(random.signedUnit())) }
        default: break
        }
        if type == .q5_0 {
            var out: [UInt8] = []
            for _ in 0 ..< rows * columns / 32 {
                let d = ag_fp32_to_fp16(0.002 + 0.01 * abs(random.signedUnit()))
                out += [UInt8(d & 0xFF), UInt8(d >> 8)]
                for _ in 0 ..< 20 { out.append(UInt8(truncatingIfNeeded: random.next() >> 32)) }  // qh, then qs
            }
            return out
        }
        if type == .q4_1 {
            var out: [UInt8] = []
            for _ in 0 ..< rows * columns / 32 {
                let d = ag_fp32_to_fp16(0.002 + 0.01 * abs(random.signedUnit()))
                let m = ag_fp32_to_fp16(0.05 * random.signedUnit())
                out += [UInt8(d & 0xFF), UInt8(d >> 8), UInt8(m & 0xFF), UInt8(m >> 8)]
                for _ in 0 ..< 16 { out.append(UInt8(truncatingIfNeeded: random.next() >> 32)) }
            }
            return out
        }
        let x = (0 ..< rows * columns).map { _ in random.gaussian() * 0.05 }
        var out = [UInt8](repeating: 0, count: rows * K.rowBytes(t, columns))
        let rc = x.withUnsafeBufferPointer { s in out.withUnsafeMutableBytes { ag_quantize_weights(t, s.baseAddress, $0.baseAddress, Int64(x.count)) } }
        precondition(rc == 0)
        return out
    }

    static func name(_ type: GGUFTensorType) -> String { "t\(type.rawValue)" }

    struct Fixture {
        let file: GGUFFile
        func matrix(_ name: String) -> WeightMatrix { WeightMatrix(file: file, tensor: file.tensorInfo(named: name)!) }
    }

    /// One in-memory GGUF holding a `rows` x `columns` matrix of each type (`columns` a multiple of
    /// 256 for the K-quants), and a second one of each named "\(name)-b".
    static func fixture(rows: Int, columns: Int) throws -> Fixture {
        var writer = GGUFWriter()
        for (i, type) in types.enumerated() {
            writer.addTensor(name: Self.name(type), dimensions: [columns, rows], type: type,
                             data: weightBytes(type, rows: rows, columns: columns, seed: UInt64(11 + i)))
            writer.addTensor(name: Self.name(type) + "-b", dimensions: [columns, rows], type: type,
                             data: weightBytes(type, rows: rows, columns: columns, seed: UInt64(111 + i)))
        }
        let file = try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: "packed-fixture"))
        return Fixture(file: file)
    }

    static func inputs(batch: Int, columns: Int, seed: UInt64) -> [Float] {
        var random = SplitRandom(seed: seed)
        return (0 ..< batch * columns).map { _ in random.gaussian() }
    }

    /// `matrix` times `batch` input rows through Operations.matmul: [batch][rows].
    static func product(_ matrices: [WeightMatrix], input: [Float], batch: Int, pool: WorkerPool) -> [[Float]] {
        let columns = matrices[0].columns
        let x = FloatBuffer(input)
        let outputs = matrices.map { FloatBuffer(count: batch * $0.rows) }
        let targets = zip(matrices, outputs).map { MatmulTarget($0, output: $1) }
        Operations.matmul(targets, input: x, stride: columns, batch: batch, pool: pool, scratch: ScratchBuffer())
        return outputs.map { $0.slice(0, $0.count) }
    }

    @Test("packed products are within the activation-quantization bound of the float64 product", arguments: types)
    func againstFloat64(type: GGUFTensorType) throws {
        let rows = 53, columns = 512, batch = 11  // a partial last group of 16 rows; 16 blocks, 2 super-blocks
        let f = try Self.fixture(rows: rows, columns: columns)
        let plain = f.matrix(Self.name(type))
        let packed = plain.packedForBatching()
        #expect(packed.usesPackedKernels && !plain.usesPackedKernels)
        let x = Self.inputs(batch: batch, columns: columns, seed: 5)
        try Self.eachPath { path in
          for threads in [1, 2] {
            let y = Self.product([packed], input: x, batch: batch, pool: WorkerPool(threads: threads))[0]
            for b in 0 ..< batch {
                let xb = Array(x[b * columns ..< (b + 1) * columns])
                for r in 0 ..< rows {
                    let w = plain.dequantizedRow(r)
                    var exact = 0.0, bound = 0.0
                    // Activations are quantized per block of 32 (per super-block of 256 for the K-quants).
                    let span = Self.kQuants.contains(type) ? 256 : 32
                    for block in 0 ..< columns / span {
                        let range = block * span ..< (block + 1) * span
                        let amax = range.map { abs(Double(xb[$0])) }.max()!
                        let wabs = range.reduce(0.0) { $0 + abs(Double(w[$1])) }
                        bound += wabs * amax / 127 / 2  // each activation is off by at most half a step
                        for i in range { exact += Double(w[i]) * Double(xb[i]); bound += 1e-5 * abs(Double(w[i]) * Double(xb[i])) }
                    }
                    let got = Double(y[b * rows + r])
                    #expect(abs(got - exact) <= bound + 1e-6, "\(path) \(type) row \(r) batch \(b): \(got) vs \(exact), bound \(bound)")
                }
            }
          }
        }
    }

    @Test("the AVX2 and AVX-512 kernels give bitwise equal results (same integer sums, same float operations)", arguments: types)
    func pathsAgree(type: GGUFTensorType) throws {
        guard Self.paths.count > 1 else { return }  // one path only on this CPU: nothing to compare
        let rows = 45, columns = 256, batch = 13
        let f = try Self.fixture(rows: rows, columns: columns)
        let packed = f.matrix(Self.name(type)).packedForBatching()
        let x = Self.inputs(batch: batch, columns: columns, seed: 17)
        var results: [[Float]] = []
        try Self.eachPath { _ in results.append(Self.product([packed], input: x, batch: batch, pool: WorkerPool(threads: 2))[0]) }
        #expect(results.count == 2 && results[0] == results[1])
    }

    @Test("a row's result is bitwise the same alone, in any batch, in a fused call and in a row slice", arguments: types)
    func batchInvariance(type: GGUFTensorType) throws {
        let rows = 70, columns = 256, batch = 19  // batches of 8 + 8 + 3 inside the kernel
        let f = try Self.fixture(rows: rows, columns: columns)
        let packed = f.matrix(Self.name(type)).packedForBatching()
        let pool = WorkerPool(threads: 2)
        let x = Self.inputs(batch: batch, columns: columns, seed: 9)
        try Self.eachPath { _ in try Self.checkInvariance(f: f, packed: packed, type: type, x: x, rows: rows, columns: columns, batch: batch, pool: pool) }
    }

    static func checkInvariance(f: Fixture, packed: WeightMatrix, type: GGUFTensorType, x: [Float], rows: Int, columns: Int,
                                batch: Int, pool: WorkerPool) throws {
        let all = Self.product([packed], input: x, batch: batch, pool: pool)[0]
        for b in 0 ..< batch {
            let alone = Self.product([packed], input: Array(x[b * columns ..< (b + 1) * columns]), batch: 1, pool: pool)[0]
            #expect(alone == Array(all[b * rows ..< (b + 1) * rows]), "row \(b) alone differs from the batch of \(batch)")
        }
        // Slices on a 16-row boundary share the packed copy; others fall back to the plain kernels.
        let head = packed.rowSlice(0, count: 32), middle = packed.rowSlice(32, count: 21), odd = packed.rowSlice(53, count: 17)
        #expect(head.usesPackedKernels && middle.usesPackedKernels && !odd.usesPackedKernels)
        // Fused with another matrix of the same packed input format (blocks of 32, or super-blocks).
        let other = f.matrix(Self.kQuants.contains(type) ? Self.name(type) + "-b" : Self.name(type == .q8_0 ? .q4_1 : .q8_0)).packedForBatching()
        let fused = Self.product([head, middle, other], input: x, batch: batch, pool: pool)
        let otherAlone = Self.product([other], input: x, batch: batch, pool: pool)[0]
        #expect(fused[2] == otherAlone)
        for b in 0 ..< batch {
            #expect(Array(fused[0][b * 32 ..< (b + 1) * 32]) == Array(all[b * rows ..< b * rows + 32]))
            #expect(Array(fused[1][b * 21 ..< (b + 1) * 21]) == Array(all[b * rows + 32 ..< b * rows + 53]))
        }
    }

    @Test("packing leaves the tensor's bytes intact, in an anonymous copy and in a file whose pages were released")
    func packingKeepsTheSource() throws {
        let rows = 40, columns = 64
        var writer = GGUFWriter()
        writer.addTensor(name: "w", dimensions: [columns, rows], type: .q8_0,
                         data: Self.weightBytes(.q8_0, rows: rows, columns: columns, seed: 3))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("autoglm-packed-\(getpid()).gguf").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try writer.write(to: path)
        for file in [try GGUFFile(path: path),
                     try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: "copy"))] {
            let plain = WeightMatrix(file: file, tensor: file.tensorInfo(named: "w")!)
            let before = plain.dequantized()
            let packed = plain.packedForBatching()
            #expect(packed.usesPackedKernels)
            #expect(plain.dequantized() == before)
            #expect(packed.dequantized() == before)
        }
    }

    @Test("unsupported types are not packed")
    func unsupportedTypes() throws {
        var writer = GGUFWriter()
        writer.addTensor(name: "f", dimensions: [32, 4], values: [Float](repeating: 0.5, count: 128))
        let file = try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: "f32"))
        let m = WeightMatrix(file: file, tensor: file.tensorInfo(named: "f")!).packedForBatching()
        #expect(!m.usesPackedKernels)
        #expect(ag_packed_bytes(Int32(GGUFTensorType.q8_K.rawValue), 16, 256) == 0)
        #expect(ag_packed_bytes(Int32(GGUFTensorType.q4_K.rawValue), 16, 96) == 0)  // not whole super-blocks
        #expect(ag_packed_bytes(Int32(GGUFTensorType.q4_K.rawValue), 17, 512) == 2 * 2 * 2368)
        #expect(ag_packed_bytes(Int32(GGUFTensorType.q5_K.rawValue), 16, 256) == 180 * 16)  // the file's 176 + 4
        #expect(ag_packed_bytes(Int32(GGUFTensorType.q6_K.rawValue), 16, 256) == 210 * 16)  // as the file
    }

    /// Packed K-quants compute the same integer sums as the plain K x Q8_K kernels (same activation
    /// quantization, same sub-block scales and mins), so the two differ only by float rounding.
    @Test("packed Q4_K, Q5_K and Q6_K equal the plain K x Q8_K product up to float rounding", arguments: kQuants)
    func kQuantsMatchPlain(type: GGUFTensorType) throws {
        let rows = 37, columns = 768, batch = 5
        let f = try Self.fixture(rows: rows, columns: columns)
        let plain = f.matrix(Self.name(type))
        let packed = plain.packedForBatching()
        let x = Self.inputs(batch: batch, columns: columns, seed: 23)
        let pool = WorkerPool(threads: 2)
        KernelPath.select(.scalar)
        let reference = Self.product([plain], input: x, batch: batch, pool: pool)[0]
        KernelPath.select(.detected)
        Self.eachPath { path in
            let y = Self.product([packed], input: x, batch: batch, pool: pool)[0]
            for b in 0 ..< batch {
                for r in 0 ..< rows {
                    let w = plain.dequantizedRow(r)
                    let magnitude = (0 ..< columns).reduce(0.0) { $0 + abs(Double(w[$1]) * Double(x[b * columns + $1])) }
                    let got = y[b * rows + r], want = reference[b * rows + r]
                    #expect(abs(Double(got) - Double(want)) <= 1e-5 * magnitude + 1e-6, "\(path) row \(r) batch \(b): \(got) vs \(want)")
                }
            }
        }
    }

    @Test("matrices of different packed input formats are not fused into one product")
    func formatsGroup() throws {
        let f = try Self.fixture(rows: 32, columns: 256)
        let q4K = f.matrix(Self.name(.q4_K)).packedForBatching(), q4K2 = f.matrix(Self.name(.q4_K) + "-b").packedForBatching()
        let q8 = f.matrix(Self.name(.q8_0)).packedForBatching(), q5 = f.matrix(Self.name(.q5_0)).packedForBatching()
        let out = FloatBuffer(count: 32)
        let groups = MatmulTarget.groupedByActivationFormat([q4K, q8, q4K2, q5].map { MatmulTarget($0, output: out) })
        #expect(groups.map { $0.map(\.weights.name) } == [[q4K.name, q4K2.name], [q8.name, q5.name]])
    }
}
