/// A vision tower: an image's patches in, one embedding row per image token out.
public protocol VisionEncoder: AnyObject, Sendable {
    var configuration: GLM4VisionConfiguration { get }
    /// The image tokens' embeddings: (gridH / merge) x (gridW / merge) rows of `configuration.outputWidth` floats.
    func encode(patches: [Float], gridH: Int, gridW: Int) throws(EngineError) -> [Float]
}
