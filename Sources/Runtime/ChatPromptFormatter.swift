import Foundation
public import InferenceCore
public import Tokenizer

/// Turns a conversation into prompt tokens with the model's own chat template (ChatML when the model
/// has none or its template does not parse), ending where the assistant's reply begins.
public struct ChatPromptFormatter: Sendable {
    public let template: ChatTemplate
    public let tokenizer: Tokenizer
    /// Why the model's own template is not used, when it is not.
    public let fallbackReason: String?

    public init(tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
        if let text = tokenizer.chatTemplate {
            do {
                template = try ChatTemplate(jinja: text)
                fallbackReason = nil
            } catch {
                template = .chatML
                fallbackReason = "the model's chat template does not parse (\(error)); using ChatML"
            }
        } else {
            template = .chatML
            fallbackReason = "the model has no chat template; using ChatML"
        }
    }

    /// The rendered prompt text.
    public func render(messageValues: [JinjaValue], extra: [String: JinjaValue] = [:], addGenerationPrompt: Bool = true) throws(ChatTemplateError) -> String {
        try template.render(messageValues: messageValues, addGenerationPrompt: addGenerationPrompt,
                            bosToken: specialText(tokenizer.bosID), eosToken: specialText(tokenizer.eosID), extra: extra)
    }

    public func render(messages: [ChatMessage], addGenerationPrompt: Bool = true) throws(ChatTemplateError) -> String {
        try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt,
                            bosToken: specialText(tokenizer.bosID), eosToken: specialText(tokenizer.eosID))
    }

    /// Tokens of a rendered prompt. Templates that write the BOS text themselves do not get a second
    /// one from the tokenizer.
    public func tokens(forRendered text: String) -> [Int] {
        let bos = specialText(tokenizer.bosID)
        let addSpecial = !(tokenizer.addBOS && !bos.isEmpty && text.hasPrefix(bos))
        return tokenizer.encode(text, addSpecial: addSpecial, parseSpecial: true)
    }

    public func tokens(for messages: [ChatMessage]) throws(ChatTemplateError) -> [Int] {
        tokens(forRendered: try render(messages: messages))
    }

    private func specialText(_ id: Int?) -> String { id.flatMap { tokenizer.token(for: $0) } ?? "" }
}
