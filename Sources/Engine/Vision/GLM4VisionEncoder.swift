import Foundation
public import GGUF
import Kernels

/// The GLM-4.1V vision tower on the fast kernels: the same computation as `ReferenceGLM4Vision` (see there),
/// with every linear map a batched matrix product over all patches of the image, and bidirectional attention
/// by `Operations.attentionDense`. Weights are read in place from the mmproj (any type the kernels run; llama.cpp
/// writes F16, the convolutions F16 or F32). One image at a time.
public final class GLM4VisionEncoder: VisionEncoder, @unchecked Sendable {
    /// A weight matrix, packed for the batched kernels where the CPU has them (F16 ones as tiles of 16 outputs
    /// for float multiply-adds over all patches; see packed_float.c).
    typealias Linear = WeightMatrix

    struct Block {
        let norm1, norm2: FloatBuffer
        let qkv: Linear
        let qkvBias: FloatBuffer?
        let output: Linear
        let outputBias: FloatBuffer?
        let gate, up, down: Linear
    }

    public let configuration: GLM4VisionConfiguration
    let patchEmbedding: [Linear]        // per temporal frame: [width] x [3 * patch * patch]
    let patchBias: FloatBuffer?
    let embeddingNorm: FloatBuffer
    let positions: [Float]              // [side * side][width]
    let blocks: [Block]
    let postNorm: FloatBuffer
    let downsample: Linear              // [out] x [width * merge^2], input interleaved c * group + s
    let downsampleBias: FloatBuffer?
    let fc: Linear
    let mergerNorm, mergerNormBias: [Float]
    let mergerGate, mergerUp, mergerDown: Linear
    let pool: WorkerPool
    let scratch = ScratchBuffer()
    private let lock = NSLock()

    /// Where the last `encode` spent its time (seconds).
    public struct Profile: Sendable, Equatable {
        public var matrixSeconds = 0.0
        public var attentionSeconds = 0.0
        public var totalSeconds = 0.0
    }

    private var profileOfLastEncode = Profile()
    /// Where the last `encode` spent its time.
    public var lastProfile: Profile { lock.withLock { profileOfLastEncode } }
    private var profile = Profile()
    private let clock = ContinuousClock()

    public var threads: Int { pool.threads }

    public init(file: GGUFFile, threads: Int) throws(EngineError) {
        let c = try GLM4VisionConfiguration(file: file)
        configuration = c
        let a = "clip (glm4v)"
        let w = WeightLoader(file: file, architecture: a)
        func flat(_ name: String, columns: Int, rows: Int) throws(EngineError) -> WeightMatrix {
            guard let info = file.tensorInfo(named: name) else { throw .missingTensor(name, architecture: a) }
            guard info.type.isWeightType, let m = WeightMatrix(file: file, tensor: info, flattening: columns), m.rows == rows else {
                throw .badTensorShape(name, expected: [columns, rows], found: info.dimensions)
            }
            return m.packedForBatching()
        }
        func optional(_ name: String, _ count: Int) throws(EngineError) -> FloatBuffer? { w.has(name) ? try w.vector(name, count: count) : nil }
        let d = c.width, p = c.patchSize, ff = c.feedForwardWidth, out = c.outputWidth, group = c.mergeSize * c.mergeSize
        let pool = WorkerPool(threads: threads)
        self.pool = pool
        func linear(_ m: WeightMatrix) -> Linear { m }
        patchEmbedding = try (0 ..< c.temporalPatchSize).map { (t: Int) throws(EngineError) -> Linear in
            linear(try flat(t == 0 ? "v.patch_embd.weight" : "v.patch_embd.weight.\(t)", columns: 3 * p * p, rows: d))
        }
        patchBias = try optional("v.patch_embd.bias", d)
        embeddingNorm = try w.vector("v.norm_embd.weight", count: d)
        positions = try w.vector("v.position_embd.weight", count: d * c.positionSide * c.positionSide).slice(0, d * c.positionSide * c.positionSide)
        blocks = try (0 ..< c.blockCount).map { (i: Int) throws(EngineError) -> Block in
            let b = "v.blk.\(i)."
            return Block(norm1: try w.vector(b + "ln1.weight", count: d), norm2: try w.vector(b + "ln2.weight", count: d),
                         qkv: linear(try w.matrix(b + "attn_qkv.weight", columns: d, rows: 3 * d)), qkvBias: try optional(b + "attn_qkv.bias", 3 * d),
                         output: linear(try w.matrix(b + "attn_out.weight", columns: d, rows: d)), outputBias: try optional(b + "attn_out.bias", d),
                         gate: linear(try w.matrix(b + "ffn_gate.weight", columns: d, rows: ff)),
                         up: linear(try w.matrix(b + "ffn_up.weight", columns: d, rows: ff)),
                         down: linear(try w.matrix(b + "ffn_down.weight", columns: ff, rows: d)))
        }
        postNorm = try w.vector("v.post_ln.weight", count: d)
        downsample = linear(try flat("mm.patch_merger.weight", columns: d * group, rows: out))
        downsampleBias = try optional("mm.patch_merger.bias", out)
        fc = linear(try w.matrix("mm.model.fc.weight", columns: out, rows: out))
        mergerNorm = try w.vector("mm.post_norm.weight", count: out).slice(0, out)
        mergerNormBias = try optional("mm.post_norm.bias", out)?.slice(0, out) ?? [Float](repeating: 0, count: out)
        mergerGate = linear(try w.matrix("mm.gate.weight", columns: out, rows: c.mergerWidth))
        mergerUp = linear(try w.matrix("mm.up.weight", columns: out, rows: c.mergerWidth))
        mergerDown = linear(try w.matrix("mm.down.weight", columns: c.mergerWidth, rows: out))
    }

