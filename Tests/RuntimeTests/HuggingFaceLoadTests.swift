import Foundation
import Testing
import Engine
import GGUF
import Kernels
import Runtime
import SafeTensors
import TestSupport
import Tokenizer

/// The tiny GLM-4-0414 Hugging Face directory (Tests/Fixtures/glm4-tiny: config.json, model.safetensors from
/// scripts/glm4/make_tiny_glm4.py; tokenizer.json, tokenizer_config.json from make_tiny_glm4_tokenizer.py), loaded
/// directly and through `convert`, against transformers' float32 outputs.
@Suite("Hugging Face directories: load, convert, quantize")
struct HuggingFaceLoadTests {
    nonisolated(unsafe) static let reference = try! Fixtures.json("glm4-tiny/reference.json")
    static let directory = Fixtures.path("glm4-tiny")
    static let sequenceNames = ["single", "prompt_bytes", "random_60"]

    static func expected(_ name: String) -> [String: Any] { reference.dict("sequences").dict(name) }
    static func expectedLogits(_ name: String) -> [[Double]] {
        expected(name).array("logits").map { row in (row as? [Any] ?? []).compactMap { ($0 as? NSNumber)?.doubleValue } }
    }

    /// Max |logit - transformers| over every position, and the greedy 8-token continuation.
    static func run(_ model: any LanguageModel, _ name: String) throws -> (maxError: Double, greedy: [Int], argmaxAgreement: Double, relativeRMS: Double) {
        let tokens = expected(name).ints("tokens")
        let want = expectedLogits(name)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16, elementType: .f32)
        let table = (0 ..< Int32(cache.blockCount)).map { $0 }
        let all = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: table, logits: .all)], cache: cache)
        var maxError = 0.0
        var agree = 0
        var squaredError = 0.0, squared = 0.0
        for (p, row) in want.enumerated() {
            for (a, b) in zip(row, all.row(p)) {
                maxError = max(maxError, abs(a - Double(b)))
                squaredError += (a - Double(b)) * (a - Double(b))
                squared += a * a
            }
            if Sampler.argmax(Array(all.row(p))) == expected(name).ints("argmax")[p] { agree += 1 }
        }
        let cache2 = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16, elementType: .f32)
        var out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: table, logits: .last)], cache: cache2)
        var greedy: [Int] = []
        for step in 0 ..< 8 {
            let next = Sampler.argmax(Array(out.last(of: 0)))
            greedy.append(next)
            out = try model.forward([BatchEntry(tokens: [next], startPosition: tokens.count + step, blockTable: table, logits: .last)],
                                    cache: cache2)
        }
        return (maxError, greedy, Double(agree) / Double(tokens.count), (squaredError / squared).squareRoot())
    }

    static func temporaryPath(_ suffix: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("autoglm-hf-\(UUID().uuidString)\(suffix)").path
    }

    @Test("the directory loads as a glm4 model: logits within 1e-3 of transformers, greedy 8 tokens identical",
          arguments: sequenceNames)
    func directLoad(_ name: String) throws {
        let loaded = try ModelLoader.load(path: Self.directory, options: ModelLoadOptions(threads: 2))
        #expect(loaded.model is GLM4Model)
        #expect(loaded.model.configuration.rotaryDimensions == 8 && loaded.model.configuration.headDimension == 16)
        let (maxError, greedy, _, _) = try Self.run(loaded.model, name)
        print("direct f32 \(name): max logit error \(maxError)")
        #expect(maxError < 1e-3, "\(name): max |logit error| \(maxError)")
        #expect(greedy == Self.expected(name).ints("greedy8"))
    }

    @Test("convert to an f32 GGUF: tensors byte-identical to the fixture GGUF llama.cpp's converter layout gives; logits match")
    func convertF32() throws {
        let output = Self.temporaryPath(".gguf")
        defer { try? FileManager.default.removeItem(atPath: output) }
        let (writer, report) = try ModelLoader.huggingFaceGGUF(directory: Self.directory, type: .f32)
        try writer.write(to: output)
        #expect(report.sourceBytes == report.resultBytes)
        let converted = try GGUFFile(path: output)
        let fixture = try GGUFFile(path: Fixtures.path("glm4-tiny/glm4-tiny-f32.gguf"))
        #expect(Set(converted.tensors.map(\.name)) == Set(fixture.tensors.map(\.name)))
        for info in fixture.tensors {
            let mine = try #require(converted.tensorInfo(named: info.name))
            #expect(mine.dimensions == info.dimensions && mine.type == info.type, "\(info.name)")
            #expect(Array(converted.tensorBytes(mine)) == Array(fixture.tensorBytes(info)), "\(info.name) bytes differ")
        }
        for key in ["glm4.rope.dimension_count", "glm4.attention.head_count_kv", "glm4.embedding_length", "glm4.block_count"] {
            #expect(converted.value(key)?.intValue == fixture.value(key)?.intValue, "\(key)")
        }
        #expect(try converted.string("tokenizer.ggml.model") == "gpt2")
        #expect(try converted.string("tokenizer.ggml.pre") == "glm4")
        #expect(try converted.stringArray("tokenizer.ggml.tokens") == (try fixture.stringArray("tokenizer.ggml.tokens")))
        #expect(try converted.stringArray("tokenizer.ggml.merges") == (try fixture.stringArray("tokenizer.ggml.merges")))
        #expect(try converted.intArray("tokenizer.ggml.token_type") == (try fixture.intArray("tokenizer.ggml.token_type")))
        #expect(converted.value("tokenizer.chat_template") != nil)

        let loaded = try ModelLoader.load(path: output, options: ModelLoadOptions(threads: 2))
        for name in Self.sequenceNames {
            let (maxError, greedy, _, _) = try Self.run(loaded.model, name)
            #expect(maxError < 1e-3, "\(name): max |logit error| \(maxError)")
            #expect(greedy == Self.expected(name).ints("greedy8"))
        }
    }

    @Test("load-time Q8_0: 3.4x smaller matrices, logits within 0.1 of transformers, argmax agreement >= 90%")
    func quantizeQ8() throws {
        let loaded = try ModelLoader.load(path: Self.directory, options: ModelLoadOptions(threads: 2, quantize: .q8_0))
        let report = try #require(loaded.conversion)
        #expect(loaded.file.tensorInfo(named: "blk.0.attn_q.weight")?.type == .q8_0)
        #expect(loaded.file.tensorInfo(named: "blk.0.attn_norm.weight")?.type == .f32)
        #expect(report.resultBytes < report.sourceBytes * 30 / 100, "\(report.summary)")
        for name in ["prompt_bytes", "random_60"] {
            let (maxError, _, agreement, relative) = try Self.run(loaded.model, name)
            print("load-time q8_0 \(name): \(report.summary); max logit error \(maxError), relative RMS \(relative), argmax agreement \(agreement)")
            #expect(maxError < 0.1, "\(name): max |logit error| \(maxError)")
            #expect(agreement >= 0.9, "\(name): argmax agreement \(agreement)")
        }
    }

    @Test("load-time Q4_0 and Q4_K run (Q4_K falls back to Q4_0 for rows of 64, and says so); logits within 35% RMS",
          arguments: [GGUFTensorType.q4_0, .q4_K])
    func quantize4Bit(_ type: GGUFTensorType) throws {
        let loaded = try ModelLoader.load(path: Self.directory, options: ModelLoadOptions(threads: 2, quantize: type))
        let report = try #require(loaded.conversion)
        #expect(loaded.file.tensorInfo(named: "blk.0.attn_q.weight")?.type == .q4_0)
        #expect(report.notes.isEmpty == (type == .q4_0), "\(report.notes)")
        #expect(report.resultBytes < report.sourceBytes * 20 / 100, "\(report.summary)")
        // 4 bits on a random-weight model whose logits have small margins: argmaxes flip freely, so hold the
        // logits as a whole to the reference instead. Measured 0.25 relative RMS (max 0.8): Q8_0's 0.023 times
        // the ratio of the two formats' steps (max/8 vs max/127, 16x) would predict ~0.37; the bit-level
        // correctness of the Q4_0 writer is WeightQuantizerTests' job.
        let (maxError, _, agreement, relative) = try Self.run(loaded.model, "random_60")
        print("load-time \(type): \(report.summary); relative RMS logit error \(relative), max \(maxError), argmax agreement \(agreement)")
        #expect(relative < 0.35, "relative RMS logit error \(relative), max \(maxError), argmax agreement \(agreement)")
    }

    @Test("the tokenizer from tokenizer.json encodes and decodes exactly as the GGUF one")
    func tokenizerEquality() throws {
        let hf = try Tokenizer(huggingFaceDirectory: Self.directory, architecture: "glm4")
        let gguf = try Tokenizer(gguf: try GGUFFile(path: Fixtures.path("glm4-tiny/glm4-tiny-f32.gguf")))
        #expect(hf.vocabSize == gguf.vocabSize)
        #expect(hf.preTokenizer == gguf.preTokenizer)
        #expect(hf.eosID == gguf.eosID && hf.endOfTurnID == gguf.endOfTurnID && hf.addBOS == gguf.addBOS)
        let texts = ["Hello, GLM!", "the theater in tea, 12345 cats\n\nand  spaces", "[gMASK]<sop><|user|>\nhi<|assistant|>",
                     "Ünïcödé ✓ 中文 🙂", "   leading and trailing   ", "'s 'T 'll don't", ""]
        for text in texts {
            for parseSpecial in [false, true] {
                let a = hf.encode(text, addSpecial: true, parseSpecial: parseSpecial)
                #expect(a == gguf.encode(text, addSpecial: true, parseSpecial: parseSpecial), "\(text)")
                #expect(hf.decode(a) == gguf.decode(a))
            }
        }
    }

    @Test("errors: a GGUF with --quantize, a directory without tokenizer.json, name what and where")
    func errors() throws {
        #expect(throws: ModelLoadError.self) {
            try ModelLoader.load(path: Fixtures.path("glm4-tiny/glm4-tiny-f32.gguf"), options: ModelLoadOptions(threads: 1, quantize: .q8_0))
        }
        let dir = Self.temporaryPath("")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: Self.directory + "/" + name, toPath: dir + "/" + name)
        }
        do {
            _ = try ModelLoader.load(path: dir, options: ModelLoadOptions(threads: 1))
            Issue.record("a directory without tokenizer.json loaded")
        } catch {
            #expect(error.description.contains("tokenizer.json"), "\(error)")
        }
    }
}
