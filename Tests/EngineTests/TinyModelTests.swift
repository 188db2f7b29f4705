import Testing
import Engine
import GGUF
import Kernels
import TestSupport

/// The three random-weight tiny Llama models against the float64 oracle's logits
/// (Tests/Fixtures/tiny-reference.json, made by scripts/reference/make_tiny.py).
@Suite("Tiny Llama models against the reference")
struct TinyModelTests {
    nonisolated(unsafe) static let reference = try! Fixtures.json("tiny-reference.json")
    static let files = ["f32", "q8_0", "q4_0"]
    static let sequenceNames = ["single_bos", "hello_world_bytes", "random_100"]

    struct Case: CustomStringConvertible, Sendable {
        let file: String
        let sequence: String
        var description: String { "\(file) \(sequence)" }
    }

    static let cases = files.flatMap { f in sequenceNames.map { Case(file: f, sequence: $0) } }

    static func model(_ file: String) throws -> GGUFFile {
        try GGUFFile(path: Fixtures.path("tiny-llama-\(file).gguf"))
    }

    static func expected(_ c: Case) -> [String: Any] {
        reference.dict("files").dict(c.file).dict("results").dict(c.sequence)
    }

    @Test("reference path: last logits within 1e-4, argmax at every position, 8 greedy tokens", arguments: cases)
    func referencePath(_ c: Case) throws {
        let tokens = Self.reference.dict("sequences").ints(c.sequence)
        let expected = Self.expected(c)
        let model = try ReferenceLlama(file: try Self.model(c.file))
        var logits: [Float] = []
        var argmaxes: [Int] = []
        for token in tokens {
            logits = try model.forward(token: token)
            argmaxes.append(Sampler.argmax(logits))
        }
        let want = expected.doubles("last_logits")
        #expect(want.count == logits.count)
        let maxError = zip(want, logits).map { abs($0 - Double($1)) }.max() ?? .infinity
        #expect(maxError < 1e-4, "max |logit error| \(maxError)")
        #expect(argmaxes == expected.ints("argmax_per_position"))
        var greedy: [Int] = []
        for _ in 0 ..< 8 {
            let next = Sampler.argmax(logits)
            greedy.append(next)
            logits = try model.forward(token: next)
        }
        #expect(greedy == expected.ints("greedy8_kv_cache"))
    }

    @Test("fast path: whole sequence in one batch matches the reference", arguments: cases)
    func fastPath(_ c: Case) throws {
        let tokens = Self.reference.dict("sequences").ints(c.sequence)
        let expected = Self.expected(c)
        let model = try LlamaModel(file: try Self.model(c.file), threads: 2)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 128, blockSize: 16, elementType: .f32)
        let table = (0 ..< Int32(cache.blockCount)).map { $0 }
        let out = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: table, logits: .all)], cache: cache)
        #expect(out.rowCount == tokens.count)
        let last = Array(out.last(of: 0))
        let want = expected.doubles("last_logits")
        let maxError = zip(want, last).map { abs($0 - Double($1)) }.max() ?? .infinity
        // F32 weights keep float32 activations; quantized weights meet 8-bit activations (llama.cpp: 0.06-0.1).
        let tolerance = c.file == "f32" ? 1e-4 : 0.1
        #expect(maxError < tolerance, "max |logit error| \(maxError)")
        let argmaxes = (0 ..< tokens.count).map { Sampler.argmax(Array(out.row($0))) }
        let agree = zip(argmaxes, expected.ints("argmax_per_position")).filter { $0 == $1 }.count
        if c.file == "f32" {
            #expect(agree == tokens.count)
        } else {
            #expect(Double(agree) >= 0.9 * Double(tokens.count), "argmax agreement \(agree)/\(tokens.count)")
        }
    }

    @Test("fast path: token-by-token decode with the paged cache equals one batched prefill")
    func incrementalEqualsBatched() throws {
        let tokens = Self.reference.dict("sequences").ints("random_100")
        let model = try LlamaModel(file: try Self.model("f32"), threads: 2)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 256, blockSize: 16, elementType: .f32)
        // Deliberately scattered blocks: the block table, not adjacency, must decide where keys live.
        let table: [Int32] = [15, 3, 9, 0, 12, 6, 1, 7]
        let batched = try model.forward([BatchEntry(tokens: tokens, startPosition: 0, blockTable: [0, 1, 2, 3, 4, 5, 6, 8], logits: .last)], cache: cache)
        var last: [Float] = []
        for (p, token) in tokens.enumerated() {
            let out = try model.forward([BatchEntry(tokens: [token], startPosition: p, blockTable: table, logits: .last)], cache: cache)
            last = Array(out.last(of: 0))
        }
        let maxError = zip(last, batched.last(of: 0)).map { abs($0 - $1) }.max() ?? .infinity
        #expect(maxError < 1e-4, "max difference \(maxError)")
    }

    @Test("fast path: sequences batched together give the same logits as alone")
    func batchingIsolation() throws {
        let seqs = Self.reference.dict("sequences")
        let a = seqs.ints("hello_world_bytes"), b = seqs.ints("random_100")
        let model = try LlamaModel(file: try Self.model("q8_0"), threads: 2)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 512, blockSize: 16, elementType: .f32)
        let tableA: [Int32] = [0, 1], tableB: [Int32] = [2, 3, 4, 5, 6, 7, 8]
        let alone = try model.forward([BatchEntry(tokens: a, startPosition: 0, blockTable: tableA)], cache: cache)
        let together = try model.forward([
            BatchEntry(tokens: a, startPosition: 0, blockTable: [10, 11]),
            BatchEntry(tokens: b, startPosition: 0, blockTable: tableB),
        ], cache: cache)
        let difference = zip(alone.last(of: 0), together.last(of: 0)).map { abs($0 - $1) }.max() ?? .infinity
        #expect(difference < 1e-5)
        #expect(together.rowsPerEntry.count == 2)
    }

    @Test("bad input is an error, not a crash")
    func badInput() throws {
        let model = try LlamaModel(file: try Self.model("f32"), threads: 1)
        let cache = PagedKVCache(configuration: model.configuration, tokens: 32, blockSize: 16, elementType: .f32)
        #expect(throws: EngineError.self) {
            _ = try model.forward([BatchEntry(tokens: [999], startPosition: 0, blockTable: [0])], cache: cache)
        }
        #expect(throws: EngineError.self) {
            _ = try model.forward([BatchEntry(tokens: [1], startPosition: 128, blockTable: [0])], cache: cache)
        }
        #expect(throws: EngineError.self) {
            _ = try model.forward([BatchEntry(tokens: Array(repeating: 1, count: 20), startPosition: 0, blockTable: [0])], cache: cache)
        }
        #expect(throws: EngineError.self) {
            _ = try model.forward([], cache: cache)
        }
    }
}
