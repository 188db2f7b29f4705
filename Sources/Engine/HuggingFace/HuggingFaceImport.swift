public import GGUF
public import SafeTensors
import Kernels

/// Turns a Hugging Face model directory into a GGUF with llama.cpp's architecture keys and tensor names, so the
/// same model classes run it and `autoglm convert` writes a file llama.cpp reads. Used twice: at load time
/// (the GGUF lives in memory) and by `convert` (it goes to disk).
///
/// Matrices are stored in the requested type (nil keeps each tensor's own F32/F16/BF16); norms and biases are
/// always F32, as llama.cpp's converter writes them. A matrix whose rows are not a whole number of blocks of the
/// requested type falls back (Q4_K -> Q4_0 -> F16, Q8_0/Q4_0 -> F16) and the report says so.
public enum HuggingFaceImport {
    /// What a conversion did.
    public struct Report: Sendable, Equatable {
        /// Bytes of the tensors as stored in the safetensors files.
        public var sourceBytes = 0
        /// Bytes of the converted tensors.
        public var resultBytes = 0
        public var tensorCount = 0
        /// Tensor count per type written.
        public var typeCounts: [String: Int] = [:]
        /// Fallbacks and other remarks, one line each.
        public var notes: [String] = []

        public var summary: String {
            let types = typeCounts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            return "\(tensorCount) tensors (\(types)): \(Self.mib(sourceBytes)) in safetensors -> \(Self.mib(resultBytes)) converted"
        }

        static func mib(_ bytes: Int) -> String {
            bytes >= 1 << 30 ? "\((Double(bytes) / Double(1 << 30) * 100).rounded() / 100) GiB"
                : "\((Double(bytes) / Double(1 << 20) * 100).rounded() / 100) MiB"
        }
    }

    /// One tensor to write: its GGUF name, its transformers name, its expected PyTorch shape, and whether its
    /// rows must be reordered for ggml's adjacent-pair RoPE (Llama Q and K; the value is the head count).
    struct Mapping {
        let gguf: String
        let hf: String
        let shape: [Int]
        var permuteHeads: Int? = nil
        /// GLM-4.1V's Q/K (weights and biases) with M-RoPE: per head, the rotary rows' even ones first, then the odd
        /// ones (llama.cpp's converter; its M-RoPE kernel pairs i with i + rot/2). (heads, rotary dimensions).
        var neoxRotary: (heads: Int, rotary: Int)? = nil
        /// A Conv3d kernel [out, C, T, kh, kw]: keep temporal frame `frame` only ([out, C, kh, kw]).
        var temporalFrame: (frame: Int, frames: Int)? = nil
    }

    /// Adds the architecture metadata and every tensor of `directory` to `writer`.
    public static func convert(
        _ directory: SafeTensorsDirectory, config c: HuggingFaceConfig, type: GGUFTensorType?, into writer: inout GGUFWriter
    ) throws(EngineError) -> Report {
        if let type, !WeightQuantization.writableTypes.contains(type) {
            throw .badHyperparameter(key: "quantize", value: "\(type)",
                                     reason: "autoglm writes \(WeightQuantization.writableTypes.map { $0.description.lowercased() }.joined(separator: ", "))")
        }
        let a = c.ggufArchitecture
        writer.set("general.architecture", .string(a))
        writer.set("general.name", .string(c.name))
        writer.set("\(a).context_length", .uint32(UInt32(c.contextLength)))
        writer.set("\(a).embedding_length", .uint32(UInt32(c.hiddenSize)))
        writer.set("\(a).block_count", .uint32(UInt32(c.layerCount)))
        writer.set("\(a).feed_forward_length", .uint32(UInt32(c.intermediateSize)))
        writer.set("\(a).attention.head_count", .uint32(UInt32(c.headCount)))
        writer.set("\(a).attention.head_count_kv", .uint32(UInt32(c.kvHeadCount)))
        writer.set("\(a).attention.key_length", .uint32(UInt32(c.headDimension)))
        writer.set("\(a).attention.value_length", .uint32(UInt32(c.headDimension)))
        writer.set("\(a).rope.freq_base", .float32(Float(c.ropeTheta)))
        writer.set("\(a).attention.layer_norm_rms_epsilon", .float32(Float(c.normEpsilon)))
        writer.set("\(a).rope.dimension_count", .uint32(UInt32(c.rotaryDimensions)))
        writer.set("\(a).vocab_size", .uint32(UInt32(c.vocabularySize)))
        if let sections = c.mropeSection {
            let padded = Array((sections + [0, 0, 0, 0]).prefix(4))
            writer.set("\(a).rope.dimension_sections", .array(.int32, padded.map { .int32(Int32($0)) }))
        }
        writer.set("general.file_type", .uint32(fileType(type)))
        return try write(try mappings(directory, config: c), from: directory, type: type, into: &writer)
    }

