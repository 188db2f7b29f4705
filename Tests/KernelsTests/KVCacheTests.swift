import CKernels
import Foundation
import GGUF
import Kernels
import Testing

/// The KV cache's element types (f32, f16, bf16, q8_0): stores round to nearest even (q8_0 as ggml's Q8_0), and paged attention
/// reads each type directly, on every kernel path the CPU has.
@Suite("KV cache element types and attention over them", .serialized)
struct KVCacheTests {
    static let paths = KernelPath.allCases.filter { $0.rawValue <= KernelPath.detected.rawValue }

    @Test("stores round to nearest even: f16 as F16C / numpy, bf16 by the upper half with rounding")
    func stores() {
        var random = SplitRandom(seed: 3)
        var values = (0 ..< 1000).map { _ in random.gaussian() * 10 }
        values += [0, -0, 1e-8, -65504, 65519, 70000, 3.0e38, .infinity, -.infinity, 1 + 1.0 / 256, 1 + 3.0 / 256]
        let source = FloatBuffer(values)
        for path in Self.paths {
            KernelPath.select(path)
            defer { KernelPath.select(.detected) }
            let f16 = KVArena(type: .f16, count: values.count)
            f16.store(from: source, sourceOffset: 0, to: 0, length: values.count)
            let want16 = values.map { ag_fp16_to_fp32(ag_fp32_to_fp16($0)) }
            #expect(f16.floats(0, values.count) == want16, "\(path)")
            let bf16 = KVArena(type: .bf16, count: values.count)
            bf16.store(from: source, sourceOffset: 0, to: 0, length: values.count)
            let got = bf16.floats(0, values.count)
            for (x, y) in zip(values, got) {
                // Nearest bf16: the error is at most half a unit in the 8-bit mantissa.
                if x.isFinite { #expect(abs(y - x) <= abs(x) / 256, "\(x) -> \(y)") } else { #expect(y == x) }
            }
            // Half-way cases go to the even neighbour: 1 + 1/256 -> 1, 1 + 3/256 -> 1 + 2/128.
            #expect(got[values.count - 2] == 1 && got[values.count - 1] == 1 + 1.0 / 64)
            let f32 = KVArena(type: .f32, count: values.count)
            f32.store(from: source, sourceOffset: 0, to: 0, length: values.count)
            #expect(f32.floats(0, values.count) == values)
        }
    }

    /// Attention of `tokens` query tokens of one sequence over positions 0...position, in float64 from
    /// the values the cache actually holds.
    static func reference(q: [Float], keys: [[Float]], values: [[Float]], positions: [Int32], heads: Int, kvHeads: Int,
                          headDim: Int, scale: Double) -> [Double] {
        var out = [Double](repeating: 0, count: positions.count * heads * headDim)
        let group = heads / kvHeads
        for (t, position) in positions.enumerated() {
            for h in 0 ..< heads {
                let kvh = h / group
                let qh = (0 ..< headDim).map { Double(q[t * heads * headDim + h * headDim + $0]) }
                var scores = (0 ... Int(position)).map { p in
                    (0 ..< headDim).reduce(0.0) { $0 + qh[$1] * Double(keys[p][kvh * headDim + $1]) } * scale
                }
                let maximum = scores.max()!
                scores = scores.map { Foundation.exp($0 - maximum) }
                let sum = scores.reduce(0, +)
                for p in 0 ... Int(position) {
                    for i in 0 ..< headDim { out[t * heads * headDim + h * headDim + i] += scores[p] / sum * Double(values[p][kvh * headDim + i]) }
                }
            }
        }
        return out
    }

    @Test("paged attention over f32, f16, bf16 and q8_0 caches equals float64 over the stored values (GQA, scattered blocks)",
          arguments: KVCacheType.allCases)
    func attention(type: KVCacheType) throws {
        // A head dimension that is not a multiple of 16 where the type allows (q8_0 takes blocks of 32).
        let heads = 8, kvHeads = 2, headDim = type == .q8_0 ? 64 : 40, blockSize = 4, length = 23
        let width = kvHeads * headDim
        var random = SplitRandom(seed: 11)
        // Blocks of the sequence deliberately out of order in the arena.
        let table: [Int32] = [5, 1, 7, 0, 3, 6]
        let keysIn = FloatBuffer((0 ..< length * width).map { _ in random.gaussian() })
        let valuesIn = FloatBuffer((0 ..< length * width).map { _ in random.gaussian() })
        let keys = KVArena(type: type, count: 8 * blockSize * width), values = KVArena(type: type, count: 8 * blockSize * width)
        // Values position-major, keys transposed within their block (ag_attention's layout).
        func valueOffset(_ p: Int) -> Int { (Int(table[p / blockSize]) * blockSize + p % blockSize) * width }
        func keyOffset(_ p: Int) -> Int { Int(table[p / blockSize]) * blockSize * width + p % blockSize }
        for p in 0 ..< length {
            keys.store(from: keysIn, sourceOffset: p * width, to: keyOffset(p), length: width, stride: blockSize, scaleIndex: valueOffset(p) / 32)
            values.store(from: valuesIn, sourceOffset: p * width, to: valueOffset(p), length: width, scaleIndex: valueOffset(p) / 32)
        }
        let storedKeys = (0 ..< length).map { keys.floats(keyOffset($0), width, stride: blockSize, scaleIndex: valueOffset($0) / 32) }
        let storedValues = (0 ..< length).map { values.floats(valueOffset($0), width, scaleIndex: valueOffset($0) / 32) }
        // Three query tokens: a prefill chunk's last positions.
        let positions: [Int32] = [20, 21, 22]
        let q = (0 ..< positions.count * heads * headDim).map { _ in random.gaussian() }
        let scale = 1 / Double(headDim).squareRoot()
        let want = Self.reference(q: q, keys: storedKeys, values: storedValues, positions: positions, heads: heads,
                                  kvHeads: kvHeads, headDim: headDim, scale: scale)
        for path in Self.paths {
            KernelPath.select(path)
            defer { KernelPath.select(.detected) }
            for threads in [1, 2] {
                let out = FloatBuffer(count: q.count)
                Operations.attention(query: FloatBuffer(q), queryStride: heads * headDim, into: out, outStride: heads * headDim,
                                     positions: positions, blockTables: table, tableOffsets: [0, 0, 0], keys: keys, values: values,
                                     blockSize: blockSize, heads: heads, kvHeads: kvHeads, headDimension: headDim,
                                     scale: Float(scale), pool: WorkerPool(threads: threads))
                let got = out.slice(0, q.count)
                for i in 0 ..< q.count {
                    #expect(abs(Double(got[i]) - want[i]) <= 1e-5 * max(1, abs(want[i])), "\(type) \(path) element \(i): \(got[i]) vs \(want[i])")
                }
            }
        }
    }

    @Test("a strided store (a key into its transposed block) writes every stride-th element, rounding as a plain store",
          arguments: KVCacheType.allCases)
    func stridedStore(type: KVCacheType) {
        var random = SplitRandom(seed: 5)
        let values = (0 ..< 160).map { _ in random.gaussian() * 3 }
        let arena = KVArena(type: type, count: 160 * 4 + 32)
        arena.store(from: FloatBuffer(values), sourceOffset: 0, to: 3, length: values.count, stride: 4)
        let plain = KVArena(type: type, count: values.count)
        plain.store(from: FloatBuffer(values), sourceOffset: 0, to: 0, length: values.count)
        #expect(arena.floats(3, values.count, stride: 4) == plain.floats(0, values.count))
        #expect(arena.floats(4, values.count - 1, stride: 4).allSatisfy { $0 == 0 })  // the slots between are untouched
    }

    /// Tokens are split into tiles (runs of one sequence, at most 64 query rows); a token's result must
    /// not depend on which tile it lands in or what else is in the call (decode alone, prefill, batched).
    @Test("a token's attention is bitwise the same alone, in a long prefill chunk and beside another sequence",
          arguments: KVCacheType.allCases)
    func tileInvariance(type: KVCacheType) throws {
        let heads = 8, kvHeads = 2, headDim = 64, blockSize = 16, length = 37  // 16 tokens a tile: 3 tiles
        let width = kvHeads * headDim
        var random = SplitRandom(seed: 21)
        let tableA: [Int32] = [2, 0, 4], tableB: [Int32] = [1, 3]
        let keys = KVArena(type: type, count: 5 * blockSize * width), values = KVArena(type: type, count: 5 * blockSize * width)
        for (table, count) in [(tableA, length), (tableB, 20)] {
            let k = FloatBuffer((0 ..< count * width).map { _ in random.gaussian() })
            let v = FloatBuffer((0 ..< count * width).map { _ in random.gaussian() })
            for p in 0 ..< count {
                let block = Int(table[p / blockSize])
                let slot = (block * blockSize + p % blockSize) * width
                keys.store(from: k, sourceOffset: p * width, to: block * blockSize * width + p % blockSize, length: width, stride: blockSize,
                           scaleIndex: slot / 32)
                values.store(from: v, sourceOffset: p * width, to: slot, length: width, scaleIndex: slot / 32)
            }
        }
        let rowWidth = heads * headDim
        let qA = (0 ..< length * rowWidth).map { _ in random.gaussian() }, qB = (0 ..< 20 * rowWidth).map { _ in random.gaussian() }
        func run(_ q: [Float], positions: [Int32], offsets: [Int64], table: [Int32], threads: Int) -> [Float] {
            let out = FloatBuffer(count: q.count)
            Operations.attention(query: FloatBuffer(q), queryStride: rowWidth, into: out, outStride: rowWidth, positions: positions,
                                 blockTables: table, tableOffsets: offsets, keys: keys, values: values, blockSize: blockSize,
                                 heads: heads, kvHeads: kvHeads, headDimension: headDim, scale: 0.125, pool: WorkerPool(threads: threads))
            return out.slice(0, q.count)
        }
        for path in Self.paths {
            KernelPath.select(path)
            defer { KernelPath.select(.detected) }
            // Sequence A's whole prompt as one chunk, then with B's 20 tokens after it in one call.
            let chunk = run(qA, positions: (0 ..< Int32(length)).map { $0 }, offsets: Array(repeating: 0, count: length), table: tableA, threads: 2)
            let both = run(qA + qB, positions: (0 ..< Int32(length)).map { $0 } + (0 ..< 20).map { Int32($0) },
                           offsets: Array(repeating: 0, count: length) + Array(repeating: 3, count: 20), table: tableA + tableB, threads: 1)
            #expect(Array(both[0 ..< length * rowWidth]) == chunk, "\(type) \(path): A beside B differs from A alone")
            for t in [0, 15, 16, 36] {
                let alone = run(Array(qA[t * rowWidth ..< (t + 1) * rowWidth]), positions: [Int32(t)], offsets: [0], table: tableA, threads: 1)
                #expect(alone == Array(chunk[t * rowWidth ..< (t + 1) * rowWidth]), "\(type) \(path): token \(t) alone differs from the chunk")
            }
            let bAlone = run(qB, positions: (0 ..< 20).map { Int32($0) }, offsets: Array(repeating: 0, count: 20), table: tableB, threads: 2)
            #expect(Array(both[length * rowWidth ..< both.count]) == bAlone, "\(type) \(path): B beside A differs from B alone")
        }
    }

    @Test("q8_0 stores ggml's Q8_0 blocks: d = max|x| / 127 in fp16, every element within half a step of its value (and the scale's rounding)")
    func q8Store() throws {
        var random = SplitRandom(seed: 8)
        let values = (0 ..< 96).map { i in random.gaussian() * (i < 32 ? 0.01 : 4) }  // blocks of very different scales
        let arena = KVArena(type: .q8_0, count: 96)
        arena.store(from: FloatBuffer(values), sourceOffset: 0, to: 0, length: 96, scaleIndex: 0)
        let back = arena.floats(0, 96)
        var ggml = [UInt8](repeating: 0, count: 3 * 34)
        values.withUnsafeBufferPointer { src in ggml.withUnsafeMutableBytes { _ = ag_quantize_row(Int32(AG_TYPE_Q8_0), src.baseAddress, $0.baseAddress, 96) } }
        #expect(back == dequantize(.q8_0, bytes: ggml, count: 96), "the same values as ggml's Q8_0 row")
        for block in 0 ..< 3 {
            let range = block * 32 ..< (block + 1) * 32
            let step = range.map { abs(values[$0]) }.max()! / 127
            // Half a step, plus the scale's rounding to fp16 (2^-11 of it) times |q| <= 127.
            for i in range { #expect(abs(back[i] - values[i]) <= step * (0.5 + 127.0 / 2048) + 1e-7, "element \(i)") }
        }
        // 96 elements: 96 bytes of int8 and 3 fp16 scales.
        #expect(KVCacheType.q8_0.bytes(elements: 96) == 102 && KVCacheType.f16.bytes(elements: 96) == 192)
        #expect(KVCacheType(name: "q8") == .q8_0 && KVCacheType(name: "Q8_0") == .q8_0)
        #expect(KVCacheType.q8_0.problem(headDimension: 80) != nil && KVCacheType.q8_0.problem(headDimension: 128) == nil)
        #expect(KVCacheType.f16.problem(headDimension: 80) == nil)
    }

    @Test("copying q8_0 elements takes their scales along")
    func q8Copy() {
        var random = SplitRandom(seed: 9)
        let values = (0 ..< 64).map { _ in random.gaussian() }
        let arena = KVArena(type: .q8_0, count: 256)
        arena.store(from: FloatBuffer(values), sourceOffset: 0, to: 64, length: 64, scaleIndex: 2)
        arena.copyElements(from: 64, to: 192, length: 64)
        #expect(arena.floats(192, 64, scaleIndex: 6) == arena.floats(64, 64, scaleIndex: 2))
        #expect(arena.floats(192, 64, scaleIndex: 6) != [Float](repeating: 0, count: 64))
    }
}
