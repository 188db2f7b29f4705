import Foundation
public import Engine
public import Imaging
public import Serving
public import Tokenizer

/// What a vision-language model needs beside its language model: the vision tower, the image processor, and
/// the image tokens of its vocabulary. Places images into prompts (cheap) and encodes them (the vision tower).
public final class VisionSupport: @unchecked Sendable {
    public let encoder: any VisionEncoder
    /// The processor as configured (preprocessor_config.json, or GLM-4.1V's defaults for a GGUF pair).
    public let processor: GLM4VImageProcessor
    public let imageToken: Int
    public let beginToken: Int?
    public let endToken: Int?
    /// One image encodes at a time: the tower uses every core and its activations are large.
    private let lock = NSLock()
    /// Embeddings of recently encoded images by content hash (least recently used out first, within
    /// `cacheBudgetBytes`): the same screenshot again skips the tower as its tokens skip the prefill.
    private var cache: [UInt64: [Float]] = [:]
    private var cacheOrder: [UInt64] = []
    private var cacheBytes = 0
    public var cacheBudgetBytes = 256 << 20
    private var encoded = 0, cached = 0
    /// Images encoded, and images served from the cache.
    public var encodedImages: Int { lock.withLock { encoded } }
    public var cachedImages: Int { lock.withLock { cached } }

    public init(encoder: any VisionEncoder, processor: GLM4VImageProcessor, tokenizer: Tokenizer) throws(EngineError) {
        guard let image = tokenizer.id(for: "<|image|>") else {
            throw .badHyperparameter(key: "tokenizer", value: "no <|image|> token",
                                     reason: "a GLM-4.1V tokenizer has <|image|>, <|begin_of_image|> and <|end_of_image|>; this one does not")
        }
        self.encoder = encoder
        self.processor = processor
        imageToken = image
        beginToken = tokenizer.id(for: "<|begin_of_image|>")
        endToken = tokenizer.id(for: "<|end_of_image|>")
    }

    /// The processor for one request: its `min_pixels` / `max_pixels` (both temporal copies counted, as
    /// transformers does), within the server's bound.
    public func processor(for options: ImageOptions) throws(ImageInputError) -> GLM4VImageProcessor {
        var p = processor
        // The server bounds what a request may ask for (images.max_pixels); here only consistency is checked.
        if let max = options.maxPixels {
            guard max > 0 else { throw ImageInputError(imageIndex: nil, "max_pixels must be positive (got \(max))") }
            p.maxPixels = max
        }
        if let min = options.minPixels {
            guard min > 0 else { throw ImageInputError(imageIndex: nil, "min_pixels must be positive (got \(min))") }
            p.minPixels = min
        }
        guard p.minPixels <= p.maxPixels else {
            throw ImageInputError(imageIndex: nil, "min_pixels \(p.minPixels) is over max_pixels \(p.maxPixels)")
        }
        return p
    }

    /// Replaces the i-th `<|image|>` placeholder of `tokens` with image i's tokens and computes the prompt's
    /// positions and cache keys. The vision tower has not run yet (`encode`).
    public func place(in tokens: [Int], images: [RGBImage], options: ImageOptions) throws(ImageInputError) -> (tokens: [Int], multimodal: MultimodalPrompt) {
        let placeholders = tokens.indices.filter { tokens[$0] == imageToken }
        guard placeholders.count == images.count else {
            throw ImageInputError(imageIndex: nil, "the rendered prompt has \(placeholders.count) image placeholders for \(images.count) images (does the text contain <|image|>?)")
        }
        let p = try processor(for: options)
        let merge = encoder.configuration.mergeSize
        var expanded: [Int] = []
        var keys: [Int] = []
        var placed: [MultimodalPrompt.Image] = []
        var grids: [MultimodalPositions.Grid] = []
        var last = 0
        for (i, (at, image)) in zip(placeholders, images).enumerated() {
            let patches: ImagePatches
            do { patches = try p.patches(image) } catch { throw ImageInputError(imageIndex: i, error.description) }
            expanded += tokens[last ..< at]
            keys += tokens[last ..< at]
            let count = patches.tokenCount(merge: merge)
            let hash = Self.contentHash(patches)
            placed.append(MultimodalPrompt.Image(start: expanded.count, tokenCount: count, patches: patches, contentHash: hash))
            grids.append(MultimodalPositions.Grid(frames: 1, rows: patches.gridH / merge, columns: patches.gridW / merge))
            expanded += [Int](repeating: imageToken, count: count)
            keys += (0 ..< count).map { MultimodalPrompt.imageKey(contentHash: hash, index: $0) }
            last = at + 1
        }
        expanded += tokens[last...]
        keys += tokens[last...]
        let (positions, delta): ([RopePosition], Int)
        do {
            (positions, delta) = try MultimodalPositions.glm4v(tokens: expanded, imageToken: imageToken, grids: grids)
        } catch {
            throw ImageInputError(imageIndex: nil, "image placeholders must be separated by text: \(error.description)")
        }
        let flat = positions.flatMap { [$0.temporal, $0.height, $0.width] }
        return (expanded, MultimodalPrompt(images: placed, ropePositions: flat, ropeDelta: delta, cacheKeys: keys))
    }

