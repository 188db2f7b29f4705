/// GLM-4.1V's three-axis rotary positions for a prompt with images (transformers `Glm4vModel.get_rope_index`):
/// text tokens take the next position on every axis; the tokens of an image with merged grid (t, h, w) start at
/// st = the next position and take (st + frame, st + row, st + column); the text after it continues from
/// st + max(h, w). Decoding continues at cache position + `delta` on every axis.
public enum MultimodalPositions {
    /// An image's grid in merged tokens: frames x rows x columns.
    public struct Grid: Sendable, Equatable {
        public var frames: Int
        public var rows: Int
        public var columns: Int

        public init(frames: Int = 1, rows: Int, columns: Int) {
            self.frames = frames
            self.rows = rows
            self.columns = columns
        }

        public var tokenCount: Int { frames * rows * columns }
    }

    /// Positions of `tokens`, where each run of `imageToken` is the next image of `grids`.
    public static func glm4v(tokens: [Int], imageToken: Int, grids: [Grid]) throws(EngineError) -> (positions: [RopePosition], delta: Int) {
        var positions: [RopePosition] = []
        positions.reserveCapacity(tokens.count)
        var next: Int32 = 0
        var image = 0
        var i = 0
        while i < tokens.count {
            guard tokens[i] == imageToken else {
                positions.append(RopePosition(text: next))
                next += 1
                i += 1
                continue
            }
            var end = i
            while end < tokens.count && tokens[end] == imageToken { end += 1 }
            guard image < grids.count, grids[image].tokenCount == end - i else {
                let expected = image < grids.count ? "\(grids[image].tokenCount)" : "no more images"
                throw .badHyperparameter(key: "image tokens", value: "\(end - i) at \(i)",
                                         reason: "image \(image + 1) needs \(expected) placeholder tokens")
            }
            let g = grids[image], start = next
            for f in 0 ..< g.frames {
                for r in 0 ..< g.rows {
                    for c in 0 ..< g.columns {
                        positions.append(RopePosition(temporal: start + Int32(f), height: start + Int32(r), width: start + Int32(c)))
                    }
                }
            }
            next = start + Int32(max(g.rows, g.columns))
            image += 1
            i = end
        }
        guard image == grids.count else {
            throw .badHyperparameter(key: "image tokens", value: "\(image) runs", reason: "\(grids.count) images were given")
        }
        return (positions, Int(next) - tokens.count)
    }
}
