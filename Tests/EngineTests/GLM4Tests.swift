import Foundation
import Testing
import Engine
import GGUF
import Kernels
import TestSupport

/// The tiny random-weight GLM-4-0414 model (Tests/Fixtures/glm4-tiny/, made by
/// scripts/glm4/make_tiny_glm4.py) against transformers' Glm4ForCausalLM float32 outputs.
@Suite("Tiny GLM-4 model against transformers")
struct GLM4Tests {
    nonisolated(unsafe) static let reference = try! Fixtures.json("glm4-tiny/reference.json")
    static let sequenceNames = ["single", "prompt_bytes", "random_60"]

    static func file(_ variant: String = "f32") throws -> GGUFFile {
        try GGUFFile(path: Fixtures.path("glm4-tiny/glm4-tiny-\(variant).gguf"))
    }

    static func expected(_ name: String) -> [String: Any] {
        reference.dict("sequences").dict(name)
    }

    static func expectedLogits(_ name: String) -> [[Double]] {
        expected(name).array("logits").map { row in (row as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.doubleValue } }
    }

    @Test("the registry builds a GLM4Model from general.architecture = glm4")
    func registry() throws {
        let model = try ArchitectureRegistry.load(try Self.file(), threads: 1)
        #expect(model is GLM4Model)
        let c = model.configuration
        #expect(c.headDimension == 16 && c.rotaryDimensions == 8 && c.kvHeadCount == 2 && c.vocabularySize == 300)
    }