    public func encode(patches values: [Float], gridH: Int, gridW: Int) throws(EngineError) -> [Float] {
        let c = configuration
        let d = c.width, n = gridH * gridW, pv = c.patchValues, plane = c.patchSize * c.patchSize, group = c.mergeSize * c.mergeSize
        guard gridH % c.mergeSize == 0, gridW % c.mergeSize == 0, n > 0, values.count == n * pv else {
            throw .badHyperparameter(key: "image grid", value: "\(gridH)x\(gridW)",
                                     reason: "needs \(n * pv) patch values in whole \(c.mergeSize)x\(c.mergeSize) blocks, got \(values.count)")
        }
        lock.lock()
        defer { lock.unlock() }
        profile = Profile()
        let started = clock.now
        defer {
            profile.totalSeconds = Self.seconds(clock.now - started)
            profileOfLastEncode = profile
        }
        let coordinates = ReferenceGLM4Vision.patchCoordinates(gridH: gridH, gridW: gridW, merge: c.mergeSize)

        // Patch embedding: one product per temporal frame, summed, plus the bias; then RMSNorm and positions.
        let frameWidth = 3 * plane
        let frame = FloatBuffer(count: n * frameWidth)
        let x = FloatBuffer(count: n * d), t = FloatBuffer(count: n * d), normed = FloatBuffer(count: n * d)
        for (f, weights) in patchEmbedding.enumerated() {
            var rows = [Float](repeating: 0, count: n * frameWidth)
            for i in 0 ..< n {
                for ch in 0 ..< 3 {
                    let source = i * pv + (ch * c.temporalPatchSize + f) * plane, target = i * frameWidth + ch * plane
                    for k in 0 ..< plane { rows[target + k] = values[source + k] }
                }
            }
            frame.write(rows, at: 0)
            project(frame, stride: frameWidth, rows: n, [(weights, f == 0 ? x : t)])
            if f > 0 { Operations.add(t, into: x, count: n * d) }
        }
        if let patchBias { Operations.addBias(patchBias, to: x, stride: d, rows: n, width: d) }
        Operations.rmsNorm(x, stride: d, weight: embeddingNorm, into: normed, outStride: d, rows: n, width: d, epsilon: c.normEpsilon, pool: pool)
        t.write(interpolatedPositions(coordinates, gridH: gridH, gridW: gridW), at: 0)
        Operations.add(t, into: normed, count: n * d)
        x.copy(from: normed, sourceOffset: 0, to: 0, length: n * d)

        let rowPositions = coordinates.map { Int32($0.row) }, columnPositions = coordinates.map { Int32($0.column) }
        let qkv = FloatBuffer(count: n * 3 * d), attended = FloatBuffer(count: n * d)
        let ff = c.feedForwardWidth
        let gate = FloatBuffer(count: n * ff), up = FloatBuffer(count: n * ff)
        for block in blocks {
            Operations.rmsNorm(x, stride: d, weight: block.norm1, into: normed, outStride: d, rows: n, width: d, epsilon: c.normEpsilon, pool: pool)
            project(normed, stride: d, rows: n, [(block.qkv, qkv)])
            if let bias = block.qkvBias { Operations.addBias(bias, to: qkv, stride: 3 * d, rows: n, width: 3 * d) }
            for offset in [0, d] {
                Operations.rope2D(qkv, offset: offset, stride: 3 * d, rows: n, heads: c.headCount, headDimension: c.headDimension,
                                  rowPositions: rowPositions, columnPositions: columnPositions, base: c.ropeBase)
            }
            let attentionStart = clock.now
            let ok = Operations.attentionDense(qkv, queryOffset: 0, keyOffset: d, valueOffset: 2 * d, stride: 3 * d, into: attended, outStride: d,
                                      tokens: n, heads: c.headCount, headDimension: c.headDimension,
                                      scale: 1 / Float(c.headDimension).squareRoot(), pool: pool)
            profile.attentionSeconds += Self.seconds(clock.now - attentionStart)
            guard ok else {
                throw .badHyperparameter(key: "image", value: "\(n) patches", reason: "not enough memory for the vision tower's attention; lower max_pixels")
            }
            project(attended, stride: d, rows: n, [(block.output, t)])
            if let bias = block.outputBias { Operations.addBias(bias, to: t, stride: d, rows: n, width: d) }
            Operations.add(t, into: x, count: n * d)

            Operations.rmsNorm(x, stride: d, weight: block.norm2, into: normed, outStride: d, rows: n, width: d, epsilon: c.normEpsilon, pool: pool)
            project(normed, stride: d, rows: n, [(block.gate, gate), (block.up, up)])
            Operations.siluMul(gate: gate, up: up, into: gate, count: n * ff, pool: pool)
            project(gate, stride: ff, rows: n, [(block.down, t)])
            Operations.add(t, into: x, count: n * d)
        }

        // Merge each block of patches into one token, then the projector.
        Operations.rmsNorm(x, stride: d, weight: postNorm, into: normed, outStride: d, rows: n, width: d, epsilon: c.normEpsilon, pool: pool)
        let tokens = n / group, out = c.outputWidth, mw = c.mergerWidth
        let merged = FloatBuffer(count: n * d)
        Operations.interleaveGroups(normed, into: merged, rows: n, width: d, group: group)
        let y = FloatBuffer(count: tokens * out), z = FloatBuffer(count: tokens * out)
        project(merged, stride: d * group, rows: tokens, [(downsample, y)])
        if let downsampleBias { Operations.addBias(downsampleBias, to: y, stride: out, rows: tokens, width: out) }
        project(y, stride: out, rows: tokens, [(fc, z)])
        Operations.layerNormGELU(z, rows: tokens, width: out, weight: mergerNorm, bias: mergerNormBias, epsilon: 1e-5)
        let g2 = FloatBuffer(count: tokens * mw), u2 = FloatBuffer(count: tokens * mw)
        project(z, stride: out, rows: tokens, [(mergerGate, g2), (mergerUp, u2)])
        Operations.siluMul(gate: g2, up: u2, into: g2, count: tokens * mw, pool: pool)
        project(g2, stride: mw, rows: tokens, [(mergerDown, y)])
        return y.slice(0, tokens * out)
    }

