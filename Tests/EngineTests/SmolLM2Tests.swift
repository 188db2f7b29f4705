import Foundation
import Testing
import Engine
import InferenceCore
import GGUF
import TestSupport

/// The default model against the float64 oracle (Tests/Fixtures/smollm2-reference.json and
/// smollm2-last-prompt-logits.f32, made by scripts/reference/make_fixtures.py).
@Suite("SmolLM2-135M against the reference", .serialized)
struct SmolLM2Tests {
    nonisolated(unsafe) static let reference = try! Fixtures.json("smollm2-reference.json")
    static var prompts: [[String: Any]] { reference.array("prompts").compactMap { $0 as? [String: Any] } }

    static func file() throws -> GGUFFile { try GGUFFile(path: Fixtures.defaultModelPath) }

    @Test("reference path: last-prompt logits within 1e-3, 24 greedy tokens and every step's top-10 exact")
    func referencePath() throws {
        let model = try ReferenceLlama(file: try Self.file())
        let allLogits = try Fixtures.floats("smollm2-last-prompt-logits.f32")
        let vocabulary = model.configuration.vocabularySize
        for (index, prompt) in Self.prompts.enumerated() {
            model.reset()
            var logits: [Float] = []
            for token in prompt.ints("prompt_ids") { logits = try model.forward(token: token) }
            let want = allLogits[index * vocabulary ..< (index + 1) * vocabulary]
            let maxError = zip(want, logits).map { abs($0 - $1) }.max() ?? .infinity
            #expect(maxError < 1e-3, "prompt \(index): max |logit error| \(maxError)")
            var greedy: [Int] = []
            for step in prompt.array("steps").compactMap({ $0 as? [String: Any] }) {
                let expectedTop = step.array("top").compactMap { ($0 as? [Any])?.first as? NSNumber }.map(\.intValue)
                let top = Sampler.topLogprobs(logits[...], count: 10).map(\.id)
                #expect(top == expectedTop, "prompt \(index) step \(step.int("step") ?? -1)")
                let next = Sampler.argmax(logits)
                greedy.append(next)
                logits = try model.forward(token: next)
            }
            #expect(greedy == prompt.ints("greedy_ids"), "prompt \(index) greedy continuation")
        }
    }

    @Test("fast path: teacher-forced top-1 agreement >= 97%, mean top-10 overlap >= 9, same first token")
    func fastPathAgreement() throws {
        let model = try LlamaModel(file: try Self.file(), threads: 2)
        var positions = 0, top1Agree = 0, overlapSum = 0
        for (index, prompt) in Self.prompts.enumerated() {
            let promptIDs = prompt.ints("prompt_ids")
            let steps = prompt.array("steps").compactMap { $0 as? [String: Any] }
            // Teacher forcing: feed the reference's greedy path and score the prediction at every step.
            let sequence = promptIDs + prompt.ints("greedy_ids").dropLast()
            let cache = PagedKVCache(configuration: model.configuration, tokens: sequence.count, blockSize: 16)
            let table = (0 ..< Int32(cache.blockCount)).map { $0 }
            let out = try model.forward([BatchEntry(tokens: sequence, startPosition: 0, blockTable: table, logits: .all)], cache: cache)
            for (s, step) in steps.enumerated() {
                let row = out.row(promptIDs.count - 1 + s)
                let expectedTop = step.array("top").compactMap { ($0 as? [Any])?.first as? NSNumber }.map(\.intValue)
                let top = Sampler.topLogprobs(row, count: 10).map(\.id)
                positions += 1
                if top.first == expectedTop.first { top1Agree += 1 }
                overlapSum += Set(top).intersection(expectedTop).count
                if s == 0 { #expect(top.first == expectedTop.first, "prompt \(index): first generated token differs") }
            }
        }
        let agreement = Double(top1Agree) / Double(positions)
        let overlap = Double(overlapSum) / Double(positions)
        print("fast path: top-1 agreement \(top1Agree)/\(positions) = \(agreement), mean top-10 overlap \(overlap)")
        #expect(agreement >= 0.97)
        #expect(overlap >= 9)
    }
}
