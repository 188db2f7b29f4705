/// Built-in model shapes for `autoglm plan PRESET`.
///
/// Every number comes from the model's `config.json` as collected, with sources, in
/// shared/research/glm/FACTS.md section 2 (rows marked [UNVERIFIED] there are marked here too).
/// Parameter counts by formula match FACTS.md's derived counts: GLM-4-9B 9.400 B, Llama-3.1-8B 8.030 B,
/// Qwen2.5-7B 7.616 B, SmolLM2 0.1345 / 0.3618 / 1.711 B (tests check them).
public enum ModelPresets {
    /// Canonical preset names, in display order.
    public static var names: [String] { all.map(\.name) }

    public static let all: [ModelShape] = [glm4_9b_0414, glm4_9b_chat, autoglmPhone9b, llama31_8b, qwen25_7b,
                                           smollm2_135m, smollm2_360m, smollm2_1_7b]

    /// Other spellings people type.
    static let aliases: [String: String] = [
        "glm-4-9b-0414": "glm-4-9b", "glm4-9b": "glm-4-9b", "glm-z1-9b": "glm-4-9b",
        "glm4-9b-chat": "glm-4-9b-chat", "glm-4-9b-chat-hf": "glm-4-9b-chat",
        "autoglm": "autoglm-phone-9b", "autoglm-phone-9b-multilingual": "autoglm-phone-9b", "glm-4.1v-9b": "autoglm-phone-9b",
        "llama3.1-8b": "llama-3.1-8b", "llama-3.1-8b-instruct": "llama-3.1-8b",
        "qwen2.5-7b-instruct": "qwen2.5-7b",
        "smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m", "smollm2-360m-instruct": "smollm2-360m",
        "smollm2-1.7b-instruct": "smollm2-1.7b",
    ]

    /// The preset for a name or alias (case-insensitive), or nil.
    public static func named(_ name: String) -> ModelShape? {
        let lower = name.lowercased()
        let canonical = aliases[lower] ?? lower
        return all.first { $0.name == canonical }
    }

    /// GLM-4-9B-0414 (`glm4`): 4 norms per layer, Q/K/V biases, untied output.
    /// FACTS.md 2 [UNVERIFIED: values from two fine-tune copies of the config and the GGUF metadata of GLM-Z1-9B-0414,
    /// which agree]; context 32768 from THUDM/GLM-4 README ("natively trained with a 32K context").
    public static let glm4_9b_0414 = ModelShape(
        name: "glm-4-9b", architecture: "glm4", hiddenSize: 4096, layerCount: 40, headCount: 32, kvHeadCount: 2,
        headDim: 128, feedForwardSize: 13696, vocabularySize: 151552, maxContext: 32768, tiedEmbeddings: false,
        attentionBias: true, normsPerLayer: 4,
        source: "GLM-4-9B-0414 config.json (FACTS.md 2; copies of the config + GLM-Z1-9B-0414 GGUF metadata)")

    /// THUDM/glm-4-9b-chat (`chatglm` remote code; `glm` in the -hf repo): 2 norms per layer, fused QKV with bias.
    /// FACTS.md 2: HF blame of THUDM/glm-4-9b-chat config.json (commit 731ca7f): num_layers 40,
    /// multi_query_group_num 2, kv_channels 128, ffn_hidden_size 13696, padded_vocab_size 151552, seq_length 131072.
    public static let glm4_9b_chat = ModelShape(
        name: "glm-4-9b-chat", architecture: "chatglm", hiddenSize: 4096, layerCount: 40, headCount: 32, kvHeadCount: 2,
        headDim: 128, feedForwardSize: 13696, vocabularySize: 151552, maxContext: 131072, tiedEmbeddings: false,
        attentionBias: true, normsPerLayer: 2,
        source: "THUDM/glm-4-9b-chat config.json, commit 731ca7f (FACTS.md 2)")

    /// zai-org/AutoGLM-Phone-9B = GLM-4.1V-9B-Thinking (Open-AutoGLM README_en.md). The text model is the
    /// `glm4v_text` decoder, the same layer as GLM-4-0414; context 65536.
    /// [UNVERIFIED: official config not found; tf Glm4vTextConfig defaults and mlx-vlm's glm4v config, FACTS.md 2.]
    /// The vision tower is about 0.9 B parameters [UNVERIFIED, derived: GLM-4.1V-9B-Base BF16 shards total
    /// 20.6 GB = 10.3 B parameters, minus the 9.40 B text decoder]; `VisionShape.glm41v` counts 0.89 B from the
/// vision_config.
    public static let autoglmPhone9b: ModelShape = {
        var shape = autoglmPhone9bText
        shape.vision = .glm41v
        return shape
    }()

