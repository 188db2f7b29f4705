import Foundation
import Testing
import Engine
import GGUF
import TestSupport
import SafeTensors
import Kernels
import Foundation

/// The tiny random GLM-4.1V (Tests/Fixtures/glm4v-tiny/, scripts/glm4v/make_tiny_glm4v.py) against transformers'
/// `Glm4vModel.get_image_features` in float32, from transformers' own pixel values.
@Suite("Tiny GLM-4.1V vision tower against transformers")
struct GLM4VisionTests {
    nonisolated(unsafe) static let reference = try! Fixtures.json("glm4v-tiny/reference.json")
    static let images = ["rgb61x45", "rgba37x53", "grey200x150", "palette20x30", "photo83x59"]

    static func mmproj() throws -> GGUFFile { try GGUFFile(path: Fixtures.path("glm4v-tiny/mmproj-glm4v-tiny-f32.gguf")) }

    static func grid(_ stem: String) -> [Int] {
        let name = reference.dict("images").keys.first { $0.hasPrefix(stem + ".") } ?? ""
        return reference.dict("images").dict(name).ints("grid_thw")
    }

    @Test("the mmproj's hyperparameters are read from its keys and tensors")
    func configuration() throws {
        let c = try GLM4VisionConfiguration(file: try Self.mmproj())
        #expect(c.width == 48 && c.headCount == 4 && c.blockCount == 2 && c.patchSize == 14 && c.positionSide == 8)
        #expect(c.feedForwardWidth == 64 && c.outputWidth == 64 && c.mergerWidth == 96 && c.temporalPatchSize == 2)
        #expect(c.patchValues == 1176)
    }

    @Test("fast vision embeddings within 1e-3 of transformers (F32 mmproj) and of the reference", arguments: images)
    func fastEmbeddings(stem: String) throws {
        let file = try Self.mmproj()
        let encoder = try GLM4VisionEncoder(file: file, threads: 2)
        let grid = Self.grid(stem)
        let pixels = try Fixtures.floats("glm4v-tiny/pixels-\(stem).f32")
        let got = try encoder.encode(patches: pixels, gridH: grid[1], gridW: grid[2])
        let want = try Fixtures.floats("glm4v-tiny/vision-\(stem).f32")
        #expect(got.count == want.count)
        #expect(zip(got, want).map { abs($0 - $1) }.max() ?? .infinity <= 1e-3)
        let reference = try ReferenceGLM4Vision(file: file).encode(patches: pixels, gridH: grid[1], gridW: grid[2])
        #expect(zip(got, reference).map { abs($0 - $1) }.max() ?? .infinity <= 1e-4)
    }

    @Test("an F16 mmproj (converted from the directory): the fast encoder equals the reference on the same weights")
    func f16Tower() throws {
        let directory = try SafeTensorsDirectory(path: Fixtures.path("glm4v-tiny"))
        let data = try Data(contentsOf: Fixtures.directory.appendingPathComponent("glm4v-tiny/config.json"))
        let config = try HuggingFaceConfig(json: try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:],
                                           path: "config.json", name: "glm4v-tiny")
        var writer = GGUFWriter()
        _ = try HuggingFaceImport.convertVision(directory, config: config, type: .f16, into: &writer)
        let file = try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: "f16 mmproj"))
        #expect(file.tensorInfo(named: "v.blk.0.attn_qkv.weight")?.type == .f16)
        let reference = try ReferenceGLM4Vision(file: file)
        let fast = try GLM4VisionEncoder(file: file, threads: 2)
        for stem in ["rgb61x45", "grey200x150"] {
            let grid = Self.grid(stem)
            let pixels = try Fixtures.floats("glm4v-tiny/pixels-\(stem).f32")
            let a = try fast.encode(patches: pixels, gridH: grid[1], gridW: grid[2])
            let b = try reference.encode(patches: pixels, gridH: grid[1], gridW: grid[2])
            #expect(zip(a, b).map { abs($0 - $1) }.max() ?? .infinity <= 1e-4, "\(stem)")
            // F16 weights stay close to transformers' float32 outputs.
            let want = try Fixtures.floats("glm4v-tiny/vision-\(stem).f32")
            #expect(zip(a, want).map { abs($0 - $1) }.max() ?? .infinity <= 2e-2, "\(stem)")
        }
    }

    @Test("dense attention equals the plain softmax-weighted sum for odd sizes (tiles and query blocks cut), on every path",
          arguments: KernelPath.allCases.filter { $0.rawValue <= KernelPath.detected.rawValue })
    func denseAttention(path: KernelPath) {
        KernelPath.select(path)
        defer { KernelPath.select(.detected) }
        var random = SeededRandom(seed: 7)
        for (tokens, heads, headDimension) in [(1, 1, 16), (5, 2, 12), (67, 3, 32), (130, 2, 64), (17, 1, 128), (70, 2, 40)] {
            let stride = 3 * heads * headDimension
            let values = (0 ..< tokens * stride).map { _ in Float(Double(random.next() >> 11) / Double(1 << 53) * 2 - 1) }
            let qkv = FloatBuffer(values), out = FloatBuffer(count: tokens * heads * headDimension)
            let pool = WorkerPool(threads: 2)
            let scale = 1 / Float(headDimension).squareRoot()
            Operations.attentionDense(qkv, queryOffset: 0, keyOffset: heads * headDimension, valueOffset: 2 * heads * headDimension,
                                      stride: stride, into: out, outStride: heads * headDimension, tokens: tokens, heads: heads,
                                      headDimension: headDimension, scale: scale, pool: pool)
            var worst: Float = 0
            for i in 0 ..< tokens {
                for h in 0 ..< heads {
                    let q = i * stride + h * headDimension
                    var scores = (0 ..< tokens).map { j -> Float in
                        let k = j * stride + heads * headDimension + h * headDimension
                        return (0 ..< headDimension).reduce(0) { $0 + values[q + $1] * values[k + $1] } * scale
                    }
                    let m = scores.max()!
                    scores = scores.map { expf($0 - m) }
                    let sum = scores.reduce(0, +)
                    for e in 0 ..< headDimension {
                        var want: Float = 0
                        for j in 0 ..< tokens {
                            let v: Float = values[j * stride + 2 * heads * headDimension + h * headDimension + e]
                            want += scores[j] / sum * v
                        }
                        let got: Float = out[i * heads * headDimension + h * headDimension + e]
                        worst = max(worst, abs(got - want))
                    }
                }
            }
            #expect(worst < 1e-5, "\(path): tokens \(tokens), heads \(heads), head \(headDimension): \(worst)")
        }
    }

    @Test("reference vision embeddings within 1e-3 of transformers", arguments: images)
    func referenceEmbeddings(stem: String) throws {
        let encoder = try ReferenceGLM4Vision(file: try Self.mmproj())
        let grid = Self.grid(stem)
        let pixels = try Fixtures.floats("glm4v-tiny/pixels-\(stem).f32")
        let got = try encoder.encode(patches: pixels, gridH: grid[1], gridW: grid[2])
        let want = try Fixtures.floats("glm4v-tiny/vision-\(stem).f32")
        #expect(got.count == want.count)
        let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= 1e-3, "largest difference \(worst)")
    }
}
