import CKernels
import GGUF
#if canImport(Glibc)
import Glibc
#endif

/// One output of a fused matrix product: `output[b * outputStride + r] = W[r] · x[b]`.
public struct MatmulTarget {
    public let weights: WeightMatrix
    public let output: FloatBuffer
    public let outputOffset: Int
    public let outputStride: Int

    public init(_ weights: WeightMatrix, output: FloatBuffer, offset: Int = 0, stride: Int? = nil) {
        self.weights = weights
        self.output = output
        self.outputOffset = offset
        self.outputStride = stride ?? weights.rows
    }
}

/// The transformer operations over float32 activation buffers. Offsets and strides count floats.
public enum Operations {
    /// Matrix products of up to four matrices sharing one input of `batch` rows of `columns` floats.
    /// The input is quantized once into the weights' activation format (all targets must share it).
    public static func matmul(
        _ targets: [MatmulTarget], input: FloatBuffer, offset: Int = 0, stride: Int, batch: Int,
        pool: WorkerPool, scratch: ScratchBuffer
    ) {
        precondition(!targets.isEmpty && targets.count <= Int(AG_MATMUL_MAX_TARGETS))
        let columns = targets[0].weights.columns
        let act = ag_activation_type(Int32(targets[0].weights.type.rawValue))
        // Packed matrices share an activation format across types (blocks of 32 for Q4_0, Q4_1, Q5_0
        // and Q8_0; super-blocks for Q4_K): the targets of one product must agree on it.
        let allPacked = targets.allSatisfy(\.weights.usesPackedKernels)
        let packedFormat = allPacked ? targets[0].weights.packedInputFormat : -1
        for t in targets {
            precondition(t.weights.columns == columns, "matmul: \(t.weights.name) has \(t.weights.columns) columns, expected \(columns)")
            precondition(allPacked ? t.weights.packedInputFormat == packedFormat : ag_activation_type(Int32(t.weights.type.rawValue)) == act,
                         "matmul: mixed activation formats")
            precondition(t.outputOffset + (batch - 1) * t.outputStride + t.weights.rows <= t.output.count)
        }
        precondition(offset + (batch - 1) * stride + columns <= input.count)
        if allPacked {
            // Float32 activations (F16 weights) are read where they are, unless their rows are a multiple of 4 KB
            // apart (they would share L1 sets: copied with a padded stride); the others are converted once.
            let direct = packedFormat == Int32(AG_PACKED_INPUT_F32) && (stride * MemoryLayout<Float>.stride) % 4096 != 0
            let xq: UnsafeRawPointer
            let packedStride: Int
            if direct {
                xq = UnsafeRawPointer(input.pointer(offset))
                packedStride = stride * MemoryLayout<Float>.stride
            } else {
                let buffer = scratch.reserve(ag_packed_activation_bytes(packedFormat, Int64(columns)) * batch + 64)
                packedStride = ag_quantize_packed_rows(pool.raw, packedFormat, input.pointer(offset), Int64(stride),
                                                       Int64(batch), Int64(columns), buffer)
                xq = UnsafeRawPointer(buffer)
            }
            var raw = targets.map { t in
                ag_packed_target(
                    kind: t.weights.packed!.kind, packed: t.weights.packed!.base + t.weights.packedOffset,
                    rows: Int64(t.weights.rows), y: t.output.pointer(t.outputOffset), y_stride: Int64(t.outputStride))
            }
            let status = raw.withUnsafeMutableBufferPointer { buffer in
                ag_matmul_packed(pool.raw, buffer.baseAddress!, Int32(buffer.count), Int64(columns), xq, packedStride, Int64(batch))
            }
            precondition(status == 0, "matmul: packed kernels refused the product")
            return
        }
        let rowBytes = ag_row_bytes(act, Int64(columns))
        let xq = scratch.reserve(rowBytes * batch + 64)
        let packed = ag_quantize_rows(pool.raw, act, input.pointer(offset), Int64(stride), Int64(batch), Int64(columns), xq)
        var raw = targets.map { t in
            ag_matmul_target(
                weight_type: Int32(t.weights.type.rawValue), weights: t.weights.bytes, rows: Int64(t.weights.rows),
                y: t.output.pointer(t.outputOffset), y_stride: Int64(t.outputStride))
        }
        raw.withUnsafeMutableBufferPointer { buffer in
            ag_matmul_quantized(pool.raw, buffer.baseAddress!, Int32(buffer.count), Int64(columns), xq, packed, Int64(batch))
        }
    }

