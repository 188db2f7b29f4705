public import GGUF

/// The GLM-4.1V vision tower's hyperparameters, from an mmproj GGUF in llama.cpp's layout
/// (`clip.projector_type` = `glm4v`), with the widths checked against the tensors themselves.
public struct GLM4VisionConfiguration: Sendable, Equatable {
    public static let projectorType = "glm4v"

    public var width: Int                 // clip.vision.embedding_length (HF vision hidden_size, 1536)
    public var headCount: Int             // clip.vision.attention.head_count (12)
    public var blockCount: Int            // clip.vision.block_count (depth, 24)
    public var patchSize: Int             // clip.vision.patch_size (14)
    public var positionSide: Int          // image_size / patch_size: the learned position table is side x side (24)
    public var feedForwardWidth: Int      // rows of v.blk.0.ffn_gate (HF uses out_hidden_size here, 4096)
    public var outputWidth: Int           // the language model's width: rows of mm.down (4096)
    public var mergerWidth: Int           // rows of mm.gate (HF intermediate_size, 13696)
    public var mergeSize: Int             // clip.vision.spatial_merge_size, default 2
    public var temporalPatchSize: Int     // 2: v.patch_embd.weight and v.patch_embd.weight.1
    public var normEpsilon: Float         // clip.vision.attention.layer_norm_epsilon (RMSNorm, 1e-5)
    public var ropeBase: Float            // 10000 (not stored; llama.cpp and transformers both use it)
    public var imageMean: [Float]
    public var imageStd: [Float]

    public var headDimension: Int { width / headCount }
    /// Values in one patch as the image processor writes it: channels x temporal x patch x patch.
    public var patchValues: Int { 3 * temporalPatchSize * patchSize * patchSize }

    public init(file: GGUFFile) throws(EngineError) {
        let type = try? file.string("clip.projector_type")
        guard type == Self.projectorType else {
            throw .badHyperparameter(key: "clip.projector_type", value: type ?? "missing",
                                     reason: "autoglm runs GLM-4.1V projectors ('glm4v'); this file is not one (is it an mmproj file?)")
        }
        func int(_ key: String, default value: Int? = nil) throws(EngineError) -> Int {
            if file.value(key) == nil, let value { return value }
            do { return try file.int(key) } catch { throw .gguf(error) }
        }
        width = try int("clip.vision.embedding_length")
        headCount = try int("clip.vision.attention.head_count")
        blockCount = try int("clip.vision.block_count")
        patchSize = try int("clip.vision.patch_size")
        let imageSize = try int("clip.vision.image_size")
        mergeSize = try int("clip.vision.spatial_merge_size", default: 2)
        normEpsilon = Float((try? file.double("clip.vision.attention.layer_norm_epsilon")) ?? 1e-5)
        ropeBase = 10000
        imageMean = (try? file.floatArray("clip.vision.image_mean")) ?? [0.48145466, 0.4578275, 0.40821073]
        imageStd = (try? file.floatArray("clip.vision.image_std")) ?? [0.26862954, 0.26130258, 0.27577711]
        guard width > 0, headCount > 0, width % headCount == 0, (width / headCount) % 4 == 0 else {
            throw .badHyperparameter(key: "clip.vision.attention.head_count", value: "\(headCount)",
                                     reason: "must divide the width \(width) into heads whose size is a multiple of 4 (2D rotary)")
        }
        guard patchSize > 0, imageSize % patchSize == 0, mergeSize > 0 else {
            throw .badHyperparameter(key: "clip.vision.image_size", value: "\(imageSize)", reason: "must be a multiple of the patch size \(patchSize)")
        }
        positionSide = imageSize / patchSize
        func rows(_ name: String) throws(EngineError) -> Int {
            guard let info = file.tensorInfo(named: name) else { throw .missingTensor(name, architecture: "clip (glm4v)") }
            return info.rowCount
        }
        feedForwardWidth = try rows("v.blk.0.ffn_gate.weight")
        outputWidth = try rows("mm.down.weight")
        mergerWidth = try rows("mm.gate.weight")
        temporalPatchSize = file.tensorInfo(named: "v.patch_embd.weight.1") == nil ? 1 : 2
        guard let position = file.tensorInfo(named: "v.position_embd.weight"), position.rowCount == positionSide * positionSide else {
            throw .badTensorShape("v.position_embd.weight", expected: [width, positionSide * positionSide],
                                  found: file.tensorInfo(named: "v.position_embd.weight")?.dimensions ?? [])
        }
    }
}
