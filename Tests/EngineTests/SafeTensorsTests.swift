import Foundation
import Testing
import Engine
import GGUF
import Kernels
import SafeTensors
import TestSupport

/// Writes a safetensors file: header JSON (tensors in the given order, data packed) then the data.
func safetensorsBytes(_ tensors: [(name: String, dtype: String, shape: [Int], data: [UInt8])], headerOverride: String? = nil) -> [UInt8] {
    var entries: [String] = []
    var offset = 0
    for t in tensors {
        entries.append("\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":\(t.shape),\"data_offsets\":[\(offset),\(offset + t.data.count)]}")
        offset += t.data.count
    }
    let header = Array((headerOverride ?? "{" + entries.joined(separator: ",") + "}").utf8)
    var out: [UInt8] = []
    withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
    out += header
    for t in tensors { out += t.data }
    return out
}

func temporaryPath(_ suffix: String = "") -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("autoglm-st-\(UUID().uuidString)\(suffix)").path
}

@Suite("safetensors files and model directories")
struct SafeTensorsTests {
    static let fixture = Fixtures.path("glm4-tiny/model.safetensors")

    func open(_ bytes: [UInt8]) throws(SafeTensorsError) -> SafeTensorsFile {
        let path = temporaryPath(".safetensors")
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try SafeTensorsFile(path: path)
    }

    func error(_ bytes: [UInt8]) -> SafeTensorsError? {
        do { _ = try open(bytes); return nil } catch { return error }
    }

