import Foundation

/// An image cut into the vision tower's patches: `gridT x gridH x gridW` patches of
/// `channels x temporalPatch x patch x patch` floats, in transformers' order (2x2 merge blocks together).
public struct ImagePatches: Sendable, Equatable {
    public var gridT: Int
    public var gridH: Int
    public var gridW: Int
    public var patchValues: Int
    /// patchCount x patchValues, row-major.
    public var values: [Float]

    public init(gridT: Int, gridH: Int, gridW: Int, patchValues: Int, values: [Float]) {
        precondition(values.count == gridT * gridH * gridW * patchValues)
        self.gridT = gridT
        self.gridH = gridH
        self.gridW = gridW
        self.patchValues = patchValues
        self.values = values
    }

    public var patchCount: Int { gridT * gridH * gridW }

    /// Tokens the language model sees for this image: one per merged `merge x merge` block.
    public func tokenCount(merge: Int) -> Int { gridT * (gridH / merge) * (gridW / merge) }
}

/// What the image processor refused.
public enum ImageProcessingError: Error, Sendable, Equatable, CustomStringConvertible {
    case aspectRatio(width: Int, height: Int)
    case badSetting(key: String, reason: String)

    public var description: String {
        switch self {
        case .aspectRatio(let w, let h): "the image is \(w)x\(h): its aspect ratio is over 200 (the model cannot take it)"
        case .badSetting(let key, let reason): "image processor setting \(key) \(reason)"
        }
    }
}

/// GLM-4.1V's image processor (transformers `Glm4vImageProcessor`, PIL backend): `smart_resize` to multiples of
/// patch x merge (28) inside a pixel budget that counts both temporal copies, Pillow's bicubic resize, rescale to
/// [0, 1], CLIP mean/std normalisation, and patches flattened as (t, h/2, w/2, 2, 2, C, T, 14, 14).
public struct GLM4VImageProcessor: Sendable, Equatable {
    public var patchSize = 14
    public var temporalPatchSize = 2
    public var mergeSize = 2
    /// Lower and upper bounds of `temporal x height x width` after resizing (`size.shortest_edge` /
    /// `size.longest_edge` in preprocessor_config.json; vLLM's `min_pixels` / `max_pixels`).
    public var minPixels = 112 * 112
    public var maxPixels = 28 * 28 * 15000
    public var mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public var std: [Float] = [0.26862954, 0.26130258, 0.27577711]
    public var rescaleFactor = 1.0 / 255.0

    public init() {}

    /// Reads a `preprocessor_config.json` object (unknown keys ignored; missing ones keep GLM-4.1V's defaults).
    public init(json: [String: Any]) throws(ImageProcessingError) {
        func int(_ key: String, _ value: Any?) throws(ImageProcessingError) -> Int? {
            guard let value else { return nil }
            guard let i = value as? Int, i > 0 else { throw .badSetting(key: key, reason: "must be a positive integer") }
            return i
        }
        if let v = try int("patch_size", json["patch_size"]) { patchSize = v }
        if let v = try int("temporal_patch_size", json["temporal_patch_size"]) { temporalPatchSize = v }
        if let v = try int("merge_size", json["merge_size"]) { mergeSize = v }
        if let size = json["size"] as? [String: Any] {
            if let v = try int("size.shortest_edge", size["shortest_edge"]) { minPixels = v }
            if let v = try int("size.longest_edge", size["longest_edge"]) { maxPixels = v }
        }
        if let v = try int("min_pixels", json["min_pixels"]) { minPixels = v }
        if let v = try int("max_pixels", json["max_pixels"]) { maxPixels = v }
        for (key, target) in [("image_mean", \GLM4VImageProcessor.mean), ("image_std", \GLM4VImageProcessor.std)] {
            guard let raw = json[key] else { continue }
            guard let values = raw as? [Double], values.count == 3 else { throw .badSetting(key: key, reason: "must be three numbers") }
            self[keyPath: target] = values.map(Float.init)
        }
        if let v = json["rescale_factor"] as? Double { rescaleFactor = v }
        guard minPixels <= maxPixels else { throw .badSetting(key: "size", reason: "has shortest_edge \(minPixels) over longest_edge \(maxPixels)") }
    }

    public var factor: Int { patchSize * mergeSize }

    /// The resized (height, width): transformers' `smart_resize`, including Python's round-half-to-even.
    public func targetSize(width: Int, height: Int) throws(ImageProcessingError) -> (height: Int, width: Int) {
        let f = Double(factor)
        var h = Double(height), w = Double(width)
        if height < factor || width < factor {
            let scale = max(f / h, f / w)
            h = Double(Int(h * scale))
            w = Double(Int(w * scale))
        }
        guard max(h, w) / min(h, w) <= 200 else { throw .aspectRatio(width: width, height: height) }
        var hBar = (h / f).rounded(.toNearestOrEven) * f
        var wBar = (w / f).rounded(.toNearestOrEven) * f
        let frames = Double(temporalPatchSize)
        let tBar = (frames / Double(temporalPatchSize)).rounded(.toNearestOrEven) * Double(temporalPatchSize)
        if tBar * hBar * wBar > Double(maxPixels) {
            let beta = (frames * h * w / Double(maxPixels)).squareRoot()
            hBar = max(f, (h / beta / f).rounded(.down) * f)
            wBar = max(f, (w / beta / f).rounded(.down) * f)
        } else if tBar * hBar * wBar < Double(minPixels) {
            let beta = (Double(minPixels) / (frames * h * w)).squareRoot()
            hBar = (h * beta / f).rounded(.up) * f
            wBar = (w * beta / f).rounded(.up) * f
        }
        return (Int(hBar), Int(wBar))
    }

    /// Resize, normalise and cut into patches.
    public func patches(_ image: RGBImage) throws(ImageProcessingError) -> ImagePatches {
        let size = try targetSize(width: image.width, height: image.height)
        let resized = Resample.bicubic(image, width: size.width, height: size.height)
        let p = patchSize, m = mergeSize, tp = temporalPatchSize
        let gridH = size.height / p, gridW = size.width / p
        // Normalised planes, channel-major, computed as transformers does: float64 rescale rounded to float32,
        // then (x - mean) / std in float32.
        let plane = size.height * size.width
        var normalized = [Float](repeating: 0, count: 3 * plane)
        for i in 0 ..< plane {
            for c in 0 ..< 3 {
                let scaled = Float(Double(resized.pixels[i * 3 + c]) * rescaleFactor)
                normalized[c * plane + i] = (scaled - mean[c]) / std[c]
            }
        }
        let perPatch = 3 * tp * p * p
        var values = [Float](repeating: 0, count: gridH * gridW * perPatch)
        var o = 0
        for bh in 0 ..< gridH / m {
            for bw in 0 ..< gridW / m {
                for mh in 0 ..< m {
                    for mw in 0 ..< m {
                        let top = (bh * m + mh) * p, left = (bw * m + mw) * p
                        for c in 0 ..< 3 {
                            for _ in 0 ..< tp {
                                for y in 0 ..< p {
                                    let row = c * plane + (top + y) * size.width + left
                                    for x in 0 ..< p {
                                        values[o] = normalized[row + x]
                                        o += 1
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return ImagePatches(gridT: 1, gridH: gridH, gridW: gridW, patchValues: perPatch, values: values)
    }
}
