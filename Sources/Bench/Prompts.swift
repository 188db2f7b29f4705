import Foundation
public import OpenAIAPI

/// One request's input: a plain prompt or chat messages, and an optional output length.
public struct BenchPrompt: Sendable, Equatable {
    public enum Input: Sendable, Equatable {
        case text(String)
        case messages([JSONValue])
    }

    public var input: Input
    public var maxTokens: Int?
    /// Synthetic prompts ask for exactly `maxTokens` tokens (ignore_eos, min_tokens), as vLLM's random dataset does.
    public var exactLength: Bool

    public init(input: Input, maxTokens: Int?, exactLength: Bool = false) {
        self.input = input
        self.maxTokens = maxTokens
        self.exactLength = exactLength
    }
}

/// Reads `{"prompt": "...", "max_tokens": N}` or `{"messages": [...], "max_tokens": N}` lines.
public enum Dataset {
    private struct Line: Decodable {
        var prompt: String?
        var messages: [JSONValue]?
        var maxTokens: Int?
        enum CodingKeys: String, CodingKey { case prompt, messages, maxTokens = "max_tokens" }
    }

    public static func parse(_ text: String, source: String = "dataset") throws(BenchError) -> [BenchPrompt] {
        var prompts: [BenchPrompt] = []
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let parsed: Line
            do {
                parsed = try JSONDecoder().decode(Line.self, from: Data(line.utf8))
            } catch {
                throw .datasetLine(source: source, line: index + 1, reason: "not a JSON object with \"prompt\" or \"messages\"")
            }
            if let maxTokens = parsed.maxTokens, maxTokens < 1 {
                throw .datasetLine(source: source, line: index + 1, reason: "max_tokens must be at least 1")
            }
            if let messages = parsed.messages, !messages.isEmpty {
                prompts.append(BenchPrompt(input: .messages(messages), maxTokens: parsed.maxTokens))
            } else if let prompt = parsed.prompt {
                prompts.append(BenchPrompt(input: .text(prompt), maxTokens: parsed.maxTokens))
            } else {
                throw .datasetLine(source: source, line: index + 1, reason: "needs a \"prompt\" string or a non-empty \"messages\" array")
            }
        }
        guard !prompts.isEmpty else { throw .emptyDataset(source) }
        return prompts
    }

    public static func load(path: String) throws(BenchError) -> [BenchPrompt] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .datasetUnreadable(path: path, reason: error.localizedDescription)
        }
        return try parse(text, source: path)
    }
}

/// Synthetic prompts of common English words: with a leading space, each is one token in the
/// vocabularies of Llama, GLM and most BPE tokenizers, so `inputLength` words are about that many tokens.
public enum SyntheticPrompts {
    static let words = [
        "the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as",
        "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word", "but",
        "not", "what", "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each",
        "which", "she", "do", "how", "their", "if", "will", "up", "other", "about", "out", "many", "then",
        "them", "these", "so", "some", "her", "would", "make", "like", "him", "into", "time", "has", "look",
        "two", "more", "write", "go", "see", "number", "no", "way", "could", "people", "my", "than", "first",
        "water", "been", "call", "who", "its", "now", "find", "long", "down", "day", "did", "get", "come",
        "made", "may", "part", "over", "new", "sound", "take", "only", "little", "work", "know", "place",
        "year", "live", "me", "back", "give", "most", "very", "after", "thing", "our", "just", "name",
        "good", "man", "think", "say", "great", "where", "help", "through", "much", "before", "line",
        "right", "too", "mean", "old", "any", "same", "tell", "boy", "follow", "came", "want", "show",
    ]

    /// `count` prompts of `inputLength` seeded random words, each asking for exactly `outputLength` tokens.
    public static func make(count: Int, inputLength: Int, outputLength: Int, seed: UInt64) -> [BenchPrompt] {
        var rng = SeededRandom(seed: seed)
        return (0 ..< count).map { _ in
            let text = (0 ..< max(1, inputLength)).map { _ in words[Int(rng.next() % UInt64(words.count))] }
                .joined(separator: " ")
            return BenchPrompt(input: .text(text), maxTokens: outputLength, exactLength: true)
        }
    }
}