    @Test("the transformers-written fixture parses: every tensor F32, shapes as config.json says")
    func fixtureParses() throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        #expect(file.tensors.count == 1 + 2 * 13 + 2)  // embeddings, 2 x 13 per layer, final norm, lm_head
        #expect(file.tensors.values.allSatisfy { $0.dtype == .f32 })
        #expect(file.tensors["model.layers.0.mlp.gate_up_proj.weight"]?.shape == [256, 64])
        #expect(file.tensors["model.embed_tokens.weight"]?.shape == [300, 64])
    }

    @Test("F16 and BF16 read back exactly; other dtypes are refused naming tensor and dtype")
    func dtypes() throws {
        let f16: [UInt8] = [0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00]  // 1, -2, smallest subnormal
        let bf16: [UInt8] = [0x80, 0x3F, 0x40, 0xC0]              // 1, -3
        let file = try open(safetensorsBytes([("a", "F16", [3], f16), ("b", "BF16", [2], bf16)]))
        #expect(file.floats(file.tensors["a"]!) == [1, -2, Float(bitPattern: 0x3380_0000)])
        #expect(file.floats(file.tensors["b"]!) == [1, -3])
        let e = error(safetensorsBytes([("w.qweight", "I8", [4], [1, 2, 3, 4])]))
        guard case .unsupportedDType(_, "w.qweight", "I8") = e else { Issue.record("\(String(describing: e))"); return }
        #expect(e?.description.contains("w.qweight") == true && e?.description.contains("I8") == true)
    }

    @Test("malformed headers give typed errors naming the tensor")
    func malformed() {
        let four: [UInt8] = [0, 0, 0x80, 0x3F]
        // Header length past the end of the file.
        var bad = safetensorsBytes([("x", "F32", [1], four)])
        bad[0] = 0xFF; bad[1] = 0xFF
        guard case .badHeaderLength = error(bad) else { Issue.record("length"); return }
        // Not JSON.
        guard case .badHeader = error(safetensorsBytes([], headerOverride: "{not json")) else { Issue.record("json"); return }
        // Offsets out of range.
        let outside = safetensorsBytes([("x", "F32", [1], four)], headerOverride: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}"#)
        guard case .badTensorExtent(_, "x", _) = error(outside) else { Issue.record("extent"); return }
        // Shape x dtype size different from the byte length.
        let short = safetensorsBytes([("x", "F32", [2], four)])
        guard case .badTensorExtent(_, "x", _) = error(short) else { Issue.record("size"); return }
        // Overlap.
        let overlap = safetensorsBytes([("x", "F32", [1], four), ("y", "F32", [1], four)],
                                       headerOverride: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#)
        guard case .overlappingTensors = error(overlap) else { Issue.record("overlap"); return }
        // Missing fields.
        let noShape = safetensorsBytes([("x", "F32", [1], four)], headerOverride: #"{"x":{"dtype":"F32","data_offsets":[0,4]}}"#)
        guard case .badTensorEntry(_, "x", _) = error(noShape) else { Issue.record("shape"); return }
    }

    @Test("truncating the fixture at 400 offsets and flipping header bytes never crashes")
    func truncationAndCorruption() throws {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: Self.fixture)))
        var rng = SystemRandomNumberGenerator()
        var offsets = Array(0 ..< 64) + (0 ..< 336).map { _ in Int.random(in: 0 ..< bytes.count, using: &rng) }
        offsets.append(bytes.count - 1)
        for cut in offsets {
            #expect(error(Array(bytes[0 ..< cut])) != nil, "truncated at \(cut) parsed")
        }
        let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16
        for _ in 0 ..< 200 {
            var copy = bytes
            copy[Int.random(in: 0 ..< 8 + headerLength, using: &rng)] = UInt8.random(in: 0 ... 255, using: &rng)
            if let file = try? open(copy) {
                for info in file.tensors.values { _ = file.floats(info) }  // whatever parses must be readable
            }
        }
    }

    // MARK: directories

    /// The fixture directory's config.json and weights split into two shards with an index.
    func shardedCopy(dropSecondShard: Bool = false, config: String? = nil) throws -> String {
        let dir = temporaryPath()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let source = try SafeTensorsFile(path: Self.fixture)
        let names = source.tensors.keys.sorted()
        var map: [String: String] = [:]
        for (i, part) in [Array(names.prefix(names.count / 2)), Array(names.dropFirst(names.count / 2))].enumerated() {
            let shard = "model-0000\(i + 1)-of-00002.safetensors"
            let tensors = part.map { n in
                let info = source.tensors[n]!
                return (name: n, dtype: "F32", shape: info.shape, data: Array(source.bytes(info)))
            }
            for n in part { map[n] = shard }
            if i == 1 && dropSecondShard { continue }
            _ = FileManager.default.createFile(atPath: dir + "/" + shard, contents: Data(safetensorsBytes(tensors)))
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": map])
        _ = FileManager.default.createFile(atPath: dir + "/model.safetensors.index.json", contents: index)
        let configText = try config ?? String(contentsOfFile: Fixtures.path("glm4-tiny/config.json"), encoding: .utf8)
        _ = FileManager.default.createFile(atPath: dir + "/config.json", contents: Data(configText.utf8))
        return dir
    }

    @Test("a sharded directory converts to exactly the tensors of the single-file one")
    func sharded() throws {
        let dir = try shardedCopy()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sharded = try SafeTensorsDirectory(path: dir)
        #expect(sharded.files.count == 2)
        let single = try SafeTensorsDirectory(path: Fixtures.path("glm4-tiny"))
        let config = try HuggingFaceConfig(directory: single)
        #expect(config.ggufArchitecture == "glm4" && config.rotaryDimensions == 8 && config.ropeTheta == 10000)
        var a = GGUFWriter(), b = GGUFWriter()
        _ = try HuggingFaceImport.convert(sharded, config: config, type: .f32, into: &a)
        _ = try HuggingFaceImport.convert(single, config: config, type: .f32, into: &b)
        #expect(a.serialize() == b.serialize())
    }

    @Test("a missing shard names the index, the shard and a tensor in it")
    func missingShard() throws {
        let dir = try shardedCopy(dropSecondShard: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try SafeTensorsDirectory(path: dir)
            Issue.record("loaded without its second shard")
        } catch {
            guard case .missingShard(let index, let shard, let tensor) = error else { Issue.record("\(error)"); return }
            #expect(index.hasSuffix("model.safetensors.index.json") && shard == "model-00002-of-00002.safetensors" && !tensor.isEmpty)
            #expect(error.description.contains(shard))
        }
    }

    @Test("config.json disagreeing with the weights names the file and the tensor")
    func shapeMismatch() throws {
        let text = try String(contentsOfFile: Fixtures.path("glm4-tiny/config.json"), encoding: .utf8)
            .replacingOccurrences(of: "\"intermediate_size\": 128", with: "\"intermediate_size\": 96")
        let dir = try shardedCopy(config: text)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let d = try SafeTensorsDirectory(path: dir)
        let config = try HuggingFaceConfig(directory: d)
        var w = GGUFWriter()
        do {
            _ = try HuggingFaceImport.convert(d, config: config, type: nil, into: &w)
            Issue.record("converted with a wrong intermediate_size")
        } catch {
            guard case .safetensors(.shapeMismatch(let path, let tensor, let expected, let found)) = error else { Issue.record("\(error)"); return }
            #expect(path.hasSuffix(".safetensors") && tensor == "model.layers.0.mlp.gate_up_proj.weight")
            #expect(expected == [192, 64] && found == [256, 64])
        }
    }

    @Test("a missing tensor and an unknown architecture are named")
    func missingTensorAndArchitecture() throws {
        let dir = temporaryPath()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: Fixtures.path("glm4-tiny/config.json"), toPath: dir + "/config.json")
        _ = FileManager.default.createFile(atPath: dir + "/model.safetensors",
                                       contents: Data(safetensorsBytes([("model.norm.weight", "F32", [1], [0, 0, 0x80, 0x3F])])))
        let d = try SafeTensorsDirectory(path: dir)
        let config = try HuggingFaceConfig(directory: d)
        var w = GGUFWriter()
        do {
            _ = try HuggingFaceImport.convert(d, config: config, type: nil, into: &w)
            Issue.record("converted without weights")
        } catch {
            guard case .safetensors(.missingTensor(_, "model.embed_tokens.weight")) = error else { Issue.record("\(error)"); return }
        }
        #expect(throws: SafeTensorsError.self) {
            try HuggingFaceConfig(json: ["architectures": ["MixtralForCausalLM"]], path: "config.json", name: "x")
        }
    }
}

