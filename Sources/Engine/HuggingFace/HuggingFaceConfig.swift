import Foundation
public import SafeTensors

/// The hyperparameters of a transformers `config.json`, for the architectures autoglm can import, with the
/// GGUF architecture each maps to (llama.cpp's convert_hf_to_gguf.py names).
public struct HuggingFaceConfig: Sendable, Equatable {
    /// transformers class (`architectures[0]`) -> GGUF `general.architecture`.
    public static let architectures: [String: String] = [
        "Glm4ForCausalLM": "glm4",       // GLM-4-0414 (GLM-4-9B-0414, GLM-4-32B-0414)
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

    public init(directory: SafeTensorsDirectory) throws(SafeTensorsError) {
        try self.init(json: try directory.configuration(), path: (directory.path as NSString).appendingPathComponent("config.json"),
                      name: (directory.path as NSString).lastPathComponent)
    }

    public init(json c: [String: Any], path: String, name: String) throws(SafeTensorsError) {
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
    }
}
