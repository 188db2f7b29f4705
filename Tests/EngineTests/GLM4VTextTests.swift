import Foundation
import Testing
import Engine
import GGUF
import Kernels
import SafeTensors
import TestSupport

/// The tiny GLM-4.1V's language model (M-RoPE, image tokens as embeddings) from llama.cpp's text GGUF layout,
/// against transformers' logits at every position and its greedy continuation.
@Suite("Tiny GLM-4.1V language model against transformers")
struct GLM4VTextTests {
    nonisolated(unsafe) static let reference = try! Fixtures.json("glm4v-tiny/reference.json")
    static let prompts = ["one_image", "two_images", "text_only"]
    static let imageToken = 302

    static func prompt(_ name: String) -> [String: Any] { reference.dict("prompts").dict(name) }

    static func grids(_ name: String) -> [MultimodalPositions.Grid] {
        (prompt(name)["images"] as? [String] ?? []).map { image in
            let g = reference.dict("images").dict(image).ints("grid_thw")
            return MultimodalPositions.Grid(frames: g[0], rows: g[1] / 2, columns: g[2] / 2)
        }
    }

    /// transformers' vision outputs for the prompt's images, as embedding spans over the image-token runs.
    static func spans(_ name: String, tokens: [Int]) throws -> [EmbeddingSpan] {
        var spans: [EmbeddingSpan] = []
        var images = (prompt(name)["images"] as? [String] ?? []).makeIterator()
        var i = 0
        while i < tokens.count {
            guard tokens[i] == imageToken else { i += 1; continue }
            var end = i
            while end < tokens.count && tokens[end] == imageToken { end += 1 }
            let stem = ((images.next() ?? "") as NSString).deletingPathExtension
            spans.append(EmbeddingSpan(start: i, count: end - i, values: try Fixtures.floats("glm4v-tiny/vision-\(stem).f32")))
            i = end
        }
        return spans
    }

    @Test("3D positions and rope delta equal get_rope_index", arguments: prompts)
    func positions(name: String) throws {
        let tokens = Self.prompt(name).ints("input_ids")
        let (positions, delta) = try MultimodalPositions.glm4v(tokens: tokens, imageToken: Self.imageToken, grids: Self.grids(name))
        let want = Self.prompt(name).array("position_ids").map { ($0 as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.intValue } }
        #expect(positions.map { Int($0.temporal) } == want[0])
        #expect(positions.map { Int($0.height) } == want[1])
        #expect(positions.map { Int($0.width) } == want[2])
        #expect(delta == Self.prompt(name).int("rope_delta"))
    }

    @Test("a wrong number of image placeholders is refused")
    func placeholderMismatch() {
        #expect(throws: EngineError.self) {
            _ = try MultimodalPositions.glm4v(tokens: [1, 302, 302, 2], imageToken: 302, grids: [.init(rows: 2, columns: 2)])
        }
        #expect(throws: EngineError.self) {
            _ = try MultimodalPositions.glm4v(tokens: [1, 2], imageToken: 302, grids: [.init(rows: 1, columns: 1)])
        }
    }

    @Test("logits at every position within 1e-3 and the greedy continuation identical", arguments: prompts)
    func logits(name: String) throws {
        let file = try GGUFFile(path: Fixtures.path("glm4v-tiny/glm4v-tiny-f32.gguf"))
        let model = try GLM4Model(file: file, threads: 2)
        #expect(model.ropeSections == [2, 1, 1, 0])
        let tokens = Self.prompt(name).ints("input_ids")
        let (positions, delta) = try MultimodalPositions.glm4v(tokens: tokens, imageToken: Self.imageToken, grids: Self.grids(name))
        let cache = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16, elementType: .f32)
        let table = (0 ..< 8).map(Int32.init)
        let out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: table, logits: .all,
                                                embeddings: try Self.spans(name, tokens: tokens), ropePositions: positions)],
                                    cache: cache)
        let want = try Fixtures.floats("glm4v-tiny/logits-\(name).f32")
        #expect(out.values.count == want.count)
        let worst = zip(out.values, want).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= 1e-3, "largest difference \(worst)")

        // Greedy decoding: positions continue at cache position + delta on every axis.
        var next = out.last(of: 0).indices.max { out.last(of: 0)[$0] < out.last(of: 0)[$1] }! - out.last(of: 0).startIndex
        var generated = [next]
        var position = tokens.count
        for _ in 1 ..< 8 {
            let step = try model.forward([BatchEntry(tokens: [next], startPosition: position, blockTable: table, ropeDelta: delta)],
                                         cache: cache)
            let row = Array(step.last(of: 0))
            next = row.indices.max { row[$0] < row[$1] }!
            generated.append(next)
            position += 1
        }
        #expect(generated == Self.prompt(name).ints("greedy"))
    }
}

