/// Owns the blocks of one `PagedKVCache` for the scheduler: reference counts, a free list, and a
/// prefix cache that lets a new sequence reuse full blocks another sequence already computed.
///
/// A full block is identified by a chain hash of its tokens and the hash of the block before it
/// (vLLM's automatic prefix caching), so a hit on block i implies the whole prefix up to i matches.
/// The tokens are stored beside the hash and compared on every hit, so a hash collision can never
/// hand a sequence someone else's keys. Blocks nobody references keep their contents and their hash
/// until the space is needed: they are evicted least recently released first.
///
/// Not thread-safe: the scheduler's engine thread is its only user.
public final class BlockManager {
    public let blockSize: Int
    public let blockCount: Int

    private var references: [Int32]
    /// Chain hash and tokens of each registered (full, computed) block.
    private var registered: [(hash: UInt64, tokens: [Int])?]
    private var blockForHash: [UInt64: Int32] = [:]
    /// Blocks never registered or whose registration was dropped, ready to hand out.
    private var free: [Int32]
    // Registered blocks with no references, least recently released first (a doubly linked list
    // through `previous`/`next`, -1 terminated, so that a hit can take a block out in O(1)).
    private var previous: [Int32]
    private var next: [Int32]
    private var head: Int32 = -1
    private var tail: Int32 = -1
    public private(set) var evictableCount = 0

    public init(blockCount: Int, blockSize: Int) {
        precondition(blockCount > 0 && blockSize > 0)
        self.blockCount = blockCount
        self.blockSize = blockSize
        references = Array(repeating: 0, count: blockCount)
        registered = Array(repeating: nil, count: blockCount)
        free = (0 ..< Int32(blockCount)).reversed()
        previous = Array(repeating: -1, count: blockCount)
        next = Array(repeating: -1, count: blockCount)
    }

    /// Blocks that can be handed out now (free plus evictable cached ones).
    public var availableCount: Int { free.count + evictableCount }
    /// Blocks referenced by at least one sequence.
    public var usedCount: Int { blockCount - availableCount }

    /// Hash of a full block of `tokens` following a block whose hash is `parent` (0 for the first).
    public static func chainHash(parent: UInt64, tokens: ArraySlice<Int>) -> UInt64 {
        // FNV-1a over the parent hash and the token ids, then a final avalanche (splitmix64).
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ parent
        for t in tokens {
            var v = UInt64(bitPattern: Int64(t))
            for _ in 0 ..< 8 {
                h = (h ^ (v & 0xff)) &* 0x0000_0100_0000_01b3
                v >>= 8
            }
        }
        h ^= h >> 30; h = h &* 0xbf58_476d_1ce4_e5b9
        h ^= h >> 27; h = h &* 0x94d0_49bb_1331_11eb
        return h ^ (h >> 31)
    }

    /// The longest run of cached full blocks that starts `tokens`, taken (referenced) for the caller,
    /// with their chain hashes. Never covers the last token: a sequence must compute at least one
    /// position to get logits.
    public func acquirePrefix(of tokens: [Int]) -> (blocks: [Int32], hashes: [UInt64]) {
        let maximumBlocks = (tokens.count - 1) / blockSize
        var blocks: [Int32] = []
        var hashes: [UInt64] = []
        var parent: UInt64 = 0
        for b in 0 ..< max(0, maximumBlocks) {
            let slice = tokens[b * blockSize ..< (b + 1) * blockSize]
            let h = Self.chainHash(parent: parent, tokens: slice)
            guard let block = blockForHash[h], let entry = registered[Int(block)], entry.tokens.elementsEqual(slice) else { break }
            retain(block)
            blocks.append(block)
            hashes.append(h)
            parent = h
        }
        return (blocks, hashes)
    }

    /// A block for new keys and values, or nil when every block is referenced.
    public func allocate() -> Int32? {
        let block: Int32
        if let b = free.popLast() {
            block = b
        } else if head >= 0 {
            block = head
            unlink(block)
            if let entry = registered[Int(block)] {
                if blockForHash[entry.hash] == block { blockForHash[entry.hash] = nil }
                registered[Int(block)] = nil
            }
        } else {
            return nil
        }
        references[Int(block)] = 1
        return block
    }

    /// Records that `block` now holds the computed keys and values of `tokens` (a full block) whose
    /// chain hash is `hash`, so later sequences may reuse it.
    public func register(_ block: Int32, hash: UInt64, tokens: ArraySlice<Int>) {
        guard registered[Int(block)] == nil else { return }
        registered[Int(block)] = (hash, Array(tokens))
        if blockForHash[hash] == nil { blockForHash[hash] = block }
    }

    /// Drops one reference to each block; unreferenced registered blocks stay cached until evicted.
    public func release(_ blocks: [Int32]) {
        for block in blocks.reversed() {
            let i = Int(block)
            precondition(references[i] > 0, "block \(block) released more often than taken")
            references[i] -= 1
            guard references[i] == 0 else { continue }
            if let entry = registered[i], blockForHash[entry.hash] == block {
                append(block)
            } else {
                registered[i] = nil
                free.append(block)
            }
        }
    }

    private func retain(_ block: Int32) {
        if references[Int(block)] == 0 { unlink(block) }
        references[Int(block)] += 1
    }

    private func append(_ block: Int32) {
        previous[Int(block)] = tail
        next[Int(block)] = -1
        if tail >= 0 { next[Int(tail)] = block } else { head = block }
        tail = block
        evictableCount += 1
    }

    private func unlink(_ block: Int32) {
        let p = previous[Int(block)], n = next[Int(block)]
        if p >= 0 { next[Int(p)] = n } else { head = n }
        if n >= 0 { previous[Int(n)] = p } else { tail = p }
        previous[Int(block)] = -1
        next[Int(block)] = -1
        evictableCount -= 1
    }
}
