/// Owns the blocks of one `PagedKVCache` for the scheduler: reference counts, a free list, and a
/// prefix cache that lets a new sequence reuse keys and values another sequence already computed.
///
/// A full block is identified by a chain hash of its tokens and the hash of the block before it
/// (vLLM's automatic prefix caching), so a hit on block i implies the whole prefix up to i matches.
/// The tokens are stored beside the hash and compared on every hit, so a hash collision can never
/// hand a sequence someone else's keys. Full blocks are shared (referenced) by every sequence that
/// hits them.
///
/// Past the shared full blocks, a sequence can still reuse the start of one more block: a full
/// block that begins like its next tokens, or the partly filled last block a finished or preempted
/// sequence left behind. Such a block is never shared (the new sequence writes into it): its
/// contents are copied into a fresh block (copy on write), so a repeated prompt recomputes only its
/// last token instead of up to a whole block.
///
/// Blocks nobody references keep their contents and their registration until the space is needed:
/// they are evicted least recently released first.
///
/// Not thread-safe: the scheduler's engine thread is its only user.
public final class BlockManager {
    public let blockSize: Int
    public let blockCount: Int

    /// What a registered block holds: full blocks have a chain hash, partial ones do not.
    private struct Entry {
        var hash: UInt64?
        var parent: UInt64
        var tokens: [Int]
    }

    private var references: [Int32]
    private var registered: [Entry?]
    private var blockForHash: [UInt64: Int32] = [:]
    /// Registered blocks (full or partial) by the chain hash of the block before them (0: first block).
    private var children: [UInt64: [Int32]] = [:]
    /// Blocks never registered or whose registration was dropped, ready to hand out.
    private var free: [Int32]
    // Registered blocks with no references, least recently released first (a doubly linked list
    // through `previous`/`next`, -1 terminated, so that a hit can take a block out in O(1)).
    private var previous: [Int32]
    private var next: [Int32]
    private var head: Int32 = -1
    private var tail: Int32 = -1
    public private(set) var evictableCount = 0

    /// The most candidates examined for a partial reuse after a given block (newest first).
    static let candidateLimit = 32

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

    /// What the prefix cache holds for the start of a prompt.
    public struct PrefixHit {
        /// Shared full blocks, taken (referenced) for the caller, and their chain hashes.
        public var blocks: [Int32] = []
        public var hashes: [UInt64] = []
        /// A block whose first `count` positions continue the prefix: the caller copies them into a
        /// block of its own and must then `release([source])`.
        public var copy: (source: Int32, count: Int)?

        /// Prompt positions covered (shared blocks plus the copied part).
        public func tokens(blockSize: Int) -> Int { blocks.count * blockSize + (copy?.count ?? 0) }
    }

    /// The longest cached start of `tokens`: whole shared blocks, then at most one block to copy.
    /// Never covers the last token: a sequence must compute at least one position to get logits.
    public func acquirePrefix(of tokens: [Int]) -> PrefixHit {
        var hit = PrefixHit()
        guard tokens.count > 1 else { return hit }
        let maximumBlocks = (tokens.count - 1) / blockSize
        var parent: UInt64 = 0
        for b in 0 ..< maximumBlocks {
            let slice = tokens[b * blockSize ..< (b + 1) * blockSize]
            let h = Self.chainHash(parent: parent, tokens: slice)
            guard let block = blockForHash[h], let entry = registered[Int(block)], entry.tokens.elementsEqual(slice) else { break }
            retain(block)
            hit.blocks.append(block)
            hit.hashes.append(h)
            parent = h
        }
        // The next block's start: the tokens after the shared ones, leaving the last one to compute.
        let start = hit.blocks.count * blockSize
        let wanted = tokens[start ..< min(start + blockSize, tokens.count - 1)]
        guard !wanted.isEmpty, let candidates = children[parent] else { return hit }
        var best: (block: Int32, count: Int)?
        for block in candidates.suffix(Self.candidateLimit).reversed() {
            guard let entry = registered[Int(block)] else { continue }
            var n = 0
            while n < wanted.count && n < entry.tokens.count && entry.tokens[n] == wanted[wanted.startIndex + n] { n += 1 }
            if n > (best?.count ?? 0) { best = (block, n) }
            if n == wanted.count { break }
        }
        if let best {
            retain(best.block)
            hit.copy = (best.block, best.count)
        }
        return hit
    }

    /// A block for new keys and values, or nil when every block is referenced.
    public func allocate() -> Int32? {
        let block: Int32
        if let b = free.popLast() {
            block = b
        } else if head >= 0 {
            block = head
            unlink(block)
            unregister(block)
        } else {
            return nil
        }
        references[Int(block)] = 1
        return block
    }

    /// Records that `block` now holds the computed keys and values of `tokens` (a full block) whose
    /// chain hash is `hash`, following the block whose hash is `parent`, so later sequences may reuse it.
    public func register(_ block: Int32, parent: UInt64, hash: UInt64, tokens: ArraySlice<Int>) {
        guard registered[Int(block)] == nil else { return }
        registered[Int(block)] = Entry(hash: hash, parent: parent, tokens: Array(tokens))
        if blockForHash[hash] == nil { blockForHash[hash] = block }
        children[parent, default: []].append(block)
    }

    /// Records that the first `tokens.count` positions of `block` (a sequence's last, partly filled
    /// block, about to be released) hold computed keys and values, after the block hashed `parent`.
    /// A later sequence may copy them; the block itself is never shared.
    public func registerPartial(_ block: Int32, parent: UInt64, tokens: ArraySlice<Int>) {
        guard registered[Int(block)] == nil, !tokens.isEmpty, tokens.count < blockSize else { return }
        registered[Int(block)] = Entry(hash: nil, parent: parent, tokens: Array(tokens))
        children[parent, default: []].append(block)
    }

    /// Drops one reference to each block; unreferenced registered blocks stay cached until evicted.
    public func release(_ blocks: [Int32]) {
        for block in blocks.reversed() {
            let i = Int(block)
            precondition(references[i] > 0, "block \(block) released more often than taken")
            references[i] -= 1
            guard references[i] == 0 else { continue }
            if let entry = registered[i], entry.hash.map({ blockForHash[$0] == block }) ?? true {
                append(block)
            } else {
                unregister(block)
                free.append(block)
            }
        }
    }

    private func unregister(_ block: Int32) {
        guard let entry = registered[Int(block)] else { return }
        if let hash = entry.hash, blockForHash[hash] == block { blockForHash[hash] = nil }
        if var siblings = children[entry.parent] {
            siblings.removeAll { $0 == block }
            children[entry.parent] = siblings.isEmpty ? nil : siblings
        }
        registered[Int(block)] = nil
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