/// The same tiny GLM-4.1V imported from its Hugging Face directory (the text model and the vision tower, each
/// converted in memory to llama.cpp's layout), in both config layouts.
@Suite("Tiny GLM-4.1V from its Hugging Face directory")
struct GLM4VDirectoryTests {
    static let directoryPath = Fixtures.path("glm4v-tiny")

    static func config(_ file: String) throws -> HuggingFaceConfig {
        let data = try Data(contentsOf: URL(fileURLWithPath: directoryPath + "/" + file))
        let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        return try HuggingFaceConfig(json: json, path: file, name: "glm4v-tiny")
    }

    static func inMemory(_ writer: GGUFWriter) throws -> GGUFFile {
        try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: "glm4v-tiny (memory)"))
    }

    @Test("transformers 5 (rope_parameters) and 4.5x (rope_scaling.mrope_section) configs read the same")
    func configLayouts() throws {
        let v5 = try Self.config("config.json"), v4 = try Self.config("config-v4.json")
        #expect(v5 == v4)
        #expect(v5.ggufArchitecture == "glm4" && v5.mropeSection == [2, 1, 1] && v5.rotaryDimensions == 8)
        #expect(v5.vision?.depth == 2 && v5.vision?.hiddenSize == 48 && v5.vision?.imageTokenID == 302)
    }

    @Test("text logits within 1e-3 and vision embeddings within 1e-3 of transformers, from the directory")
    func fromDirectory() throws {
        let directory = try SafeTensorsDirectory(path: Self.directoryPath)
        let config = try Self.config("config.json")
        var text = GGUFWriter()
        _ = try HuggingFaceImport.convert(directory, config: config, type: nil, into: &text)
        let model = try GLM4Model(file: try Self.inMemory(text), threads: 2)
        #expect(model.ropeSections == [2, 1, 1, 0])
        let name = "one_image"
        let tokens = GLM4VTextTests.prompt(name).ints("input_ids")
        let (positions, _) = try MultimodalPositions.glm4v(tokens: tokens, imageToken: 302, grids: GLM4VTextTests.grids(name))
        let cache = PagedKVCache(configuration: model.configuration, tokens: 64, blockSize: 16, elementType: .f32)
        let out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: [0, 1, 2, 3], logits: .all,
                                                embeddings: try GLM4VTextTests.spans(name, tokens: tokens), ropePositions: positions)],
                                    cache: cache)
        let want = try Fixtures.floats("glm4v-tiny/logits-\(name).f32")
        #expect(zip(out.values, want).map { abs($0 - $1) }.max() ?? .infinity <= 1e-3)

        var mmproj = GGUFWriter()
        _ = try HuggingFaceImport.convertVision(directory, config: config, type: nil, into: &mmproj)
        let encoder = try ReferenceGLM4Vision(file: try Self.inMemory(mmproj))
        for stem in ["rgb61x45", "grey200x150"] {
            let grid = GLM4VisionTests.grid(stem)
            let got = try encoder.encode(patches: try Fixtures.floats("glm4v-tiny/pixels-\(stem).f32"), gridH: grid[1], gridW: grid[2])
            let want = try Fixtures.floats("glm4v-tiny/vision-\(stem).f32")
            #expect(zip(got, want).map { abs($0 - $1) }.max() ?? .infinity <= 1e-3, "\(stem)")
        }
    }
}
