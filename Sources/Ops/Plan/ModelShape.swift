/// The sizes of a decoder-only transformer that decide its memory: what the planner needs, nothing more.
///
/// Parameter counts follow the layer body of Llama / GLM-4 as implemented in transformers and llama.cpp:
/// Q, K, V and O projections (Q/K/V biases when `attentionBias`), a gated MLP (gate, up, down),
/// `normsPerLayer` RMSNorm weight vectors per layer, token embeddings, a final norm, and an output
/// projection unless it is tied to the embeddings.
public struct ModelShape: Sendable, Equatable, Codable {
    /// Short name (preset name, file name or config `_name_or_path`).
    public var name: String
    /// Architecture family, as GGUF `general.architecture` spells it ("llama", "glm4", "chatglm", "qwen2").
    public var architecture: String
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var feedForwardSize: Int
    public var vocabularySize: Int
    /// The context the model was trained for (`max_position_embeddings`, GGUF `{arch}.context_length`).
    public var maxContext: Int
    public var tiedEmbeddings: Bool
    /// Q, K and V projections carry biases (GLM-4 9B, Qwen2).
    public var attentionBias: Bool
    /// RMSNorm weight vectors per layer: 2 for Llama and chatglm, 4 for glm4 (post-attention and post-MLP norms).
    public var normsPerLayer: Int
    /// Parameters outside the text decoder (a vision tower), counted only when asked for.
    public var extraParameters: Int
    public var extraParametersNote: String?
    /// The vision tower's shape (vision-language models), for `plan --image`.
    public var vision: VisionShape?
    /// An exact count read from a file (sum of GGUF tensor elements); overrides the formula when set.
    public var exactParameterCount: Int?
    /// Where the numbers come from.
    public var source: String

    public init(
        name: String, architecture: String, hiddenSize: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
        headDim: Int, feedForwardSize: Int, vocabularySize: Int, maxContext: Int, tiedEmbeddings: Bool,
        attentionBias: Bool, normsPerLayer: Int, extraParameters: Int = 0, extraParametersNote: String? = nil,
        exactParameterCount: Int? = nil, source: String
    ) {
        self.name = name
        self.architecture = architecture
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim
        self.feedForwardSize = feedForwardSize
        self.vocabularySize = vocabularySize
        self.maxContext = maxContext
        self.tiedEmbeddings = tiedEmbeddings
        self.attentionBias = attentionBias
        self.normsPerLayer = normsPerLayer
        self.extraParameters = extraParameters
        self.extraParametersNote = extraParametersNote
        self.exactParameterCount = exactParameterCount
        self.source = source
    }

    /// Width of the query projection output (`headCount * headDim`; equals `hiddenSize` in all presets).
    public var queryWidth: Int { headCount * headDim }
    /// Width of one of K or V per token (`kvHeadCount * headDim`).
    public var kvWidth: Int { kvHeadCount * headDim }

    /// Parameters of one decoder layer.
    public var parametersPerLayer: Int {
        let attention = hiddenSize * queryWidth + 2 * hiddenSize * kvWidth + queryWidth * hiddenSize
        let bias = attentionBias ? queryWidth + 2 * kvWidth : 0
        let mlp = 3 * hiddenSize * feedForwardSize
        return attention + bias + mlp + normsPerLayer * hiddenSize
    }

    /// Parameters of the text decoder by formula: layers, embeddings, output projection and final norm.
    public var formulaParameterCount: Int {
        let embeddings = vocabularySize * hiddenSize * (tiedEmbeddings ? 1 : 2)
        return layerCount * parametersPerLayer + embeddings + hiddenSize
    }

    /// Parameters of the text decoder: exact when read from a file, else by formula.
    public var parameterCount: Int { exactParameterCount ?? formulaParameterCount }

    /// KV cache bytes per token of context for one sequence: K and V, every layer, every KV head.
    public func kvBytesPerToken(_ precision: KVPrecision) -> Double {
        Double(2 * layerCount * kvWidth) * precision.bytesPerElement
    }
}
