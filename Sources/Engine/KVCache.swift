public import Kernels

/// Key and value storage for every layer, cut into fixed-size blocks of `blockSize` token slots.
///
/// The engine owns the bytes; who holds which block is decided outside (a `BlockAllocator` here,
/// the scheduler in the server). Block b, slot s of layer l holds the value of one token at
/// `values[l][(b * blockSize + s) * kvWidth ..< +kvWidth]` and its key transposed within the block:
/// element e at `keys[l][b * blockSize * kvWidth + e * blockSize + s]` (one dimension of a block's keys
/// is contiguous, for the attention kernel), as `elementType` (f16 by default).
public final class PagedKVCache: @unchecked Sendable {
    public let layerCount: Int
    public let kvWidth: Int
    public let blockSize: Int
    public let blockCount: Int
    public let elementType: KVCacheType
    let keys: [KVArena]
    let values: [KVArena]

    public init(layerCount: Int, kvWidth: Int, blockSize: Int = 16, blockCount: Int, elementType: KVCacheType = .engineDefault) {
        precondition(blockSize > 0 && blockCount > 0)
        precondition(elementType != .q8_0 || kvWidth % 32 == 0, "q8_0 KV needs rows of whole blocks of 32 (KVCacheType.problem)")
        self.layerCount = layerCount
        self.kvWidth = kvWidth
        self.blockSize = blockSize
        self.blockCount = blockCount
        self.elementType = elementType
        let elements = blockCount * blockSize * kvWidth
        keys = (0 ..< layerCount).map { _ in KVArena(type: elementType, count: elements) }
        values = (0 ..< layerCount).map { _ in KVArena(type: elementType, count: elements) }
    }

    /// A cache for `configuration` with room for `tokens` token slots in total.
    public convenience init(configuration: ModelConfiguration, tokens: Int, blockSize: Int = 16,
                            elementType: KVCacheType = .engineDefault) {
        self.init(layerCount: configuration.layerCount, kvWidth: configuration.kvWidth, blockSize: blockSize,
                  blockCount: max(1, (tokens + blockSize - 1) / blockSize), elementType: elementType)
    }

    /// Bytes of K and V storage per token slot across all layers.
    public static func bytesPerToken(_ configuration: ModelConfiguration, elementType: KVCacheType = .engineDefault) -> Int {
        2 * configuration.layerCount * elementType.bytes(elements: configuration.kvWidth)
    }

    /// Copies every layer's keys and values of block `source` into block `destination` (copy on write
    /// of a cached block that a new sequence starts from).
    public func copyBlock(_ source: Int32, to destination: Int32) {
        precondition(source >= 0 && Int(source) < blockCount && destination >= 0 && Int(destination) < blockCount)
        guard source != destination else { return }
        let length = blockSize * kvWidth
        for layer in 0 ..< layerCount {
            keys[layer].copyElements(from: Int(source) * length, to: Int(destination) * length, length: length)
            values[layer].copyElements(from: Int(source) * length, to: Int(destination) * length, length: length)
        }
    }

    /// The key (or value) stored for a token slot of a layer, as float32 (tests and tools).
    public func storedKey(layer: Int, block: Int32, slot: Int) -> [Float] {
        keys[layer].floats(keyOffset(block: block, slot: slot), kvWidth, stride: blockSize, scaleIndex: scaleIndex(block: block, slot: slot))
    }
    public func storedValue(layer: Int, block: Int32, slot: Int) -> [Float] {
        values[layer].floats(slotOffset(block: block, slot: slot), kvWidth, scaleIndex: scaleIndex(block: block, slot: slot))
    }

    /// The q8_0 scale index of a token slot's row (its first 32 elements; keys and values alike).
    @inline(__always)
    func scaleIndex(block: Int32, slot: Int) -> Int { slotOffset(block: block, slot: slot) / 32 }

    /// Element offset of a token slot's value inside a layer's buffer (kvWidth contiguous elements).
    @inline(__always)
    func slotOffset(block: Int32, slot: Int) -> Int { (Int(block) * blockSize + slot) * kvWidth }

    /// Element offset of a token slot's first key element (the rest follow at a stride of blockSize).
    @inline(__always)
    func keyOffset(block: Int32, slot: Int) -> Int { Int(block) * blockSize * kvWidth + slot }
}

/// Hands out block ids of a `PagedKVCache` (a free list). Not thread-safe: one owner.
public struct BlockAllocator: Sendable {
    private var free: [Int32]
    public let blockCount: Int

    public init(blockCount: Int) {
        self.blockCount = blockCount
        free = (0 ..< Int32(blockCount)).reversed()
    }

    public var freeCount: Int { free.count }

    public mutating func allocate() -> Int32? { free.popLast() }

    public mutating func release(_ blocks: [Int32]) { free.append(contentsOf: blocks.reversed()) }
}

/// One sequence's view of the cache: its block table and how many positions it has filled.
public struct SequenceState: Sendable {
    public var blockTable: [Int32] = []
    /// Positions 0..<length hold this sequence's keys and values.
    public var length = 0

    public init() {}

    /// Makes room for `count` more positions, taking blocks from `allocator`.
    public mutating func reserve(_ count: Int, blockSize: Int, allocator: inout BlockAllocator) throws(EngineError) {
        let needed = (length + count + blockSize - 1) / blockSize - blockTable.count
        guard needed > 0 else { return }
        guard allocator.freeCount >= needed else { throw .outOfKVBlocks(needed: needed, free: allocator.freeCount) }
        for _ in 0 ..< needed { blockTable.append(allocator.allocate()!) }
    }
}
