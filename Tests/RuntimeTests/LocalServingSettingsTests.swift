import Kernels
import Runtime
import Testing

/// KV sizing for a local model, as `serve` does it (no model needed).
@Suite("Local serving settings")
struct LocalServingSettingsTests {
    @Test("the served context is the asked one, never more than the model's")
    func context() {
        #expect(LocalServingSettings(contextLength: 4096).servedContext(modelContext: 8192) == 4096)
        #expect(LocalServingSettings(contextLength: 65536).servedContext(modelContext: 8192) == 8192)
        #expect(LocalServingSettings().servedContext(modelContext: 8192) == 8192)
    }

    @Test("the KV cache: the budget over bytes per token; by default every sequence at full context, at most 1 GiB; never under 256 tokens")
    func cacheTokens() {
        let perToken = 40_960  // GLM-4-9B, f16: 40 layers x 2 KV heads x 128 x 2 (K and V) x 2 bytes
        #expect(LocalServingSettings(kvMemoryBytes: 512 << 20).cacheTokens(context: 8192, bytesPerToken: perToken) == (512 << 20) / perToken)
        // Default: 2 sequences x 1024 tokens fits under the cap.
        #expect(LocalServingSettings(maxSequences: 2).cacheTokens(context: 1024, bytesPerToken: perToken) == 2048)
        // Default: 8 x 8192 would be 2.5 GiB, capped at 1 GiB.
        #expect(LocalServingSettings(maxSequences: 8).cacheTokens(context: 8192, bytesPerToken: perToken) == (1 << 30) / perToken)
        // A tiny budget still holds one short sequence.
        #expect(LocalServingSettings(kvMemoryBytes: 1000).cacheTokens(context: 8192, bytesPerToken: perToken) == 256)
        #expect(LocalServingSettings(kvMemoryBytes: 1000).cacheTokens(context: 100, bytesPerToken: perToken) == 100)
    }
}
