public import Imaging

/// A prompt whose image placeholders have been expanded for a vision-language model: where each image's tokens
/// are, the three-axis rotary positions of every prompt token, the keys the prefix cache hashes, and (once the
/// vision tower has run) the embeddings that replace the image tokens.
public struct MultimodalPrompt: Sendable {
    /// One image in the prompt: its tokens are `start ..< start + tokenCount`.
    public struct Image: Sendable {
        public var start: Int
        public var tokenCount: Int
        /// The processed image (resized, normalised, cut into the vision tower's patches).
        public var patches: ImagePatches
        /// A hash of the processed pixels: the same image at the same size is the same key.
        public var contentHash: UInt64

        public init(start: Int, tokenCount: Int, patches: ImagePatches, contentHash: UInt64) {
            self.start = start
            self.tokenCount = tokenCount
            self.patches = patches
            self.contentHash = contentHash
        }
    }

    public var images: [Image]
    /// temporal, height, width for each prompt token (3 x prompt length).
    public var ropePositions: [Int32]
    /// Added to a generated token's cache position on every axis.
    public var ropeDelta: Int
    /// One per prompt token: the token id for text, a key derived from the image's content hash and the index
    /// for image tokens (negative, so never a token id). The prefix cache hashes these, so the same screenshot
    /// twice is a hit and a different image of the same size never is.
    public var cacheKeys: [Int]
    /// Image embeddings, one entry per image in `images` order (tokenCount x width floats); empty until encoded.
    public var embeddings: [[Float]]

    public init(images: [Image], ropePositions: [Int32], ropeDelta: Int, cacheKeys: [Int], embeddings: [[Float]] = []) {
        self.images = images
        self.ropePositions = ropePositions
        self.ropeDelta = ropeDelta
        self.cacheKeys = cacheKeys
        self.embeddings = embeddings
    }

    /// Tokens of all images.
    public var imageTokenCount: Int { images.reduce(0) { $0 + $1.tokenCount } }

    /// The key of image token `index` of an image with `contentHash` (FNV-1a style mixing, forced negative).
    public static func imageKey(contentHash: UInt64, index: Int) -> Int {
        var h = contentHash ^ 0x9e37_79b9_7f4a_7c15
        h = (h ^ UInt64(truncatingIfNeeded: index)) &* 0x0000_0100_0000_01b3
        h ^= h >> 29
        return -Int(h >> 2) - 1
    }
}

/// Per-request image settings a client may give (vLLM's `mm_processor_kwargs`), within the server's bounds.
public struct ImageOptions: Sendable, Equatable {
    public var minPixels: Int?
    public var maxPixels: Int?

    public init(minPixels: Int? = nil, maxPixels: Int? = nil) {
        self.minPixels = minPixels
        self.maxPixels = maxPixels
    }
}

/// Why images could not be placed into a prompt; `imageIndex` counts the request's images from 0.
public struct ImageInputError: Error, Sendable, Equatable, CustomStringConvertible {
    public var imageIndex: Int?
    public var message: String

    public init(imageIndex: Int?, _ message: String) {
        self.imageIndex = imageIndex
        self.message = message
    }

    public var description: String { message }
}
