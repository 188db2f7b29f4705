import Imaging

/// The shape of a GLM-4.1V vision tower, for planning (GLM-4.1V-9B's `vision_config`).
public struct VisionShape: Sendable, Equatable, Codable {
    public var width = 1536
    public var blockCount = 24
    public var feedForwardWidth = 4096     // HF's out_hidden_size (the tower's MLP width)
    public var outputWidth = 4096
    public var mergerWidth = 13696
    public var patchSize = 14
    public var mergeSize = 2

    public static let glm41v = VisionShape()

    /// Parameters: patch embedding (two frames), blocks, merger (downsample, fc, SwiGLU).
    public var parameterCount: Int {
        let d = width, patch = 2 * 3 * patchSize * patchSize * d
        let block = 3 * d * d + d * d + 3 * d * feedForwardWidth
        let merger = mergeSize * mergeSize * d * outputWidth + outputWidth * outputWidth + 3 * outputWidth * mergerWidth
        return patch + blockCount * block + merger
    }
}

/// One image of a request, as the plan counts it: its resized size, patches, tokens, the tower's work and memory.
public struct ImagePlan: Sendable, Equatable, Codable {
    public var width: Int
    public var height: Int
    public var maxPixels: Int
    public var minPixels: Int
    public var resizedWidth = 0
    public var resizedHeight = 0
    public var patches = 0
    public var tokens = 0
    /// Floating-point operations of the vision tower for this image (matrix products, attention).
    public var matrixFLOP = 0.0
    public var attentionFLOP = 0.0
    /// The encoder's float32 activations while it runs (the widest moment: all patches' rows at once).
    public var activationBytes = 0

    /// Sizes the image with GLM-4.1V's processor and the tower's shape; nil when the processor refuses it.
    public init?(width: Int, height: Int, maxPixels: Int, minPixels: Int = 12_544, vision v: VisionShape) {
        self.width = width
        self.height = height
        self.maxPixels = maxPixels
        self.minPixels = minPixels
        var p = GLM4VImageProcessor()
        p.maxPixels = maxPixels
        p.minPixels = minPixels
        p.patchSize = v.patchSize
        p.mergeSize = v.mergeSize
        guard let size = try? p.targetSize(width: width, height: height) else { return nil }
        resizedWidth = size.width
        resizedHeight = size.height
        patches = (size.height / v.patchSize) * (size.width / v.patchSize)
        tokens = patches / (v.mergeSize * v.mergeSize)
        let n = Double(patches), d = Double(v.width), ff = Double(v.feedForwardWidth)
        let out = Double(v.outputWidth), t = Double(tokens)
        matrixFLOP = 2 * n * Double(2 * 3 * v.patchSize * v.patchSize) * d
            + Double(v.blockCount) * 2 * n * (4 * d * d + 3 * d * ff)
            + 2 * t * (Double(v.mergeSize * v.mergeSize) * d * out + out * out + 3 * out * Double(v.mergerWidth))
        attentionFLOP = Double(v.blockCount) * 4 * n * n * d
        // x, normed, residual, attended (4 d), q/k/v (3 d), gate and up (2 ff), one frame of pixels, the merged rows.
        let perPatch = 4 * v.width + 3 * v.width + 2 * v.feedForwardWidth + 3 * v.patchSize * v.patchSize + v.width
        activationBytes = patches * perPatch * 4 + tokens * (2 * v.outputWidth + 2 * v.mergerWidth) * 4
    }
}