/// A Llama Hugging Face directory made from the tiny Llama GGUF by undoing llama.cpp's Q/K permutation: importing
/// it must give back the GGUF's tensors and logits exactly.
@Suite("Llama safetensors import")
struct LlamaImportTests {
    @Test("HF layout (rotate_half Q/K rows) -> GGUF layout: tensors byte-identical, logits identical")
    func llamaRoundTrip() throws {
        let gguf = try GGUFFile(path: Fixtures.path("tiny-llama-f32.gguf"))
        let c = try ModelConfiguration(file: gguf, architecture: "llama")
        let dir = temporaryPath()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        func raw(_ name: String) -> [UInt8] { Array(gguf.tensorBytes(gguf.tensorInfo(named: name)!)) }
        /// GGUF row 2i + s of a head came from HF row s * d/2 + i: put it back.
        func unpermute(_ bytes: [UInt8], heads: Int, columns: Int) -> [UInt8] {
            let rowBytes = columns * 4, d = bytes.count / rowBytes / heads, half = d / 2
            var out = bytes
            for h in 0 ..< heads {
                for i in 0 ..< half {
                    for s in 0 ..< 2 {
                        let from = (h * d + 2 * i + s) * rowBytes, to = (h * d + s * half + i) * rowBytes
                        out.replaceSubrange(to ..< to + rowBytes, with: bytes[from ..< from + rowBytes])
                    }
                }
            }
            return out
        }
        let h = c.embeddingWidth
        var tensors: [(name: String, dtype: String, shape: [Int], data: [UInt8])] = [
            ("model.embed_tokens.weight", "F32", [c.vocabularySize, h], raw("token_embd.weight")),
            ("model.norm.weight", "F32", [h], raw("output_norm.weight")),
        ]
        let tied = gguf.tensorInfo(named: "output.weight") == nil
        if !tied { tensors.append(("lm_head.weight", "F32", [c.vocabularySize, h], raw("output.weight"))) }
        for i in 0 ..< c.layerCount {
            let b = "blk.\(i).", p = "model.layers.\(i)."
            tensors += [
                (p + "input_layernorm.weight", "F32", [h], raw(b + "attn_norm.weight")),
                (p + "self_attn.q_proj.weight", "F32", [c.queryWidth, h], unpermute(raw(b + "attn_q.weight"), heads: c.headCount, columns: h)),
                (p + "self_attn.k_proj.weight", "F32", [c.kvWidth, h], unpermute(raw(b + "attn_k.weight"), heads: c.kvHeadCount, columns: h)),
                (p + "self_attn.v_proj.weight", "F32", [c.kvWidth, h], raw(b + "attn_v.weight")),
                (p + "self_attn.o_proj.weight", "F32", [h, c.queryWidth], raw(b + "attn_output.weight")),
                (p + "post_attention_layernorm.weight", "F32", [h], raw(b + "ffn_norm.weight")),
                (p + "mlp.gate_proj.weight", "F32", [c.feedForwardWidth, h], raw(b + "ffn_gate.weight")),
                (p + "mlp.up_proj.weight", "F32", [c.feedForwardWidth, h], raw(b + "ffn_up.weight")),
                (p + "mlp.down_proj.weight", "F32", [h, c.feedForwardWidth], raw(b + "ffn_down.weight")),
            ]
        }
        _ = FileManager.default.createFile(atPath: dir + "/model.safetensors", contents: Data(safetensorsBytes(tensors)))
        let config: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "hidden_size": h, "intermediate_size": c.feedForwardWidth,
            "num_hidden_layers": c.layerCount, "num_attention_heads": c.headCount, "num_key_value_heads": c.kvHeadCount,
            "rms_norm_eps": Double(c.normEpsilon), "rope_theta": Double(c.ropeBase), "max_position_embeddings": c.contextLength,
            "vocab_size": c.vocabularySize, "tie_word_embeddings": tied,
        ]
        _ = FileManager.default.createFile(atPath: dir + "/config.json", contents: try JSONSerialization.data(withJSONObject: config))

        let directory = try SafeTensorsDirectory(path: dir)
        var writer = GGUFWriter()
        _ = try HuggingFaceImport.convert(directory, config: try HuggingFaceConfig(directory: directory), type: nil, into: &writer)
        let imported = try GGUFFile(mappedFile: try MappedFile(copying: writer.serialize(), name: dir))
        for info in gguf.tensors {
            let mine = try #require(imported.tensorInfo(named: info.name), "\(info.name)")
            #expect(Array(imported.tensorBytes(mine)) == Array(gguf.tensorBytes(info)), "\(info.name)")
        }
        let tokens = [1, 5, 9, 2, 7, 3]
        var logits: [[Float]] = []
        for file in [gguf, imported] {
            let model = try ArchitectureRegistry.load(file, threads: 1)
            let cache = PagedKVCache(configuration: model.configuration, tokens: 32, blockSize: 16, elementType: .f32)
            let out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: [0, 1], logits: .all)], cache: cache)
            logits.append(Array(out.values))
        }
        #expect(logits[0] == logits[1])
    }
}
