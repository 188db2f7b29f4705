import ArgumentParser
import Engine
import Foundation
import Runtime
import Tokenizer

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text file under the model (one sequence, every token after the first scored).")

    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "A UTF-8 text file.") var file: String
    @Option(name: .customLong("context"), help: "Score at most this many tokens (default: the model's context length).") var context: Int?

    func run() throws {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw CLIError("cannot read \(file) as UTF-8 text: \(error.localizedDescription)")
        }
        let (model, tokenizer) = try modelOptions.load()
        var tokens = tokenizer.encode(text, addSpecial: true, parseSpecial: false)
        let limit = min(context ?? model.configuration.contextLength, model.configuration.contextLength)
        if tokens.count > limit {
            printError("note: the text is \(tokens.count) tokens; scoring the first \(limit) (the context length).")
            tokens = Array(tokens.prefix(limit))
        }
        guard tokens.count >= 2 else { throw CLIError("the text must be at least two tokens long.") }
        let clock = ContinuousClock()
        let start = clock.now
        let result: PerplexityResult
        let kvType = try modelOptions.kvCacheType
        do { result = try Perplexity.evaluate(model: model, tokens: tokens, kvType: kvType) } catch { throw CLIError(error.description) }
        let elapsed = clock.now - start
        print(String(format: "tokens=%d scored=%d nll=%.6f ppl=%.4f", result.tokens, result.scored,
                     result.meanNegativeLogLikelihood, result.perplexity))
        printError(String(format: "%.1f tokens/s", Double(result.tokens) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)))
    }
}