    /// The vision tower of a `Glm4vForConditionalGeneration` directory as llama.cpp's mmproj GGUF (`clip.projector_type`
    /// = `glm4v`): what `--mmproj` takes, and what the engine's vision encoder reads.
    public static func convertVision(
        _ directory: SafeTensorsDirectory, config c: HuggingFaceConfig, type: GGUFTensorType?, into writer: inout GGUFWriter
    ) throws(EngineError) -> Report {
        guard let v = c.vision else {
            throw .badHyperparameter(key: "vision_config", value: "missing", reason: "\(c.transformersClass) has no vision tower")
        }
        writer.set("general.architecture", .string("clip"))
        writer.set("general.name", .string(c.name + "-mmproj"))
        writer.set("clip.has_vision_encoder", .bool(true))
        writer.set("clip.projector_type", .string(GLM4VisionConfiguration.projectorType))
        writer.set("clip.use_silu", .bool(true))
        for (key, value) in [("projection_dim", c.hiddenSize), ("image_size", v.imageSize), ("patch_size", v.patchSize),
                             ("embedding_length", v.hiddenSize), ("feed_forward_length", v.intermediateSize),
                             ("block_count", v.depth), ("attention.head_count", v.headCount),
                             ("spatial_merge_size", v.spatialMergeSize)] {
            writer.set("clip.vision.\(key)", .uint32(UInt32(value)))
        }
        writer.set("clip.vision.attention.layer_norm_epsilon", .float32(Float(v.normEpsilon)))
        writer.set("general.file_type", .uint32(fileType(type)))
        let prefix = directory.has("model.visual.patch_embed.proj.weight") ? "model.visual." : "visual."
        let d = v.hiddenSize, p = v.patchSize, out = v.outHiddenSize, m = v.spatialMergeSize, t = v.temporalPatchSize
        let side = v.imageSize / p
        var maps: [Mapping] = (0 ..< t).map { frame in
            Mapping(gguf: frame == 0 ? "v.patch_embd.weight" : "v.patch_embd.weight.\(frame)", hf: prefix + "patch_embed.proj.weight",
                    shape: [d, 3, t, p, p], temporalFrame: (frame, t))
        }
        maps.append(Mapping(gguf: "v.patch_embd.bias", hf: prefix + "patch_embed.proj.bias", shape: [d]))
        maps.append(Mapping(gguf: "v.norm_embd.weight", hf: prefix + "post_conv_layernorm.weight", shape: [d]))
        maps.append(Mapping(gguf: "v.position_embd.weight", hf: prefix + "embeddings.position_embedding.weight", shape: [side * side, d]))
        for i in 0 ..< v.depth {
            let h = "\(prefix)blocks.\(i).", g = "v.blk.\(i)."
            maps.append(Mapping(gguf: g + "ln1.weight", hf: h + "norm1.weight", shape: [d]))
            maps.append(Mapping(gguf: g + "ln2.weight", hf: h + "norm2.weight", shape: [d]))
            maps.append(Mapping(gguf: g + "attn_qkv.weight", hf: h + "attn.qkv.weight", shape: [3 * d, d]))
            if directory.has(h + "attn.qkv.bias") { maps.append(Mapping(gguf: g + "attn_qkv.bias", hf: h + "attn.qkv.bias", shape: [3 * d])) }
            maps.append(Mapping(gguf: g + "attn_out.weight", hf: h + "attn.proj.weight", shape: [d, d]))
            maps.append(Mapping(gguf: g + "ffn_gate.weight", hf: h + "mlp.gate_proj.weight", shape: [out, d]))
            maps.append(Mapping(gguf: g + "ffn_up.weight", hf: h + "mlp.up_proj.weight", shape: [out, d]))
            maps.append(Mapping(gguf: g + "ffn_down.weight", hf: h + "mlp.down_proj.weight", shape: [d, out]))
        }
        maps.append(Mapping(gguf: "v.post_ln.weight", hf: prefix + "post_layernorm.weight", shape: [d]))
        maps.append(Mapping(gguf: "mm.patch_merger.weight", hf: prefix + "downsample.weight", shape: [out, d, m, m]))
        maps.append(Mapping(gguf: "mm.patch_merger.bias", hf: prefix + "downsample.bias", shape: [out]))
        maps.append(Mapping(gguf: "mm.model.fc.weight", hf: prefix + "merger.proj.weight", shape: [out, out]))
        maps.append(Mapping(gguf: "mm.post_norm.weight", hf: prefix + "merger.post_projection_norm.weight", shape: [out]))
        maps.append(Mapping(gguf: "mm.post_norm.bias", hf: prefix + "merger.post_projection_norm.bias", shape: [out]))
        maps.append(Mapping(gguf: "mm.gate.weight", hf: prefix + "merger.gate_proj.weight", shape: [v.intermediateSize, out]))
        maps.append(Mapping(gguf: "mm.up.weight", hf: prefix + "merger.up_proj.weight", shape: [v.intermediateSize, out]))
        maps.append(Mapping(gguf: "mm.down.weight", hf: prefix + "merger.down_proj.weight", shape: [out, v.intermediateSize]))
        return try write(maps, from: directory, type: type, into: &writer)
    }

