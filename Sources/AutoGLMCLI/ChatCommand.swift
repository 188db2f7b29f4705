import ArgumentParser
import Engine
import Foundation
import InferenceCore
import Runtime
import Tokenizer

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model in the terminal, with its own chat template. /reset starts over, /exit or Ctrl-D ends.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @Option(help: "System prompt for the conversation.") var system: String?
    @Option(name: [.customShort("n"), .customLong("max-tokens")], help: "Most tokens per reply.") var maxTokens = 512
    @Option(name: .customLong("context"), help: "Tokens the conversation may hold (default 4096 or the model's context if smaller).") var context = 4096

    func run() throws {
        let (model, tokenizer) = try modelOptions.load()
        let capacity = min(context, model.configuration.contextLength)
        let kvType = try modelOptions.kvCacheType
        var session = GenerationSession(model: model, tokenizer: tokenizer, capacity: capacity, kvType: kvType)
        let formatter = ChatFormatter(tokenizer: tokenizer)
        var messages: [ChatMessage] = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        printError("autoglm chat: \(model.configuration.name), \(capacity) tokens of context. /reset to start over, /exit to quit.")
        while true {
            FileHandle.standardOutput.write(Data("> ".utf8))
            guard let line = readLine(strippingNewline: true) else { break }
            let input = line.trimmingCharacters(in: .whitespaces)
            if input.isEmpty { continue }
            if input == "/exit" || input == "/quit" { break }
            if input == "/reset" {
                session = GenerationSession(model: model, tokenizer: tokenizer, capacity: capacity, kvType: kvType)
                messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
                printError("(conversation cleared)")
                continue
            }
            messages.append(ChatMessage(role: "user", content: input))
            // The whole conversation is rendered each turn with the model's template; the session
            // keeps the longest prefix it already computed, so earlier turns are not recomputed.
            let tokens = try formatter.tokens(for: messages)
            var reply = ""
            do {
                let summary = try session.generate(
                    conversation: tokens, sampling: sampling.parameters, stop: StopCondition(maxTokens: maxTokens)
                ) { piece in
                    reply += piece
                    FileHandle.standardOutput.write(Data(piece.utf8))
                }
                FileHandle.standardOutput.write(Data("\n".utf8))
                messages.append(ChatMessage(role: "assistant", content: reply))
                if summary.finishReason == .length {
                    printError("(reply cut at \(maxTokens) tokens)")
                }
            } catch EngineError.contextOverflow {
                messages.removeLast()
                printError("the conversation is full (\(capacity) tokens). /reset to start over, or pass a larger --context.")
            } catch {
                throw CLIError(error.description)
            }
        }
    }
}
