import Serving
import Testing

@Suite("Block manager")
struct BlockManagerTests {
    @Test("a registered full block is found by a later sequence with the same prefix, and only then")
    func prefixHit() {
        let m = BlockManager(blockCount: 8, blockSize: 4)
        let tokens = Array(1 ... 10)
        let b0 = m.allocate()!, b1 = m.allocate()!, b2 = m.allocate()!
        let h0 = BlockManager.chainHash(parent: 0, tokens: tokens[0 ..< 4])
        let h1 = BlockManager.chainHash(parent: h0, tokens: tokens[4 ..< 8])
        m.register(b0, parent: 0, hash: h0, tokens: tokens[0 ..< 4])
        m.register(b1, parent: h0, hash: h1, tokens: tokens[4 ..< 8])
        #expect(m.usedCount == 3)

        let same = m.acquirePrefix(of: tokens)
        #expect(same.blocks == [b0, b1])
        #expect(same.hashes == [h0, h1])
        // A different second block stops the sharing after the first (its first three tokens are
        // offered for copying); a different first block finds nothing.
        let second = m.acquirePrefix(of: [1, 2, 3, 4, 5, 6, 7, 99, 9])
        #expect(second.blocks == [b0] && second.copy?.source == b1 && second.copy?.count == 3)
        let none = m.acquirePrefix(of: [9, 2, 3, 4, 5, 6, 7, 8, 9])
        #expect(none.blocks.isEmpty && none.copy == nil)
        // Never the whole prompt: 8 tokens are two full blocks, but the last token must be computed.
        let whole = m.acquirePrefix(of: Array(1 ... 8))
        #expect(whole.blocks == [b0] && whole.copy?.count == 3)
        for hit in [same, second, whole] { m.release(hit.blocks + (hit.copy.map { [$0.source] } ?? [])) }
        m.release([b0, b1, b2])
        #expect(m.usedCount == 0)
        #expect(m.evictableCount == 2)
        // Released blocks stay cached until their space is needed.
        #expect(m.acquirePrefix(of: tokens).blocks == [b0, b1])
    }

    @Test("eviction takes the least recently released cached block, and forgets its hash")
    func eviction() {
        let m = BlockManager(blockCount: 2, blockSize: 2)
        let a = m.allocate()!, b = m.allocate()!
        let ha = BlockManager.chainHash(parent: 0, tokens: [1, 2])
        let hb = BlockManager.chainHash(parent: 0, tokens: [3, 4])
        m.register(a, parent: 0, hash: ha, tokens: [1, 2])
        m.register(b, parent: 0, hash: hb, tokens: [3, 4])
        #expect(m.allocate() == nil)
        m.release([a])
        m.release([b])
        #expect(m.availableCount == 2)
        let first = m.allocate()
        #expect(first == a)
        #expect(m.acquirePrefix(of: [1, 2, 9]).blocks.isEmpty)
        #expect(m.acquirePrefix(of: [3, 4, 9]).blocks == [b])
    }

    @Test("a hash collision with different tokens is not a hit")
    func collisionIsChecked() {
        let m = BlockManager(blockCount: 2, blockSize: 2)
        let a = m.allocate()!
        // Register block a under the hash [1, 2] would have, but holding other tokens.
        m.register(a, parent: 0, hash: BlockManager.chainHash(parent: 0, tokens: [1, 2]), tokens: [7, 8])
        #expect(m.acquirePrefix(of: [1, 2, 3]).blocks.isEmpty)
    }

    @Test("past the shared blocks, the start of a registered block (full or a released partial one) is offered for copying")
    func partialReuse() {
        let m = BlockManager(blockCount: 8, blockSize: 4)
        let b0 = m.allocate()!, b1 = m.allocate()!
        let h0 = BlockManager.chainHash(parent: 0, tokens: [1, 2, 3, 4])
        m.register(b0, parent: 0, hash: h0, tokens: [1, 2, 3, 4])
        // b1 holds positions 4, 5, 6 of a sequence that ended there.
        m.registerPartial(b1, parent: h0, tokens: [5, 6, 7])
        m.release([b0, b1])
        #expect(m.usedCount == 0 && m.evictableCount == 2)

        // The same 8-token prompt: block 0 shared, positions 4...6 copied from b1, position 7 computed.
        let same = m.acquirePrefix(of: [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(same.blocks == [b0])
        #expect(same.copy?.source == b1 && same.copy?.count == 3)
        #expect(same.tokens(blockSize: 4) == 7)
        #expect(m.usedCount == 2, "the copy source is held until the caller releases it")
        m.release(same.blocks + [same.copy!.source])

        // A prompt that shares only 5 and 6 after block 0 copies two positions.
        #expect(m.acquirePrefix(of: [1, 2, 3, 4, 5, 6, 9, 9, 9]).copy?.count == 2)
        // Never the last token: the prompt [1...4, 5, 6] may take position 4 only.
        #expect(m.acquirePrefix(of: [1, 2, 3, 4, 5, 6]).copy?.count == 1)
        // A prompt of exactly one full cached block: 3 positions copied from it, the 4th computed.
        let whole = m.acquirePrefix(of: [1, 2, 3, 4])
        #expect(whole.blocks.isEmpty && whole.copy?.source == b0 && whole.copy?.count == 3)
    }

    @Test("an evicted partial block is no longer offered")
    func partialEviction() {
        let m = BlockManager(blockCount: 1, blockSize: 4)
        let b = m.allocate()!
        m.registerPartial(b, parent: 0, tokens: [1, 2])
        m.release([b])
        #expect(m.acquirePrefix(of: [1, 2, 3]).copy?.count == 2)
        m.release([b])
        #expect(m.allocate() == b)
        #expect(m.acquirePrefix(of: [1, 2, 3]).copy == nil)
    }
}