    /// Reads, reorders, converts and adds each mapped tensor. Kernels are stored as matrices: a tensor's first
    /// dimension is its rows, the rest its columns (a 2D kernel [out, C, kh, kw] is a matrix of C x kh x kw columns).
    private static func write(
        _ maps: [Mapping], from directory: SafeTensorsDirectory, type: GGUFTensorType?, into writer: inout GGUFWriter
    ) throws(EngineError) -> Report {
        var report = Report()
        var fallbacks: [String: [String]] = [:]  // "rows of N: requested -> stored" -> tensor names
        for m in maps {
            let (file, info) = try lookup(directory, m.hf)
            guard info.shape == m.shape else {
                throw .safetensors(.shapeMismatch(path: file.path, tensor: m.hf, expected: m.shape, found: info.shape))
            }
            var values = file.floats(info)
            var shape = m.shape
            // Convolution kernels keep their 4D shape in the file (llama.cpp's graph reads them as kernels) and are
            // stored in F16 (F32 when asked for): their rows (14 or 2 wide) are no whole block of any quantized type.
            let isKernel = m.shape.count > 2
            if let heads = m.permuteHeads { values = permuteForAdjacentPairRoPE(values, rows: m.shape[0], columns: m.shape[1], heads: heads) }
            if let (heads, rotary) = m.neoxRotary {
                values = permuteRotaryToNeoX(values, rows: m.shape[0], columns: m.shape.count > 1 ? m.shape[1] : 1, heads: heads, rotary: rotary)
            }
            if let (frame, frames) = m.temporalFrame {
                values = temporalSlice(values, shape: m.shape, frame: frame, frames: frames)
                shape = [m.shape[0], m.shape[1], m.shape[3], m.shape[4]]
            }
            let columns = shape.last ?? 1

            let target: GGUFTensorType
            if shape.count == 1 || m.gguf.hasSuffix("norm.weight") || m.gguf.hasSuffix("position_embd.weight") {
                target = .f32
            } else if isKernel {
                target = (type ?? info.dtype.ggufType) == .f32 ? .f32 : .f16
            } else {
                let requested = type ?? info.dtype.ggufType
                target = storageType(requested: requested, columns: columns)
                if target != requested {
                    fallbacks["rows of \(columns) are not whole \(requested) blocks of \(requested.blockSize); stored as \(target)", default: []].append(m.gguf)
                }
            }
            guard let data = WeightQuantization.quantize(values, to: target) else {
                throw .unsupportedTensorType(m.gguf, target)
            }
            writer.addTensor(name: m.gguf, dimensions: shape.reversed(), type: target, data: data)
            report.sourceBytes += info.byteCount
            report.resultBytes += data.count
            report.tensorCount += 1
            report.typeCounts[target.description, default: 0] += 1
        }
        for (reason, names) in fallbacks.sorted(by: { $0.key < $1.key }) {
            let shown = names.prefix(3).joined(separator: ", ") + (names.count > 3 ? " and \(names.count - 3) more" : "")
            report.notes.append("\(names.count) matrices (\(shown)): \(reason)")
        }
        return report
    }

