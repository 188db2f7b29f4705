import Kernels

/// A batch flattened into per-token arrays for the kernels, validated against the cache.
struct BatchPlan {
    var tokens: [Int] = []
    var positions: [Int32] = []
    /// All entries' block tables back to back; token t's table starts at tableOffsets[t].
    var blockTables: [Int32] = []
    var tableOffsets: [Int64] = []
    /// Token indices whose logits are wanted, in output order.
    var logitRows: [Int] = []
    var rowsPerEntry: [Range<Int>] = []
    /// Token rows that take given embeddings: (plan row of the first token, count, values).
    var embeddings: [(row: Int, span: EmbeddingSpan)] = []
    /// temporal, height, width per token (3 x tokens), for M-RoPE models.
    var ropePositions: [Int32] = []

    init(_ batch: [BatchEntry], configuration c: ModelConfiguration, cache: PagedKVCache) throws(EngineError) {
        var total = 0
        for entry in batch { total += entry.tokens.count }
        guard total > 0 else { throw .emptyInput }
        tokens.reserveCapacity(total)
        positions.reserveCapacity(total)
        tableOffsets.reserveCapacity(total)
        for entry in batch {
            let end = entry.startPosition + entry.tokens.count
            guard end <= c.contextLength else { throw .contextOverflow(needed: end, contextLength: c.contextLength) }
            let blocksNeeded = (end + cache.blockSize - 1) / cache.blockSize
            guard entry.blockTable.count >= blocksNeeded else {
                throw .outOfKVBlocks(needed: blocksNeeded - entry.blockTable.count, free: 0)
            }
            for b in entry.blockTable where b < 0 || Int(b) >= cache.blockCount {
                throw .outOfKVBlocks(needed: 1, free: 0)
            }
            if let r = entry.ropePositions, r.count != entry.tokens.count {
                throw .badHyperparameter(key: "rope positions", value: "\(r.count)", reason: "one per token is needed (\(entry.tokens.count))")
            }
            let firstToken = tokens.count
            for span in entry.embeddings {
                guard span.start >= 0, span.count > 0, span.start + span.count <= entry.tokens.count,
                      span.values.count == span.count * c.embeddingWidth else {
                    throw .badHyperparameter(key: "input embeddings", value: "\(span.count) rows at \(span.start)",
                                             reason: "must lie inside the entry's \(entry.tokens.count) tokens with \(c.embeddingWidth) values a row")
                }
                embeddings.append((firstToken + span.start, span))
            }
            let tableOffset = Int64(blockTables.count)
            blockTables.append(contentsOf: entry.blockTable)
            let firstRow = logitRows.count
            for (i, token) in entry.tokens.enumerated() {
                guard token >= 0 && token < c.vocabularySize else {
                    throw .invalidToken(token, vocabularySize: c.vocabularySize)
                }
                let t = tokens.count
                tokens.append(token)
                positions.append(Int32(entry.startPosition + i))
                if let r = entry.ropePositions?[i] {
                    ropePositions += [r.temporal, r.height, r.width]
                } else {
                    let p = Int32(entry.startPosition + i + entry.ropeDelta)
                    ropePositions += [p, p, p]
                }
                tableOffsets.append(tableOffset)
                if entry.logits == .all || (entry.logits == .last && i == entry.tokens.count - 1) {
                    logitRows.append(t)
                }
            }
            rowsPerEntry.append(firstRow ..< logitRows.count)
        }
    }

    /// Writes this batch's keys and values (rows of `kvWidth`) into the cache slots of their positions.
    func store(keys: FloatBuffer, values: FloatBuffer, layer: Int, cache: PagedKVCache) {
        let width = cache.kvWidth
        for t in 0 ..< tokens.count {
            let p = Int(positions[t])
            let block = blockTables[Int(tableOffsets[t]) + p / cache.blockSize]
            let slot = p % cache.blockSize
            let scales = cache.scaleIndex(block: block, slot: slot)
            cache.keys[layer].store(from: keys, sourceOffset: t * width, to: cache.keyOffset(block: block, slot: slot),
                                    length: width, stride: cache.blockSize, scaleIndex: scales)
            cache.values[layer].store(from: values, sourceOffset: t * width, to: cache.slotOffset(block: block, slot: slot),
                                      length: width, scaleIndex: scales)
        }
    }
}
