import Foundation
public import SafeTensors

/// The hyperparameters of a transformers `config.json`, for the architectures autoglm can import, with the
/// GGUF architecture each maps to (llama.cpp's convert_hf_to_gguf.py names).
public struct HuggingFaceConfig: Sendable, Equatable {
    /// transformers class (`architectures[0]`) -> GGUF `general.architecture`.
    public static let architectures: [String: String] = [
        "Glm4ForCausalLM": "glm4",       // GLM-4-0414 (GLM-4-9B-0414, GLM-4-32B-0414)
        "Glm4vForConditionalGeneration": "glm4",  // GLM-4.1V, AutoGLM-Phone-9B: the text model, plus a vision tower
        "LlamaForCausalLM": "llama",     // Llama 2/3, SmolLM2
    ]

    public var transformersClass: String
    public var ggufArchitecture: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDimension: Int
    public var rotaryDimensions: Int
    public var ropeTheta: Double
    public var normEpsilon: Double
    public var contextLength: Int
    public var vocabularySize: Int
    public var tieWordEmbeddings: Bool
    public var name: String
    /// GLM-4.1V's M-RoPE sections in rotary pairs (temporal, height, width), nil for text-only models.
    public var mropeSection: [Int]?
    /// The vision tower's settings (`vision_config`), for `Glm4vForConditionalGeneration`.
    public var vision: HuggingFaceVisionConfig?

    public init(directory: SafeTensorsDirectory) throws(SafeTensorsError) {
        try self.init(json: try directory.configuration(), path: (directory.path as NSString).appendingPathComponent("config.json"),
                      name: (directory.path as NSString).lastPathComponent)
    }

    public init(json top: [String: Any], path: String, name: String) throws(SafeTensorsError) {
        // Vision-language models keep the language model's settings in `text_config`.
        var c = top
        if let text = top["text_config"] as? [String: Any] {
            c = text
            c["architectures"] = top["architectures"]
            if c["tie_word_embeddings"] == nil { c["tie_word_embeddings"] = top["tie_word_embeddings"] }
        }
        guard let classes = c["architectures"] as? [String], let cls = classes.first else {
            throw .badConfig(path: path, key: "architectures", reason: "is missing: it should name the transformers class, e.g. [\"Glm4ForCausalLM\"]")
        }
        guard let arch = Self.architectures[cls] else {
            throw .badConfig(path: path, key: "architectures", reason: "is \(cls), which autoglm cannot import (it imports \(Self.architectures.keys.sorted().joined(separator: ", "))); convert the model to GGUF with llama.cpp instead")
        }
        func int(_ key: String, default value: Int? = nil) throws(SafeTensorsError) -> Int {
            if let v = c[key] as? Int { return v }
            if c[key] == nil || c[key] is NSNull, let value { return value }
            throw .badConfig(path: path, key: key, reason: c[key] == nil ? "is missing" : "is not an integer")
        }
        // transformers >= 5 moves rope settings into `rope_parameters`; older configs have them at the top.
        let rope = (c["rope_parameters"] as? [String: Any]) ?? (c["rope_scaling"] as? [String: Any]) ?? [:]
        func double(_ key: String, default value: Double) throws(SafeTensorsError) -> Double {
            for source in [c, rope] {
                if let v = source[key] as? Double { return v }
                if let v = source[key] as? Int { return Double(v) }
            }
            return value
        }
        if let type = (rope["rope_type"] as? String) ?? (rope["type"] as? String), type != "default" {
            throw .badConfig(path: path, key: "rope_type", reason: "is '\(type)'; autoglm runs plain RoPE only (no llama3/yarn/linear scaling) so far")
        }
        transformersClass = cls
        ggufArchitecture = arch
        hiddenSize = try int("hidden_size")
        intermediateSize = try int("intermediate_size")
        layerCount = try int("num_hidden_layers")
        headCount = try int("num_attention_heads")
        kvHeadCount = try int("num_key_value_heads", default: headCount)
        guard hiddenSize > 0, intermediateSize > 0, layerCount > 0, headCount > 0, kvHeadCount > 0, headCount % kvHeadCount == 0 else {
            throw .badConfig(path: path, key: "num_key_value_heads", reason: "and the sizes must be positive, with num_attention_heads a multiple of num_key_value_heads")
        }
        headDimension = try int("head_dim", default: hiddenSize / headCount)
        // Glm4Config's default partial_rotary_factor is 0.5; Llama rotates the whole head.
        let partial = try double("partial_rotary_factor", default: arch == "glm4" ? 0.5 : 1.0)
        rotaryDimensions = Int((Double(headDimension) * partial).rounded())
        guard rotaryDimensions > 0, rotaryDimensions % 2 == 0, rotaryDimensions <= headDimension else {
            throw .badConfig(path: path, key: "partial_rotary_factor", reason: "gives \(rotaryDimensions) rotary dimensions of a \(headDimension)-wide head; it must be even and at most the head")
        }
        ropeTheta = try double("rope_theta", default: 10000)
        normEpsilon = try double("rms_norm_eps", default: 1e-5)
        contextLength = try int("max_position_embeddings", default: 2048)
        vocabularySize = try int("vocab_size")
        tieWordEmbeddings = (c["tie_word_embeddings"] as? Bool) ?? false
        self.name = name
        if let section = rope["mrope_section"] {
            guard let pairs = section as? [Int], (1 ... 4).contains(pairs.count), pairs.allSatisfy({ $0 >= 0 }),
                  pairs.reduce(0, +) <= rotaryDimensions / 2 else {
                throw .badConfig(path: path, key: "mrope_section", reason: "must be up to four pair counts within the \(rotaryDimensions / 2) rotary pairs")
            }
            mropeSection = pairs
        }
        if cls == "Glm4vForConditionalGeneration" {
            guard let v = top["vision_config"] as? [String: Any] else {
                throw .badConfig(path: path, key: "vision_config", reason: "is missing: a Glm4vForConditionalGeneration has a vision tower")
            }
            vision = try HuggingFaceVisionConfig(json: v, top: top, path: path)
            if mropeSection == nil { mropeSection = [8, 12, 12] }
        }
    }
}

