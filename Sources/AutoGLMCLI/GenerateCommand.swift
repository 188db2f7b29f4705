import ArgumentParser
import Engine
import Foundation
import InferenceCore
import Runtime
import Tokenizer

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt, streamed to standard output; a summary line goes to standard error.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @Option(name: .shortAndLong, help: "The prompt text.") var prompt: String
    @Option(name: [.customShort("n"), .customLong("max-tokens")], help: "Most tokens to generate.") var maxTokens = 128
    @Option(name: .customLong("stop"), help: "Stop before this string (repeatable).") var stopStrings: [String] = []
    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past end-of-generation tokens (benchmarks).") var ignoreEOS = false
    @Flag(help: "Wrap the prompt in the model's chat template (ChatML if it has none) as one user turn.") var chat = false
    @Flag(name: .customLong("parse-special"), help: "Treat special-token text in the prompt (<|im_start|>) as the tokens.") var parseSpecial = false

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1 (got \(maxTokens)).") }
    }

    func run() throws {
        let (model, tokenizer) = try modelOptions.load()
        let promptTokens = chat
            ? try ChatFormatter(tokenizer: tokenizer).tokens(for: [ChatMessage(role: "user", content: prompt)])
            : tokenizer.encode(prompt, addSpecial: true, parseSpecial: parseSpecial)
        guard !promptTokens.isEmpty else { throw CLIError("the prompt is empty after tokenization.") }
        let contextLength = model.configuration.contextLength
        guard promptTokens.count < contextLength else {
            throw CLIError("the prompt is \(promptTokens.count) tokens but the model's context holds \(contextLength). Shorten the prompt.")
        }
        let session = GenerationSession(model: model, tokenizer: tokenizer, capacity: min(contextLength, promptTokens.count + maxTokens),
                                        kvType: try modelOptions.kvCacheType)
        let stop = StopCondition(maxTokens: maxTokens, stopStrings: stopStrings, ignoreEOS: ignoreEOS)
        var sampling = sampling.parameters
        if sampling.seed == nil { sampling.seed = UInt64.random(in: 0 ... UInt64.max) }
        let out = FileHandle.standardOutput
        let summary: GenerationSummary
        do {
            summary = try session.generate(appending: promptTokens, sampling: sampling, stop: stop) { piece in
                out.write(Data(piece.utf8))
            }
        } catch {
            throw CLIError(error.description)
        }
        out.write(Data("\n".utf8))
        let peak = peakResidentBytes().map { String(format: ", peak RSS %.1f MiB", Double($0) / 1_048_576) } ?? ""
        printError(String(
            format: "prompt %d tokens, generated %d tokens (%@), prefill %.1f tok/s, decode %.1f tok/s%@",
            summary.promptTokens, summary.generatedTokens, summary.finishReason.rawValue,
            summary.prefillTokensPerSecond, summary.decodeTokensPerSecond, peak))
    }
}
