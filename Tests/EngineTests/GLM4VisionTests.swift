import Foundation
import Testing
import Engine
import GGUF
import TestSupport

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