    public static func rmsNorm(
        _ x: FloatBuffer, offset: Int = 0, stride: Int, weight: FloatBuffer, into out: FloatBuffer, outOffset: Int = 0,
        outStride: Int, rows: Int, width: Int, epsilon: Float, pool: WorkerPool? = nil
    ) {
        precondition(offset + (rows - 1) * stride + width <= x.count && weight.count >= width)
        precondition(outOffset + (rows - 1) * outStride + width <= out.count)
        ag_rmsnorm_pool(pool?.raw, x.pointer(offset), Int64(stride), weight.pointer(), out.pointer(outOffset), Int64(outStride),
                        Int64(rows), Int64(width), epsilon)
    }

    public enum RopeLayout: Int32, Sendable { case adjacentPairs = 0, halves = 1 }

    public static func rope(
        _ x: FloatBuffer, offset: Int = 0, stride: Int, positions: [Int32], heads: Int, headDimension: Int,
        rotaryDimensions: Int, base: Float, layout: RopeLayout, pool: WorkerPool? = nil
    ) {
        precondition(offset + (positions.count - 1) * stride + heads * headDimension <= x.count)
        precondition(rotaryDimensions <= headDimension && rotaryDimensions % 2 == 0 && rotaryDimensions <= 1024)
        positions.withUnsafeBufferPointer { p in
            ag_rope_pool(pool?.raw, x.pointer(offset), Int64(stride), Int64(positions.count), Int32(heads), Int32(headDimension),
                         Int32(rotaryDimensions), p.baseAddress!, base, layout.rawValue)
        }
    }

    /// Multimodal rotary embedding (M-RoPE, llama.cpp's `rope_multi` in NeoX order): pairs (i, i + rot/2) of each
    /// head's first `rotaryDimensions`, rotated by position(axis of i) * base^(-2i/rot), where pair i belongs to the
    /// axis whose section holds i (sections in pairs: temporal, height, width, then a fourth that reads temporal).
    /// `positions` holds temporal, height, width for each of the rows.
    public static func ropeMulti(
        _ x: FloatBuffer, offset: Int = 0, stride: Int, rows: Int, positions: [Int32], heads: Int, headDimension: Int,
        rotaryDimensions: Int, sections: [Int], base: Float
    ) {
        let half = rotaryDimensions / 2
        precondition(positions.count == 3 * rows && sections.count == 4 && sections.reduce(0, +) > 0)
        precondition(rows == 0 || offset + (rows - 1) * stride + heads * headDimension <= x.count)
        let total = sections.reduce(0, +)
        let axis: [Int] = (0 ..< half).map { i in
            let s = i % total
            if s < sections[0] { return 0 }
            if s < sections[0] + sections[1] { return 1 }
            if s < sections[0] + sections[1] + sections[2] { return 2 }
            return 0
        }
        let frequencies = (0 ..< half).map { pow(Double(base), -2 * Double($0) / Double(rotaryDimensions)) }
        rotateHalves(x, offset: offset, stride: stride, rows: rows, heads: heads, headDimension: headDimension, pairs: half) { r, i in
            Double(positions[3 * r + axis[i]]) * frequencies[i]
        }
    }

    /// Rotates pairs (i, i + pairs) of the first 2 x `pairs` dimensions of every head of every row by angle(row, i),
    /// the angles computed once per row: the NeoX-order rotation both multi-axis ropes share.
    private static func rotateHalves(
        _ x: FloatBuffer, offset: Int, stride: Int, rows: Int, heads: Int, headDimension: Int, pairs half: Int,
        angle: (_ row: Int, _ pair: Int) -> Double
    ) {
        var cosine = [Float](repeating: 0, count: half), sine = [Float](repeating: 0, count: half)
        let p = x.pointer(offset)
        for r in 0 ..< rows {
            for i in 0 ..< half {
                let theta = angle(r, i)
                cosine[i] = Float(cos(theta))
                sine[i] = Float(sin(theta))
            }
            for h in 0 ..< heads {
                let head = p + r * stride + h * headDimension
                for i in 0 ..< half {
                    let (x0, x1) = (head[i], head[i + half])
                    head[i] = x0 * cosine[i] - x1 * sine[i]
                    head[i + half] = x0 * sine[i] + x1 * cosine[i]
                }
            }
        }
    }

