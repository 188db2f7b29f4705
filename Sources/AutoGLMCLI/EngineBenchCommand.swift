import ArgumentParser
import Engine
import Foundation
import GGUF
import Kernels

/// llama-bench's two measurements on this engine, so the two can be set side by side:
/// pp N = one forward pass over N prompt tokens; tg N = N single-token decode steps; both after
/// `--depth` tokens already in the cache (llama-bench -d; 0 = an empty cache). Random token ids, as
/// llama-bench uses. The load (map, pack) is timed and reported too.
struct EngineBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-engine",
        abstract: "Measure prompt processing (pp) and decode (tg) speed of the engine, llama-bench style.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .customShort("p"), help: "Prompt tokens for the pp test (0 skips it).") var promptTokens = 512
    @Option(name: .customShort("n"), help: "Tokens for the tg test (0 skips it).") var generateTokens = 128
    @Option(name: .customShort("d"), help: "Tokens already in the cache before each test (llama-bench -d).") var depth = 0
    @Option(name: .customShort("r"), help: "Repetitions; the table shows mean and standard deviation.") var repetitions = 5
    @Option(name: .customLong("batch"), help: "Decode this many sequences together in the tg test (aggregate tok/s).") var batch = 1
    @Flag(help: "Print one JSON object per test instead of a table.") var json = false

    func validate() throws {
        if depth < 0 || promptTokens < 0 || generateTokens < 0 { throw ValidationError("-p, -n and -d must not be negative.") }
        if repetitions < 1 || batch < 1 { throw ValidationError("-r and --batch must be at least 1.") }
    }

    func run() throws {
        let path = modelOptions.resolvedPath
        let kvType = try modelOptions.kvCacheType
        let file: GGUFFile
        let model: any LanguageModel
        let clock = ContinuousClock()
        let loadStart = clock.now
        do {
            file = try GGUFFile(path: path)
            model = try ArchitectureRegistry.load(file, threads: modelOptions.threadCount)
        } catch let error as GGUFError {
            throw CLIError(error.description)
        } catch let error as EngineError {
            throw CLIError(error.description)
        }
        let loadSeconds = (clock.now - loadStart).secondsValue
        let c = model.configuration
        guard depth + max(promptTokens, generateTokens) <= c.contextLength else {
            throw CLIError("-d \(depth) plus the test's tokens exceed the model's context of \(c.contextLength) tokens.")
        }
        var rng = SeededGenerator(seed: 1234)
        func randomTokens(_ n: Int) -> [Int] { (0 ..< n).map { _ in Int(rng.next() % UInt64(c.vocabularySize)) } }
        /// Fills positions 0..<depth of a sequence (untimed), 512 tokens a pass.
        func fillDepth(_ table: [Int32], cache: PagedKVCache) throws {
            var position = 0
            while position < depth {
                let n = min(512, depth - position)
                _ = try model.forward([BatchEntry(tokens: randomTokens(n), startPosition: position, blockTable: table, logits: .last)], cache: cache)
                position += n
            }
        }
        var rows: [(String, [Double])] = []
        let suffix = depth > 0 ? " @ d\(depth)" : ""

        // Warm-up: pages the weights in and sizes the workspaces.
        let warmStart = clock.now
        do {
            let cache = PagedKVCache(configuration: c, tokens: 64, elementType: kvType)
            _ = try model.forward([BatchEntry(tokens: randomTokens(16), startPosition: 0, blockTable: [0, 1, 2, 3])], cache: cache)
        }
        let warmSeconds = (clock.now - warmStart).secondsValue
        if promptTokens > 0 {
            var rates: [Double] = []
            let cache = PagedKVCache(configuration: c, tokens: depth + promptTokens, elementType: kvType)
            let table = (0 ..< Int32(cache.blockCount)).map { $0 }
            try fillDepth(table, cache: cache)
            for _ in 0 ..< repetitions {
                let tokens = randomTokens(promptTokens)
                let start = clock.now
                _ = try model.forward([BatchEntry(tokens: tokens, startPosition: depth, blockTable: table)], cache: cache)
                rates.append(Double(promptTokens) / (clock.now - start).secondsValue)
            }
            rows.append(("pp\(promptTokens)" + suffix, rates))
        }
        if generateTokens > 0 {
            var rates: [Double] = []
            let perSequence = (depth + generateTokens + 15) / 16
            let cache = PagedKVCache(configuration: c, tokens: perSequence * 16 * batch, elementType: kvType)
            let tables = (0 ..< batch).map { s in (0 ..< perSequence).map { Int32(s * perSequence + $0) } }
            for table in tables { try fillDepth(table, cache: cache) }
            for _ in 0 ..< repetitions {
                var next = (0 ..< batch).map { _ in randomTokens(1)[0] }
                let start = clock.now
                for step in 0 ..< generateTokens {
                    let entries = (0 ..< batch).map { BatchEntry(tokens: [next[$0]], startPosition: depth + step, blockTable: tables[$0]) }
                    let out = try model.forward(entries, cache: cache)
                    next = (0 ..< batch).map { Sampler.argmax(out.last(of: $0)) }
                }
                rates.append(Double(generateTokens * batch) / (clock.now - start).secondsValue)
            }
            rows.append(("tg\(generateTokens)" + (batch > 1 ? "x\(batch)" : "") + suffix, rates))
        }
        let name = (try? file.string("general.name")) ?? path
        let size = Double(file.fileSize) / 1_048_576
        if !json {
            print(String(format: "load %.2f s (map + pack), first forward pass %.2f s; KV cache %@", loadSeconds, warmSeconds, kvType.rawValue))
            print("| model | size | threads | kernels | test | t/s |")
            print("| --- | ---: | ---: | --- | --- | ---: |")
        }
        for (test, rates) in rows {
            let mean = rates.reduce(0, +) / Double(rates.count)
            let sd = (rates.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(1, rates.count - 1))).squareRoot()
            if json {
                print("{\"model\":\"\(name)\",\"threads\":\(modelOptions.threadCount),\"kernels\":\"\(KernelPath.active)\",\"kv_type\":\"\(kvType.rawValue)\",\"test\":\"\(test)\",\"tokens_per_second\":\(mean),\"stddev\":\(sd),\"samples\":\(rates),\"load_seconds\":\(loadSeconds)}")
            } else {
                print(String(format: "| %@ | %.2f MiB | %d | %@ | %@ | %.2f ± %.2f |", name, size, modelOptions.threadCount,
                             KernelPath.active.description, test, mean, sd))
            }
        }
    }
}

extension Duration {
    var secondsValue: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