    /// The requested type when a row is a whole number of its blocks, else the nearest smaller-block type.
    static func storageType(requested: GGUFTensorType, columns: Int) -> GGUFTensorType {
        var candidates: [GGUFTensorType] = [requested]
        if requested == .q4_K { candidates.append(.q4_0) }
        candidates.append(.f16)
        return candidates.first { columns % $0.blockSize == 0 } ?? .f32
    }

    static func fileType(_ type: GGUFTensorType?) -> UInt32 {
        // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_Q4_K_M 15, MOSTLY_BF16 32.
        switch type {
        case .f32: 0
        case .f16: 1
        case .q4_0: 2
        case .q8_0: 7
        case .q4_K: 15
        case .bf16: 32
        default: 1
        }
    }

    private static func lookup(_ d: SafeTensorsDirectory, _ name: String) throws(EngineError) -> (SafeTensorsFile, SafeTensorInfo) {
        do { return try d.tensor(name) } catch { throw .safetensors(error) }
    }

    /// llama.cpp's name map for each architecture (convert_hf_to_gguf.py + gguf-py's tensor_mapping).
    static func mappings(_ d: SafeTensorsDirectory, config c: HuggingFaceConfig) throws(EngineError) -> [Mapping] {
        let h = c.hiddenSize, q = c.headCount * c.headDimension, kv = c.kvHeadCount * c.headDimension
        let ff = c.intermediateSize, v = c.vocabularySize
        // GLM-4.1V checkpoints keep the language model under `model.language_model.` (transformers >= 4.52) or `model.`.
        let lm = d.has("model.language_model.embed_tokens.weight") ? "model.language_model." : "model."
        var out = [Mapping(gguf: "token_embd.weight", hf: lm + "embed_tokens.weight", shape: [v, h])]
        for i in 0 ..< c.layerCount {
            let p = "\(lm)layers.\(i).", b = "blk.\(i)."
            out.append(Mapping(gguf: b + "attn_norm.weight", hf: p + "input_layernorm.weight", shape: [h]))
            switch c.ggufArchitecture {
            case "glm4":
                // GLM-4's rotary pairs are already adjacent (HF's interleaved rotate): Q/K rows are kept as they are.
                // With M-RoPE (GLM-4.1V) the rotary rows go to NeoX order, as llama.cpp's converter writes them.
                for (proj, name, rows, heads) in [("q", "attn_q", q, c.headCount), ("k", "attn_k", kv, c.kvHeadCount), ("v", "attn_v", kv, 0)] {
                    let neox: (heads: Int, rotary: Int)? = c.mropeSection != nil && heads > 0 ? (heads, c.rotaryDimensions) : nil
                    out.append(Mapping(gguf: "\(b)\(name).weight", hf: "\(p)self_attn.\(proj)_proj.weight", shape: [rows, h], neoxRotary: neox))
                    if d.has("\(p)self_attn.\(proj)_proj.bias") {
                        out.append(Mapping(gguf: "\(b)\(name).bias", hf: "\(p)self_attn.\(proj)_proj.bias", shape: [rows], neoxRotary: neox))
                    }
                }
                out.append(Mapping(gguf: b + "attn_output.weight", hf: p + "self_attn.o_proj.weight", shape: [h, q]))
                out.append(Mapping(gguf: b + "post_attention_norm.weight", hf: p + "post_self_attn_layernorm.weight", shape: [h]))
                out.append(Mapping(gguf: b + "ffn_norm.weight", hf: p + "post_attention_layernorm.weight", shape: [h]))
                out.append(Mapping(gguf: b + "ffn_up.weight", hf: p + "mlp.gate_up_proj.weight", shape: [2 * ff, h]))
                out.append(Mapping(gguf: b + "ffn_down.weight", hf: p + "mlp.down_proj.weight", shape: [h, ff]))
                out.append(Mapping(gguf: b + "post_ffw_norm.weight", hf: p + "post_mlp_layernorm.weight", shape: [h]))
            default:
                // Llama: HF stores Q/K for rotate_half (pairs i, i + d/2); ggml's NORM rope wants adjacent pairs.
                out.append(Mapping(gguf: b + "attn_q.weight", hf: p + "self_attn.q_proj.weight", shape: [q, h], permuteHeads: c.headCount))
                out.append(Mapping(gguf: b + "attn_k.weight", hf: p + "self_attn.k_proj.weight", shape: [kv, h], permuteHeads: c.kvHeadCount))
                out.append(Mapping(gguf: b + "attn_v.weight", hf: p + "self_attn.v_proj.weight", shape: [kv, h]))
                out.append(Mapping(gguf: b + "attn_output.weight", hf: p + "self_attn.o_proj.weight", shape: [h, q]))
                out.append(Mapping(gguf: b + "ffn_norm.weight", hf: p + "post_attention_layernorm.weight", shape: [h]))
                out.append(Mapping(gguf: b + "ffn_gate.weight", hf: p + "mlp.gate_proj.weight", shape: [ff, h]))
                out.append(Mapping(gguf: b + "ffn_up.weight", hf: p + "mlp.up_proj.weight", shape: [ff, h]))
                out.append(Mapping(gguf: b + "ffn_down.weight", hf: p + "mlp.down_proj.weight", shape: [h, ff]))
            }
        }
        out.append(Mapping(gguf: "output_norm.weight", hf: lm + "norm.weight", shape: [h]))
        if !c.tieWordEmbeddings || d.has("lm_head.weight") {
            out.append(Mapping(gguf: "output.weight", hf: "lm_head.weight", shape: [v, h]))
        }
        return out
    }