    /// The vision tower's 2D rotary embedding (rotate-half pairs (i, i + head/2) over the whole head): the first
    /// quarter of the pairs turn by the row position, the second by the column, at base^(-4j/head).
    public static func rope2D(
        _ x: FloatBuffer, offset: Int = 0, stride: Int, rows: Int, heads: Int, headDimension: Int,
        rowPositions: [Int32], columnPositions: [Int32], base: Float
    ) {
        let half = headDimension / 2, quarter = headDimension / 4
        precondition(headDimension % 4 == 0 && rowPositions.count == rows && columnPositions.count == rows)
        precondition(rows == 0 || offset + (rows - 1) * stride + heads * headDimension <= x.count)
        let frequencies = (0 ..< quarter).map { pow(Double(base), -2 * Double($0) / Double(half)) }
        rotateHalves(x, offset: offset, stride: stride, rows: rows, heads: heads, headDimension: headDimension, pairs: half) { r, i in
            Double(i < quarter ? rowPositions[r] : columnPositions[r]) * frequencies[i % quarter]
        }
    }

    /// In place, per row: LayerNorm (mean and variance over `width`, then weight and bias), then GELU with the exact
    /// error function.
    public static func layerNormGELU(_ x: FloatBuffer, rows: Int, width: Int, weight: [Float], bias: [Float], epsilon: Float) {
        precondition(rows * width <= x.count && weight.count >= width && bias.count >= width)
        let p = x.pointer()
        for r in 0 ..< rows {
            let row = p + r * width
            var mean: Float = 0
            for i in 0 ..< width { mean += row[i] }
            mean /= Float(width)
            var variance: Float = 0
            for i in 0 ..< width { variance += (row[i] - mean) * (row[i] - mean) }
            let scale = 1 / (variance / Float(width) + epsilon).squareRoot()
            for i in 0 ..< width {
                let y = (row[i] - mean) * scale * weight[i] + bias[i]
                row[i] = 0.5 * y * (1 + erff(y * 0.70710678118654752))
            }
        }
    }

    /// Groups of `group` consecutive rows of `width` into one row each, interleaved as a 2D kernel reads them:
    /// out[g][c * group + s] = x[g * group + s][c].
    public static func interleaveGroups(_ x: FloatBuffer, into out: FloatBuffer, rows: Int, width: Int, group: Int) {
        precondition(rows % group == 0 && rows * width <= x.count && rows * width <= out.count)
        let src = x.pointer(), dst = out.pointer()
        for g in 0 ..< rows / group {
            for s in 0 ..< group {
                let from = src + (g * group + s) * width, to = dst + g * group * width + s
                for c in 0 ..< width { to[c * group] = from[c] }
            }
        }
    }

    public static func siluMul(gate: FloatBuffer, up: FloatBuffer, into out: FloatBuffer, count: Int, pool: WorkerPool? = nil) {
        precondition(gate.count >= count && up.count >= count && out.count >= count)
        ag_silu_mul_pool(pool?.raw, gate.pointer(), up.pointer(), out.pointer(), Int64(count))
    }

    public static func add(_ x: FloatBuffer, into y: FloatBuffer, count: Int) {
        precondition(x.count >= count && y.count >= count)
        ag_add(y.pointer(), x.pointer(), Int64(count))
    }

    /// Adds `bias` (first `width` values) to each of `rows` rows of `x` starting at `offset`.
    public static func addBias(_ bias: FloatBuffer, to x: FloatBuffer, offset: Int = 0, stride: Int, rows: Int, width: Int) {
        precondition(bias.count >= width && (rows <= 1 || width <= stride))
        precondition(rows == 0 || offset + (rows - 1) * stride + width <= x.count)
        guard rows > 0 else { return }
        ag_add_bias(x.pointer(offset), Int64(stride), Int64(rows), bias.pointer(), Int64(width))
    }