    /// Runs the vision tower over each image of the prompt (one request's images at a time), or takes an image's
    /// embeddings from the cache when the same processed pixels were encoded recently.
    public func encode(_ prompt: inout MultimodalPrompt) throws(EngineError) {
        lock.lock()
        defer { lock.unlock() }
        var out: [[Float]] = []
        for image in prompt.images {
            if let hit = cache[image.contentHash], hit.count == image.tokenCount * encoder.configuration.outputWidth {
                cacheOrder.removeAll { $0 == image.contentHash }
                cacheOrder.append(image.contentHash)
                cached += 1
                out.append(hit)
                continue
            }
            let values = try encoder.encode(patches: image.patches.values, gridH: image.patches.gridH, gridW: image.patches.gridW)
            encoded += 1
            remember(values, for: image.contentHash)
            out.append(values)
        }
        prompt.embeddings = out
    }

    private func remember(_ values: [Float], for key: UInt64) {
        let bytes = values.count * MemoryLayout<Float>.size
        guard bytes <= cacheBudgetBytes else { return }
        if let old = cache.removeValue(forKey: key) {
            cacheBytes -= old.count * MemoryLayout<Float>.size
            cacheOrder.removeAll { $0 == key }
        }
        while cacheBytes + bytes > cacheBudgetBytes, let oldest = cacheOrder.first {
            cacheOrder.removeFirst()
            cacheBytes -= (cache.removeValue(forKey: oldest)?.count ?? 0) * MemoryLayout<Float>.size
        }
        cache[key] = values
        cacheOrder.append(key)
        cacheBytes += bytes
    }

    /// A 64-bit hash of the grid and the processed pixel values: each 64-bit word scrambled (MurmurHash3's 64-bit
    /// finaliser) before it is folded in and the state rotated and multiplied, then a final avalanche; so a change in
    /// any bit moves every output bit (unlike a plain multiply-xor fold, where paired high-bit flips cancel).
    static func contentHash(_ p: ImagePatches) -> UInt64 {
        @inline(__always) func scramble(_ x: UInt64) -> UInt64 {
            var k = x
            k ^= k >> 33; k = k &* 0xff51_afd7_ed55_8ccd
            k ^= k >> 33; k = k &* 0xc4ce_b9fe_1a85_ec53
            k ^= k >> 33
            return k
        }
        var h: UInt64 = 0x9e37_79b9_7f4a_7c15
        @inline(__always) func mix(_ v: UInt64) {
            h ^= scramble(v &+ 0x632b_e59b_d9b4_e019)
            h = ((h << 27) | (h >> 37)) &* 0x87c3_7b91_1142_53d5 &+ 0x52dc_e729
        }
        mix(UInt64(p.gridT)); mix(UInt64(p.gridH)); mix(UInt64(p.gridW)); mix(UInt64(p.values.count))
        p.values.withUnsafeBytes { raw in
            var offset = 0
            while offset + 8 <= raw.count {
                mix(raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                offset += 8
            }
            while offset < raw.count {
                mix(UInt64(raw[offset]))
                offset += 1
            }
        }
        return scramble(h)
    }
}