/// transformers' `Glm4vVisionConfig` and the image token ids of `Glm4vConfig`.
public struct HuggingFaceVisionConfig: Sendable, Equatable {
    public var depth: Int
    public var hiddenSize: Int
    public var headCount: Int
    public var patchSize: Int
    public var imageSize: Int
    public var spatialMergeSize: Int
    public var temporalPatchSize: Int
    public var outHiddenSize: Int
    public var intermediateSize: Int
    public var normEpsilon: Double
    public var imageTokenID: Int
    public var imageStartTokenID: Int
    public var imageEndTokenID: Int

    init(json v: [String: Any], top: [String: Any], path: String) throws(SafeTensorsError) {
        func int(_ source: [String: Any], _ key: String, _ value: Int) throws(SafeTensorsError) -> Int {
            guard let raw = source[key] else { return value }
            guard let i = raw as? Int, i > 0 else { throw .badConfig(path: path, key: "vision_config.\(key)", reason: "must be a positive integer") }
            return i
        }
        depth = try int(v, "depth", 24)
        hiddenSize = try int(v, "hidden_size", 1536)
        headCount = try int(v, "num_heads", 12)
        patchSize = try int(v, "patch_size", 14)
        imageSize = try int(v, "image_size", 336)
        spatialMergeSize = try int(v, "spatial_merge_size", 2)
        temporalPatchSize = try int(v, "temporal_patch_size", 2)
        outHiddenSize = try int(v, "out_hidden_size", 4096)
        intermediateSize = try int(v, "intermediate_size", 13696)
        normEpsilon = (v["rms_norm_eps"] as? Double) ?? 1e-5
        imageTokenID = try int(top, "image_token_id", 151343)
        imageStartTokenID = try int(top, "image_start_token_id", 151339)
        imageEndTokenID = try int(top, "image_end_token_id", 151340)
        guard hiddenSize % headCount == 0, (hiddenSize / headCount) % 4 == 0, imageSize % patchSize == 0 else {
            throw .badConfig(path: path, key: "vision_config", reason: "needs hidden_size a multiple of num_heads x 4 and image_size a multiple of patch_size")
        }
        if let act = v["hidden_act"] as? String, act != "silu" {
            throw .badConfig(path: path, key: "vision_config.hidden_act", reason: "is '\(act)'; GLM-4.1V's vision tower uses silu")
        }
    }
}