    /// Bidirectional attention over `tokens` rows (a vision tower): q, k and v at offsets of one buffer of rows of
    /// `stride` floats; see ag_attention_dense in ckernels.h.
    /// Returns false when its scratch (the transposed keys, tokens x heads x head floats) could not be allocated.
    @discardableResult
    public static func attentionDense(
        _ qkv: FloatBuffer, queryOffset: Int, keyOffset: Int, valueOffset: Int, stride: Int, into out: FloatBuffer, outStride: Int,
        tokens: Int, heads: Int, headDimension: Int, scale: Float, pool: WorkerPool
    ) -> Bool {
        precondition(tokens > 0 && headDimension <= 256)
        for o in [queryOffset, keyOffset, valueOffset] { precondition(o + (tokens - 1) * stride + heads * headDimension <= qkv.count) }
        precondition((tokens - 1) * outStride + heads * headDimension <= out.count)
        let status = ag_attention_dense(pool.raw, qkv.pointer(queryOffset), qkv.pointer(keyOffset), qkv.pointer(valueOffset),
                                        Int64(stride), out.pointer(), Int64(outStride), Int64(tokens), Int32(heads),
                                        Int32(headDimension), scale)
        return status == 0
    }

    /// The float32 FMA rate of this machine with the pool's threads, in FLOP/s (vector FMA chains for about
    /// `seconds`); nil on the scalar path.
    public static func measureFMAPeak(pool: WorkerPool, seconds: Double = 1) -> Double? {
        let perIteration = ag_fma_peak_flops_per_iteration()
        guard perIteration > 0 else { return nil }
        let clock = ContinuousClock()
        var iterations: Int64 = 1 << 20
        while true {
            let start = clock.now
            ag_fma_peak(pool.raw, iterations)
            let elapsed = clock.now - start
            let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            if s >= seconds * 0.5 || iterations > 1 << 40 {
                return perIteration * Double(iterations) * Double(pool.threads) / s
            }
            iterations *= 2
        }
    }

    /// Paged attention; see ag_attention in ckernels.h for the layout.
    public static func attention(
        query: FloatBuffer, queryStride: Int, into out: FloatBuffer, outStride: Int, positions: [Int32],
        blockTables: [Int32], tableOffsets: [Int64], keys: KVArena, values: KVArena, blockSize: Int,
        heads: Int, kvHeads: Int, headDimension: Int, scale: Float, pool: WorkerPool
    ) {
        let tokens = positions.count
        precondition(tableOffsets.count == tokens && heads % kvHeads == 0)
        for t in 0 ..< tokens {
            let needed = Int(positions[t]) / blockSize
            precondition(Int(tableOffsets[t]) + needed < blockTables.count, "attention: block table too short")
        }
        precondition(keys.type == values.type && keys.count == values.count)
        for b in blockTables { precondition(Int(b) >= 0 && (Int(b) + 1) * blockSize * kvHeads * headDimension <= keys.count) }
        precondition((tokens - 1) * queryStride + heads * headDimension <= query.count)
        positions.withUnsafeBufferPointer { p in
            blockTables.withUnsafeBufferPointer { bt in
                tableOffsets.withUnsafeBufferPointer { to in
                    _ = ag_attention(pool.raw, query.pointer(), Int64(queryStride), out.pointer(), Int64(outStride), Int64(tokens),
                                     p.baseAddress!, bt.baseAddress!, to.baseAddress!, keys.type.ggmlType, keys.base, values.base,
                                     keys.scales, values.scales,
                                     Int32(blockSize), Int32(heads), Int32(kvHeads), Int32(headDimension), scale)
                }
            }
        }
    }
}

extension MatmulTarget {
    /// Splits targets into runs that share an activation format (a fused product needs one).
    public static func groupedByActivationFormat(_ targets: [MatmulTarget]) -> [[MatmulTarget]] {
        var groups: [Int32: [MatmulTarget]] = [:]
        var order: [Int32] = []
        for t in targets {
            // Packed matrices key by their packed input format (-10, -11), apart from the plain formats.
            let act = t.weights.usesPackedKernels ? -10 - t.weights.packedInputFormat : ag_activation_type(Int32(t.weights.type.rawValue))
            if groups[act] == nil { order.append(act) }
            groups[act, default: []].append(t)
        }
        return order.map { groups[$0]! }
    }
}
