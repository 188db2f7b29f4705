public import Kernels

/// Limits of the scheduler, from the configuration.
public struct SchedulerConfiguration: Sendable {
    /// Sequences decoded together at most.
    public var maxSequences: Int
    /// Tokens (prefill chunks plus one per decoding sequence) per engine step at most.
    public var maxBatchTokens: Int
    /// Requests allowed to wait for a slot; beyond it `submit` refuses with `queueFull`.
    public var maxQueue: Int
    /// KV cache size in tokens (rounded up to whole blocks).
    public var cacheTokens: Int
    public var blockSize: Int
    /// Whether full blocks are shared between requests with the same prefix.
    public var prefixCaching: Bool
    /// How the KV cache stores keys and values.
    public var kvType: KVCacheType

    public init(maxSequences: Int = 8, maxBatchTokens: Int = 512, maxQueue: Int = 256, cacheTokens: Int = 16384,
                blockSize: Int = 16, prefixCaching: Bool = true, kvType: KVCacheType = .engineDefault) {
        self.maxSequences = max(1, maxSequences)
        self.maxBatchTokens = max(1, maxBatchTokens)
        self.maxQueue = max(0, maxQueue)
        self.cacheTokens = max(blockSize, cacheTokens)
        self.blockSize = blockSize
        self.prefixCaching = prefixCaching
        self.kvType = kvType
    }
}