    /// Per head, the first `rotary` rows reordered even rows first, then odd ones (adjacent pairs -> NeoX pairs); the
    /// rows past `rotary` stay. llama.cpp's Glm4Model converter with M-RoPE.
    static func permuteRotaryToNeoX(_ w: [Float], rows: Int, columns: Int, heads: Int, rotary: Int) -> [Float] {
        let d = rows / heads, half = rotary / 2
        var out = w
        for head in 0 ..< heads {
            for i in 0 ..< rotary {
                let source = head * d + (i < half ? 2 * i : 2 * (i - half) + 1), target = head * d + i
                for c in 0 ..< columns { out[target * columns + c] = w[source * columns + c] }
            }
        }
        return out
    }

    /// Frame `frame` of a Conv3d kernel [out, C, T, kh, kw], as [out, C, kh, kw].
    static func temporalSlice(_ w: [Float], shape: [Int], frame: Int, frames: Int) -> [Float] {
        let (outs, channels, plane) = (shape[0], shape[1], shape[3] * shape[4])
        var out = [Float](repeating: 0, count: outs * channels * plane)
        for o in 0 ..< outs {
            for c in 0 ..< channels {
                let source = ((o * channels + c) * frames + frame) * plane, target = (o * channels + c) * plane
                for k in 0 ..< plane { out[target + k] = w[source + k] }
            }
        }
        return out
    }

    /// Reorders the rows of each head from HF's halves layout (row i pairs with row i + d/2) to ggml's adjacent
    /// pairs (rows 2i, 2i + 1): new row 2i + s of a head is old row s * d/2 + i. llama.cpp's `LlamaModel.permute`.
    static func permuteForAdjacentPairRoPE(_ w: [Float], rows: Int, columns: Int, heads: Int) -> [Float] {
        let d = rows / heads, half = d / 2
        var out = [Float](repeating: 0, count: w.count)
        for head in 0 ..< heads {
            for i in 0 ..< half {
                for s in 0 ..< 2 {
                    let src = (head * d + s * half + i) * columns, dst = (head * d + 2 * i + s) * columns
                    for c in 0 ..< columns { out[dst + c] = w[src + c] }
                }
            }
        }
        return out
    }
}