    /// Floating-point operations of one image (a multiply-add counts two): the matrix products, and attention's two
    /// products per head.
    public static func work(configuration c: GLM4VisionConfiguration, gridH: Int, gridW: Int) -> (matrix: Double, attention: Double) {
        let n = Double(gridH * gridW), d = Double(c.width), ff = Double(c.feedForwardWidth), out = Double(c.outputWidth)
        let tokens = n / Double(c.mergeSize * c.mergeSize), mw = Double(c.mergerWidth)
        let patch = 2 * n * Double(c.temporalPatchSize * 3 * c.patchSize * c.patchSize) * d
        let block = 2 * n * (3 * d * d + d * d + 3 * d * ff)
        let merger = 2 * tokens * (Double(c.mergeSize * c.mergeSize) * d * out + out * out + 3 * out * mw)
        let attention = Double(c.blockCount) * 2 * 2 * n * n * d
        return (patch + Double(c.blockCount) * block + merger, attention)
    }

    /// The position table resampled to the patch grid, in the patches' order (as `ReferenceGLM4Vision`).
    func interpolatedPositions(_ coordinates: [(row: Int, column: Int)], gridH: Int, gridW: Int) -> [Float] {
        let c = configuration, side = c.positionSide, d = c.width
        func source(_ i: Int, _ count: Int) -> Double { (Double(i) + 0.5) / Double(count) * Double(side) - 0.5 }
        let rowWeights = (0 ..< gridH).map { ReferenceGLM4Vision.cubicWeights(source($0, gridH)) }
        let columnWeights = (0 ..< gridW).map { ReferenceGLM4Vision.cubicWeights(source($0, gridW)) }
        var out = [Float](repeating: 0, count: coordinates.count * d)
        out.withUnsafeMutableBufferPointer { o in
            positions.withUnsafeBufferPointer { table in
                for (i, (row, column)) in coordinates.enumerated() {
                    let (wy, y0) = rowWeights[row], (wx, x0) = columnWeights[column]
                    let base = i * d
                    for a in 0 ..< 4 {
                        let ty = min(max(y0 - 1 + a, 0), side - 1)
                        for b in 0 ..< 4 {
                            let tx = min(max(x0 - 1 + b, 0), side - 1)
                            let weight = Float(wy[a] * wx[b]), from = (ty * side + tx) * d
                            for j in 0 ..< d { o[base + j] += weight * table[from + j] }
                        }
                    }
                }
            }
        }
        return out
    }

    private func project(_ input: FloatBuffer, stride: Int, rows: Int, _ targets: [(Linear, FloatBuffer)]) {
        let start = clock.now
        SharedLayers.project(input, stride: stride, rows: rows, targets.map { MatmulTarget($0.0, output: $0.1) }, pool: pool,
                             scratch: scratch)
        profile.matrixSeconds += Self.seconds(clock.now - start)
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
}
