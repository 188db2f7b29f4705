public import GGUF
import Kernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain, scalar GLM-4.1V vision tower in float32 (transformers `Glm4vVisionModel`, llama.cpp's mmproj
/// `glm4v`): the readable specification the fast encoder is tested against. One image at a time.
///
///     x = patch_embed(patches)                 Conv3d (temporal 2 x 14 x 14, stride = kernel) = a linear map per patch
///     x = rms(x) + bicubic(position table)     the learned side x side table resampled to the patch grid
///     repeat blocks:  x += Wo attention(rope2d(q), rope2d(k), v),  [q; k; v] = Wqkv rms(x)   (all patches see all)
///                     x += down(silu(gate(n)) * up(n)),  n = rms(x)
///     x = rms(x); y = downsample(x)            Conv2d 2x2 stride 2 over each merge block = a linear map of 4 patches
///     y = down(silu(gate(z)) * up(z)),  z = gelu(layernorm(fc(y)))
///
/// Patches arrive as the image processor writes them: merge blocks together (row-major blocks, each
/// 2x2 row-major), each patch channels x temporal x 14 x 14.
public final class ReferenceGLM4Vision: VisionEncoder, @unchecked Sendable {
    struct Block {
        var norm1, norm2: [Float]
        var qkv: [Float]          // [3 * width][width]
        var qkvBias: [Float]?
        var output: [Float]       // [width][width]
        var outputBias: [Float]?
        var gate, up: [Float]     // [ff][width]
        var down: [Float]         // [width][ff]
    }

    public let configuration: GLM4VisionConfiguration
    let patchEmbedding: [[Float]]  // per temporal frame: [width][3 * patch * patch]
    let patchBias: [Float]
    let embeddingNorm: [Float]
    let positions: [Float]          // [side * side][width]
    let blocks: [Block]
    let postNorm: [Float]
    let downsample: [Float]         // [out][width * 4]: input index c * 4 + (row * 2 + column) within the block
    let downsampleBias: [Float]
    let fc: [Float]
    let mergerNorm, mergerNormBias: [Float]
    let mergerGate, mergerUp, mergerDown: [Float]

    public init(file: GGUFFile) throws(EngineError) {
        let c = try GLM4VisionConfiguration(file: file)
        configuration = c
        let w = WeightLoader(file: file, architecture: "clip (glm4v)")
        func matrix(_ name: String, _ columns: Int, _ rows: Int) throws(EngineError) -> [Float] {
            guard let info = file.tensorInfo(named: name) else { throw .missingTensor(name, architecture: "clip (glm4v)") }
            guard info.elementCount == columns * rows, info.rowCount * info.rowLength == columns * rows,
                  info.dimensions.last == rows else {
                throw .badTensorShape(name, expected: [columns, rows], found: info.dimensions)
            }
            return WeightMatrix(file: file, tensor: info).dequantized()
        }
        func vector(_ name: String, _ count: Int) throws(EngineError) -> [Float] { try w.vector(name, count: count).slice(0, count) }
        func optional(_ name: String, _ count: Int) throws(EngineError) -> [Float]? { w.has(name) ? try vector(name, count) : nil }
        let d = c.width, p = c.patchSize, ff = c.feedForwardWidth, out = c.outputWidth
        patchEmbedding = try (0 ..< c.temporalPatchSize).map { (t: Int) throws(EngineError) -> [Float] in
            try matrix(t == 0 ? "v.patch_embd.weight" : "v.patch_embd.weight.\(t)", 3 * p * p, d)
        }
        patchBias = try optional("v.patch_embd.bias", d) ?? [Float](repeating: 0, count: d)
        embeddingNorm = try vector("v.norm_embd.weight", d)
        positions = try matrix("v.position_embd.weight", d, c.positionSide * c.positionSide)
        blocks = try (0 ..< c.blockCount).map { (i: Int) throws(EngineError) -> Block in
            let b = "v.blk.\(i)."
            return Block(norm1: try vector(b + "ln1.weight", d), norm2: try vector(b + "ln2.weight", d),
                         qkv: try matrix(b + "attn_qkv.weight", d, 3 * d), qkvBias: try optional(b + "attn_qkv.bias", 3 * d),
                         output: try matrix(b + "attn_out.weight", d, d), outputBias: try optional(b + "attn_out.bias", d),
                         gate: try matrix(b + "ffn_gate.weight", d, ff), up: try matrix(b + "ffn_up.weight", d, ff),
                         down: try matrix(b + "ffn_down.weight", ff, d))
        }
        postNorm = try vector("v.post_ln.weight", d)
        let m = c.mergeSize
        downsample = try matrix("mm.patch_merger.weight", d * m * m, out)
        downsampleBias = try optional("mm.patch_merger.bias", out) ?? [Float](repeating: 0, count: out)
        fc = try matrix("mm.model.fc.weight", out, out)
        mergerNorm = try vector("mm.post_norm.weight", out)
        mergerNormBias = try optional("mm.post_norm.bias", out) ?? [Float](repeating: 0, count: out)
        mergerGate = try matrix("mm.gate.weight", out, c.mergerWidth)
        mergerUp = try matrix("mm.up.weight", out, c.mergerWidth)
        mergerDown = try matrix("mm.down.weight", c.mergerWidth, out)
    }

    /// The (row, column) of each patch in the image's patch grid, in the processor's order.
    public static func patchCoordinates(gridH: Int, gridW: Int, merge: Int) -> [(row: Int, column: Int)] {
        var out: [(Int, Int)] = []
        for bh in 0 ..< gridH / merge {
            for bw in 0 ..< gridW / merge {
                for mh in 0 ..< merge {
                    for mw in 0 ..< merge { out.append((bh * merge + mh, bw * merge + mw)) }
                }
            }
        }
        return out
    }

    /// The image tokens' embeddings: (gridH / merge) * (gridW / merge) rows of `outputWidth` floats.
    public func encode(patches values: [Float], gridH: Int, gridW: Int) throws(EngineError) -> [Float] {
        let c = configuration
        let d = c.width, n = gridH * gridW, pv = c.patchValues, plane = c.patchSize * c.patchSize
        guard gridH % c.mergeSize == 0, gridW % c.mergeSize == 0, n > 0, values.count == n * pv else {
            throw .badHyperparameter(key: "image grid", value: "\(gridH)x\(gridW)",
                                     reason: "needs \(n * pv) patch values in whole \(c.mergeSize)x\(c.mergeSize) blocks, got \(values.count)")
        }
        let coordinates = Self.patchCoordinates(gridH: gridH, gridW: gridW, merge: c.mergeSize)
        // Patch embedding: one 2D kernel per temporal frame, summed.
        var x = [Float](repeating: 0, count: n * d)
        for i in 0 ..< n {
            var y = patchBias
            for t in 0 ..< c.temporalPatchSize {
                var frame = [Float](repeating: 0, count: 3 * plane)
                for ch in 0 ..< 3 {
                    for k in 0 ..< plane { frame[ch * plane + k] = values[i * pv + (ch * c.temporalPatchSize + t) * plane + k] }
                }
                let z = ReferenceMath.matVec(patchEmbedding[t], frame, rows: d)
                for j in 0 ..< d { y[j] += z[j] }
            }
            let normed = ReferenceMath.rmsNorm(y, embeddingNorm, epsilon: c.normEpsilon)
            let position = interpolatedPosition(row: coordinates[i].row, column: coordinates[i].column, gridH: gridH, gridW: gridW)
            for j in 0 ..< d { x[i * d + j] = normed[j] + position[j] }
        }
        for block in blocks {
            let normed = (0 ..< n).map { ReferenceMath.rmsNorm(Array(x[$0 * d ..< ($0 + 1) * d]), block.norm1, epsilon: c.normEpsilon) }
            var q = [[Float]](), k = [[Float]](), v = [[Float]]()
            for i in 0 ..< n {
                var qkv = ReferenceMath.matVec(block.qkv, normed[i], rows: 3 * d)
                if let b = block.qkvBias { for j in 0 ..< 3 * d { qkv[j] += b[j] } }
                var qi = Array(qkv[0 ..< d]), ki = Array(qkv[d ..< 2 * d])
                rope2D(&qi, row: coordinates[i].row, column: coordinates[i].column)
                rope2D(&ki, row: coordinates[i].row, column: coordinates[i].column)
                q.append(qi)
                k.append(ki)
                v.append(Array(qkv[2 * d ..< 3 * d]))
            }
            let hd = c.headDimension, scale = 1 / Float(hd).squareRoot()
            for i in 0 ..< n {
                var attended = [Float](repeating: 0, count: d)
                for h in 0 ..< c.headCount {
                    var scores = (0 ..< n).map { j in
                        var dot: Float = 0
                        for e in 0 ..< hd { dot += q[i][h * hd + e] * k[j][h * hd + e] }
                        return dot * scale
                    }
                    ReferenceMath.softmax(&scores)
                    for j in 0 ..< n {
                        for e in 0 ..< hd { attended[h * hd + e] += scores[j] * v[j][h * hd + e] }
                    }
                }
                var o = ReferenceMath.matVec(block.output, attended, rows: d)
                if let b = block.outputBias { for j in 0 ..< d { o[j] += b[j] } }
                for j in 0 ..< d { x[i * d + j] += o[j] }
            }
            for i in 0 ..< n {
                let m = ReferenceMath.rmsNorm(Array(x[i * d ..< (i + 1) * d]), block.norm2, epsilon: c.normEpsilon)
                let ff = c.feedForwardWidth
                let gate = ReferenceMath.matVec(block.gate, m, rows: ff), up = ReferenceMath.matVec(block.up, m, rows: ff)
                let hidden = (0 ..< ff).map { gate[$0] / (1 + (-gate[$0]).exp) * up[$0] }
                let y = ReferenceMath.matVec(block.down, hidden, rows: d)
                for j in 0 ..< d { x[i * d + j] += y[j] }
            }
        }
        // Merge each block of merge x merge patches into one token, then the projector.
        let group = c.mergeSize * c.mergeSize, out = c.outputWidth
        var result: [Float] = []
        for g in 0 ..< n / group {
            var input = [Float](repeating: 0, count: d * group)
            for s in 0 ..< group {
                let i = g * group + s
                let normed = ReferenceMath.rmsNorm(Array(x[i * d ..< (i + 1) * d]), postNorm, epsilon: c.normEpsilon)
                for ch in 0 ..< d { input[ch * group + s] = normed[ch] }
            }
            var y = ReferenceMath.matVec(downsample, input, rows: out)
            for j in 0 ..< out { y[j] += downsampleBias[j] }
            var z = ReferenceMath.matVec(fc, y, rows: out)
            z = Self.layerNorm(z, weight: mergerNorm, bias: mergerNormBias, epsilon: 1e-5).map(Self.gelu)
            let gate = ReferenceMath.matVec(mergerGate, z, rows: c.mergerWidth)
            let up = ReferenceMath.matVec(mergerUp, z, rows: c.mergerWidth)
            let hidden = (0 ..< c.mergerWidth).map { gate[$0] / (1 + (-gate[$0]).exp) * up[$0] }
            result += ReferenceMath.matVec(mergerDown, hidden, rows: out)
        }
        return result
    }

    /// Rotates pairs (i, i + head/2) of each head: the first quarter of the pairs by the row, the second by the
    /// column, at frequencies base^(-4j/head) (transformers' axial rotary with rotate_half).
    func rope2D(_ x: inout [Float], row: Int, column: Int) {
        let c = configuration, hd = c.headDimension, half = hd / 2, quarter = hd / 4
        for h in 0 ..< c.headCount {
            for i in 0 ..< half {
                let j = i < quarter ? i : i - quarter
                let position = Double(i < quarter ? row : column)
                let theta = position * libmPow(Double(c.ropeBase), -2 * Double(j) / Double(half))
                let (cosine, sine) = (Float(libmCos(theta)), Float(libmSin(theta)))
                let a = h * hd + i, b = a + half
                let (x0, x1) = (x[a], x[b])
                x[a] = x0 * cosine - x1 * sine
                x[b] = x1 * cosine + x0 * sine
            }
        }
    }

    /// The position table sampled bicubically at a patch's centre (PyTorch's `grid_sample`, bicubic with
    /// A = -0.75, align_corners false, border padding: each tap index clamped to the table).
    func interpolatedPosition(row: Int, column: Int, gridH: Int, gridW: Int) -> [Float] {
        let c = configuration, side = c.positionSide, d = c.width
        func source(_ i: Int, _ count: Int) -> Double { (Double(i) + 0.5) / Double(count) * Double(side) - 0.5 }
        let y = source(row, gridH), x = source(column, gridW)
        let (wy, y0) = Self.cubicWeights(y), (wx, x0) = Self.cubicWeights(x)
        var out = [Float](repeating: 0, count: d)
        for a in 0 ..< 4 {
            let ty = min(max(y0 - 1 + a, 0), side - 1)
            for b in 0 ..< 4 {
                let tx = min(max(x0 - 1 + b, 0), side - 1)
                let weight = Float(wy[a] * wx[b]), base = (ty * side + tx) * d
                for j in 0 ..< d { out[j] += weight * positions[base + j] }
            }
        }
        return out
    }

    static func cubicWeights(_ coordinate: Double) -> ([Double], Int) {
        let a = -0.75
        let floor = coordinate.rounded(.down), t = coordinate - floor
        func near(_ x: Double) -> Double { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Double) -> Double { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        return ([far(t + 1), near(t), near(1 - t), far(2 - t)], Int(floor))
    }

    static func layerNorm(_ x: [Float], weight: [Float], bias: [Float], epsilon: Float) -> [Float] {
        let mean = x.reduce(0, +) / Float(x.count)
        let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(x.count)
        let scale = 1 / (variance + epsilon).squareRoot()
        return (0 ..< x.count).map { (x[$0] - mean) * scale * weight[$0] + bias[$0] }
    }

    /// GELU with the exact error function (torch.nn.GELU's default; llama.cpp's ggml_gelu_erf).
    static func gelu(_ x: Float) -> Float { 0.5 * x * (1 + erff(x / Float(2).squareRoot())) }
}