    static let autoglmPhone9bText = ModelShape(
        name: "autoglm-phone-9b", architecture: "glm4", hiddenSize: 4096, layerCount: 40, headCount: 32, kvHeadCount: 2,
        headDim: 128, feedForwardSize: 13696, vocabularySize: 151552, maxContext: 65536, tiedEmbeddings: false,
        attentionBias: true, normsPerLayer: 4, extraParameters: 900_000_000,
        extraParametersNote: "vision tower (0.89 B parameters by GLM-4.1V's vision_config: 24 blocks of 1536 and the 4096-wide merger; the engine loads it from the model directory or the mmproj file)",
        source: "GLM-4.1V-9B-Thinking text_config (FACTS.md 2, [UNVERIFIED]: tf Glm4vTextConfig defaults, mlx-vlm config)")

    /// meta-llama/Llama-3.1-8B. FACTS.md 2 [UNVERIFIED against the gated primary file: HF copies incl.
    /// mlx-community/Meta-Llama-3.1-8B-bf16 agree].
    public static let llama31_8b = ModelShape(
        name: "llama-3.1-8b", architecture: "llama", hiddenSize: 4096, layerCount: 32, headCount: 32, kvHeadCount: 8,
        headDim: 128, feedForwardSize: 14336, vocabularySize: 128256, maxContext: 131072, tiedEmbeddings: false,
        attentionBias: false, normsPerLayer: 2,
        source: "Llama-3.1-8B config.json (FACTS.md 2; HF copies, [UNVERIFIED] against the gated original)")

    /// Qwen/Qwen2.5-7B (base; Instruct has the same shape with max_position_embeddings 32768). QKV bias (qwen2).
    /// FACTS.md 2 [UNVERIFIED against the primary file: HF copies agree].
    public static let qwen25_7b = ModelShape(
        name: "qwen2.5-7b", architecture: "qwen2", hiddenSize: 3584, layerCount: 28, headCount: 28, kvHeadCount: 4,
        headDim: 128, feedForwardSize: 18944, vocabularySize: 152064, maxContext: 131072, tiedEmbeddings: false,
        attentionBias: true, normsPerLayer: 2,
        source: "Qwen2.5-7B config.json (FACTS.md 2; HF copies)")

    /// HuggingFaceTB/SmolLM2-135M(-Instruct), the default model's shape. Tied embeddings.
    /// FACTS.md 2 (HF copies with `_name_or_path` SmolLM2-135M); the default GGUF's metadata agrees (a test checks).
    public static let smollm2_135m = ModelShape(
        name: "smollm2-135m", architecture: "llama", hiddenSize: 576, layerCount: 30, headCount: 9, kvHeadCount: 3,
        headDim: 64, feedForwardSize: 1536, vocabularySize: 49152, maxContext: 8192, tiedEmbeddings: true,
        attentionBias: false, normsPerLayer: 2,
        source: "SmolLM2-135M config.json (FACTS.md 2; HF copies)")

    /// HuggingFaceTB/SmolLM2-360M. FACTS.md 2 (unsloth copy; its vocab 49153 adds one pad token, the original is 49152).
    public static let smollm2_360m = ModelShape(
        name: "smollm2-360m", architecture: "llama", hiddenSize: 960, layerCount: 32, headCount: 15, kvHeadCount: 5,
        headDim: 64, feedForwardSize: 2560, vocabularySize: 49152, maxContext: 8192, tiedEmbeddings: true,
        attentionBias: false, normsPerLayer: 2,
        source: "SmolLM2-360M config.json (FACTS.md 2; unsloth copy)")

    /// HuggingFaceTB/SmolLM2-1.7B (multi-head attention: 32 KV heads). FACTS.md 2: official
    /// HuggingFaceTB/SmolLM2-1.7B-Instruct config.json, commit dfc017e.
    public static let smollm2_1_7b = ModelShape(
        name: "smollm2-1.7b", architecture: "llama", hiddenSize: 2048, layerCount: 24, headCount: 32, kvHeadCount: 32,
        headDim: 64, feedForwardSize: 8192, vocabularySize: 49152, maxContext: 8192, tiedEmbeddings: true,
        attentionBias: false, normsPerLayer: 2,
        source: "HuggingFaceTB/SmolLM2-1.7B-Instruct config.json, commit dfc017e (FACTS.md 2)")
}
