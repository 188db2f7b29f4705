import Foundation
import GGUF
import Testing
import Tokenizer

/// tokenizer.json reading: a SmolLM2-style file (merges as "a b" strings, Digits + ByteLevel pre-tokenizer,
/// special added tokens) written from the default model's GGUF vocabulary must tokenize the HF-checked corpus
/// exactly as the GGUF tokenizer and HF tokenizers do.
@Suite("Hugging Face tokenizer.json")
struct HuggingFaceTokenizerTests {
    /// The default model's vocabulary as the tokenizer.json + tokenizer_config.json HF ships for SmolLM2.
    static func smolLM2Files() throws -> (tokenizer: Data, config: Data) {
        let v = try TokenizerVocabulary(gguf: GGUFFile(path: Fixtures.smollm2Path))
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for (id, token) in v.tokens.enumerated() {
            vocab[token] = id
            if v.tokenTypes?[id] == TokenType.control.rawValue {
                added.append(["id": id, "content": token, "special": true, "normalized": false])
            }
        }
        let tokenizer: [String: Any] = [
            "version": "1.0",
            "added_tokens": added,
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
                ["type": "Digits", "individual_digits": true],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            ]],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "vocab": vocab, "merges": v.merges ?? []],
        ]
        let config: [String: Any] = [
            "bos_token": v.bosID.map { v.tokens[$0] } ?? NSNull(),
            "eos_token": ["content": v.eosID.map { v.tokens[$0] } ?? ""],
            "chat_template": v.chatTemplate ?? "",
        ]
        return (try JSONSerialization.data(withJSONObject: tokenizer), try JSONSerialization.data(withJSONObject: config))
    }

    @Test("SmolLM2 tokenizer.json: same vocabulary and ids as the GGUF, the corpus tokenizes identically")
    func smolLM2() throws {
        let gguf = try Fixtures.smollm2.get()
        let (tokenizerData, configData) = try Self.smolLM2Files()
        let v = try TokenizerVocabulary(huggingFaceTokenizer: tokenizerData, config: configData)
        #expect(v.pre == "smollm")
        let hf = try Tokenizer(vocabulary: v)
        #expect(hf.vocabSize == gguf.vocabSize && hf.bosID == gguf.bosID && hf.eosID == gguf.eosID)
        #expect(hf.chatTemplate == gguf.chatTemplate)
        #expect(hf.warnings.isEmpty, "\(hf.warnings)")
        for c in SmolLM2Tests.corpusCases + SmolLM2Tests.referenceCases {
            #expect(hf.encode(c.text, parseSpecial: c.parseSpecial ?? false) == c.ids, "\(c.text)")
        }
        let special = "<|im_start|>user\nhi 123<|im_end|>"
        #expect(hf.encode(special, parseSpecial: true) == gguf.encode(special, parseSpecial: true))
    }

    @Test("merges as [\"a\", \"b\"] pairs read the same as \"a b\" strings; bad files are refused with the path")
    func mergeFormsAndErrors() throws {
        let json = #"{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":MERGES},"pre_tokenizer":{"type":"ByteLevel"}}"#
        let strings = try TokenizerVocabulary(huggingFaceTokenizer: Data(json.replacingOccurrences(of: "MERGES", with: #"["a b"]"#).utf8), config: nil)
        let pairs = try TokenizerVocabulary(huggingFaceTokenizer: Data(json.replacingOccurrences(of: "MERGES", with: #"[["a","b"]]"#).utf8), config: nil)
        #expect(strings == pairs && strings.merges == ["a b"] && strings.pre == "gpt2")
        #expect(throws: TokenizerError.self) {
            try TokenizerVocabulary(huggingFaceTokenizer: Data(#"{"model":{"type":"Unigram","vocab":[]}}"#.utf8), config: nil, path: "x/tokenizer.json")
        }
        #expect(throws: TokenizerError.self) {
            try TokenizerVocabulary(huggingFaceTokenizer: Data("not json".utf8), config: nil)
        }
    }
}