    @Test("fast path: logits at every position within 1e-3 of transformers (one batched prefill)", arguments: sequenceNames)
    func prefillLogits(_ name: String) throws {
        let tokens = Self.expected(name).ints("tokens")
        let want = Self.expectedLogits(name)
        #expect(want.count == tokens.count)
        let model = try GLM4Model(file: try Self.file(), threads: 2)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16, elementType: .f32)
        let table = (0 ..< Int32(cache.blockCount)).map { $0 }
        let out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: table, logits: .all)], cache: cache)
        #expect(out.rowCount == tokens.count)
        var maxError = 0.0
        for (p, row) in want.enumerated() {
            let got = Array(out.row(p))
            #expect(got.count == row.count)
            for (a, b) in zip(row, got) { maxError = max(maxError, abs(a - Double(b))) }
        }
        #expect(maxError < 1e-3, "max |logit error| \(maxError)")
        let argmaxes = (0 ..< tokens.count).map { Sampler.argmax(Array(out.row($0))) }
        #expect(argmaxes == Self.expected(name).ints("argmax"))
    }

    @Test("fast path with the f16 KV cache (the default): logits within 4e-3 of transformers, same argmax", arguments: sequenceNames)
    func prefillLogitsF16Cache(_ name: String) throws {
        let tokens = Self.expected(name).ints("tokens")
        let want = Self.expectedLogits(name)
        let model = try GLM4Model(file: try Self.file(), threads: 2)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16)
        #expect(cache.elementType == .f16)
        let table = (0 ..< Int32(cache.blockCount)).map { $0 }
        let out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: table, logits: .all)], cache: cache)
        var maxError = 0.0
        for (p, row) in want.enumerated() {
            for (a, b) in zip(row, Array(out.row(p))) { maxError = max(maxError, abs(a - Double(b))) }
        }
        // Keys and values rounded to 11 significant bits: measured 1.25e-3 on random_60 (f32 cache: below 1e-3).
        #expect(maxError < 4e-3, "max |logit error| \(maxError)")
        #expect((0 ..< tokens.count).map { Sampler.argmax(Array(out.row($0))) } == Self.expected(name).ints("argmax"))
    }

    @Test("fast path: greedy 8-token continuation through the paged cache equals transformers'", arguments: sequenceNames)
    func greedyContinuation(_ name: String) throws {
        let tokens = Self.expected(name).ints("tokens")
        let model = try GLM4Model(file: try Self.file(), threads: 2)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16, elementType: .f32)
        // Scattered blocks: the block table, not adjacency, decides where keys live.
        let table: [Int32] = [5, 2, 7, 0, 3, 6, 1, 4]
        var out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: table, logits: .last)], cache: cache)
        var greedy: [Int] = []
        var position = tokens.count
        for _ in 0 ..< 8 {
            let next = Sampler.argmax(Array(out.last(of: 0)))
            greedy.append(next)
            out = try model.forward([BatchEntry(tokens: [next], startPosition: position, blockTable: table, logits: .last)], cache: cache)
            position += 1
        }
        #expect(greedy == Self.expected(name).ints("greedy8"))
    }

    @Test("reference path: logits at every position within 1e-3 of transformers, greedy 8 tokens identical",
          arguments: sequenceNames)
    func referencePath(_ name: String) throws {
        let tokens = Self.expected(name).ints("tokens")
        let want = Self.expectedLogits(name)
        let model = try ReferenceGLM4(file: try Self.file())
        var logits: [Float] = []
        var maxError = 0.0
        for (p, token) in tokens.enumerated() {
            logits = try model.forward(token: token)
            for (a, b) in zip(want[p], logits) { maxError = max(maxError, abs(a - Double(b))) }
        }
        #expect(maxError < 1e-3, "max |logit error| \(maxError)")
        var greedy: [Int] = []
        for _ in 0 ..< 8 {
            let next = Sampler.argmax(logits)
            greedy.append(next)
            logits = try model.forward(token: next)
        }
        #expect(greedy == Self.expected(name).ints("greedy8"))
    }

    /// The fixture rewritten through our GGUFWriter: Q/K/V fused into `attn_qkv` (rows [Q; K; V],
    /// the layout llama.cpp's loader also accepts for glm4) unless `fuse` is false, and the metadata
    /// keys in `dropping` left out.
    static func rewritten(_ variant: String = "f32", fuse: Bool, dropping: Set<String> = [],
                          adding: [String: GGUFValue] = [:]) throws -> String {
        let source = try file(variant)
        var writer = GGUFWriter()
        for key in source.metadataKeys where !dropping.contains(key) { writer.set(key, source.metadata[key]!) }
        for (key, value) in adding { writer.set(key, value) }
        func bytes(_ name: String) -> [UInt8] { Array(source.tensorBytes(source.tensorInfo(named: name)!)) }
        for info in source.tensors {
            let parts = info.name.split(separator: ".")
            if fuse, parts.count == 4, ["attn_q", "attn_k", "attn_v"].contains(parts[2]) {
                guard parts[2] == "attn_q" else { continue }
                let prefix = "\(parts[0]).\(parts[1])."
                let suffix = String(parts[3])
                let data = ["attn_q", "attn_k", "attn_v"].flatMap { bytes(prefix + $0 + "." + suffix) }
                let infos = ["attn_q", "attn_k", "attn_v"].map { source.tensorInfo(named: prefix + $0 + "." + suffix)! }
                let dimensions = suffix == "weight"
                    ? [info.rowLength, infos.map(\.rowCount).reduce(0, +)] : [infos.map(\.elementCount).reduce(0, +)]
                writer.addTensor(name: prefix + "attn_qkv." + suffix, dimensions: dimensions, type: info.type, data: data)
            } else {
                writer.addTensor(name: info.name, dimensions: info.dimensions, type: info.type, data: bytes(info.name))
            }
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("glm4-\(UUID().uuidString).gguf").path
        try writer.write(to: path)
        return path
    }

    @Test("a fused attn_qkv GGUF gives the same logits (fast and reference paths)")
    func fusedQKV() throws {
        let path = try Self.rewritten(fuse: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fused = try GGUFFile(path: path)
        #expect(fused.tensorInfo(named: "blk.0.attn_qkv.weight") != nil && fused.tensorInfo(named: "blk.0.attn_q.weight") == nil)
        let tokens = Self.expected("random_60").ints("tokens")
        let want = Self.expectedLogits("random_60")
        let model = try GLM4Model(file: fused, threads: 2)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 64, blockSize: 16, elementType: .f32)
        let out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: [0, 1, 2, 3], logits: .all)], cache: cache)
        var maxError = 0.0
        for (p, row) in want.enumerated() {
            for (a, b) in zip(row, out.row(p)) { maxError = max(maxError, abs(a - Double(b))) }
        }
        #expect(maxError < 1e-3, "fast path max |logit error| \(maxError)")
        let reference = try ReferenceGLM4(file: fused)
        var last: [Float] = []
        for token in tokens { last = try reference.forward(token: token) }
        let referenceError = zip(want.last ?? [], last).map { abs($0 - Double($1)) }.max() ?? .infinity
        #expect(referenceError < 1e-3, "reference max |logit error| \(referenceError)")
    }

    @Test("a glm4 GGUF without rope.dimension_count is refused (llama.cpp would rotate the whole head)")
    func missingRotaryDimensions() throws {
        let path = try Self.rewritten(fuse: false, dropping: ["glm4.rope.dimension_count"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try GGUFFile(path: path)
        #expect(throws: EngineError.self) { _ = try GLM4Model(file: file, threads: 1) }
        #expect(throws: EngineError.self) { _ = try ReferenceGLM4(file: file) }
    }

    @Test("NextN layers and malformed M-RoPE sections are refused, not run wrongly")
    func unsupportedVariants() throws {
        for adding: [String: GGUFValue] in [["glm4.rope.dimension_sections": .array(.int32, [.int32(0), .int32(1), .int32(1), .int32(0)])],
                                            ["glm4.rope.dimension_sections": .array(.int32, [.int32(8), .int32(12), .int32(12), .int32(0)])],
                                            ["glm4.nextn_predict_layers": .uint32(1)]] {
            let path = try Self.rewritten(fuse: false, adding: adding)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let file = try GGUFFile(path: path)
            #expect(throws: EngineError.self) { _ = try GLM4Model(file: file, threads: 1) }
        }
    }

    @Test("Q8_0 weights (gguf-py quantized): logits within 0.1 of transformers, argmax agreement >= 90%; fused attn_qkv rows identical")
    func quantizedQ8() throws {
        let path = try Self.rewritten("q8_0", fuse: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        for name in ["prompt_bytes", "random_60"] {
            let tokens = Self.expected(name).ints("tokens")
            let want = Self.expectedLogits(name)
            var rows: [[Float]] = []
            for file in [try Self.file("q8_0"), try GGUFFile(path: path)] {
                let model = try GLM4Model(file: file, threads: 2)
                let q = file.tensorInfo(named: "blk.0.attn_q.weight") ?? file.tensorInfo(named: "blk.0.attn_qkv.weight")
                #expect(q?.type == .q8_0)
                let cache = PagedKVCache(configuration: model.configuration, tokens: 64, blockSize: 16, elementType: .f32)
                let out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: [0, 1, 2, 3], logits: .all)],
                                            cache: cache)
                rows.append(Array(out.values))
                var maxError = 0.0
                for (p, row) in want.enumerated() {
                    for (a, b) in zip(row, out.row(p)) { maxError = max(maxError, abs(a - Double(b))) }
                }
                #expect(maxError < 0.1, "\(name): max |logit error| \(maxError)")
                let argmaxes = (0 ..< tokens.count).map { Sampler.argmax(Array(out.row($0))) }
                let agree = zip(argmaxes, Self.expected(name).ints("argmax")).filter { $0 == $1 }.count
                #expect(Double(agree) >= 0.9 * Double(tokens.count), "\(name): argmax agreement \(agree)/\(tokens.count)")
            }
            let difference = zip(rows[0], rows[1]).map { abs($0 - $1) }.max() ?? .infinity
            #expect(difference < 1e-6, "separate vs fused Q/K/V differ by \(difference)")
        }
    }

    @Test("two sequences batched together give the same logits as alone")
    func batchingIsolation() throws {
        let a = Self.expected("prompt_bytes").ints("tokens"), b = Self.expected("random_60").ints("tokens")
        let model = try GLM4Model(file: try Self.file(), threads: 2)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 256, blockSize: 16, elementType: .f32)
        let alone = try model.forward([BatchEntry(tokens: a, startPosition: 0, blockTable: [0])], cache: cache)
        let together = try model.forward([
            BatchEntry(tokens: a, startPosition: 0, blockTable: [10]),
            BatchEntry(tokens: b, startPosition: 0, blockTable: [2, 3, 4, 5]),
        ], cache: cache)
        let difference = zip(alone.last(of: 0), together.last(of: 0)).map { abs($0 - $1) }.max() ?? .infinity
        #expect(difference < 1e-5)
        let want = Self.expectedLogits("random_60").last ?? []
        let maxError = zip(want, together.last(of: 1)).map { abs($0 - Double($1)) }.max() ?? .infinity
        #expect(maxError < 1e-3, "max |logit error| \(maxError)")
    }

    // glm-4-9b-chat-hf layout: transformers GlmForCausalLM, GGUF architecture `chatglm` (no post norms).
    nonisolated(unsafe) static let chatReference = try! Fixtures.json("glm4-tiny/chatglm-reference.json")

    @Test("chatglm (GlmForCausalLM): logits at every position within 1e-3, greedy 8 tokens identical", arguments: sequenceNames)
    func chatGLM(_ name: String) throws {
        let expected = Self.chatReference.dict("sequences").dict(name)
        let tokens = expected.ints("tokens")
        let want = expected.array("logits").map { row in (row as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.doubleValue } }
        let file = try GGUFFile(path: Fixtures.path("glm4-tiny/chatglm-tiny-f32.gguf"))
        let model = try ArchitectureRegistry.load(file, threads: 2)
        #expect(model is GLM4Model && model.configuration.architecture == "chatglm")
        #expect(model.configuration.rotaryDimensions == 8 && model.configuration.headDimension == 16)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16, elementType: .f32)
        let table: [Int32] = [3, 1, 6, 0, 2, 5, 4, 7]
        var out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: table, logits: .all)], cache: cache)
        var maxError = 0.0
        for (p, row) in want.enumerated() {
            for (a, b) in zip(row, out.row(p)) { maxError = max(maxError, abs(a - Double(b))) }
        }
        #expect(want.count == tokens.count && maxError < 1e-3, "max |logit error| \(maxError)")
        var greedy: [Int] = []
        for position in tokens.count ..< tokens.count + 8 {
            let next = Sampler.argmax(Array(out.last(of: 0)))
            greedy.append(next)
            out = try model.forward([BatchEntry(tokens: [next], startPosition: position, blockTable: table, logits: .last)], cache: cache)
        }
        #expect(greedy == expected.ints("greedy8"))
    }
}
