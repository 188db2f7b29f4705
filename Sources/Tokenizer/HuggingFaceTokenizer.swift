import Foundation
public import GGUF

/// Reading a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) into the same `TokenizerVocabulary` a GGUF
/// gives, the way llama.cpp's convert_hf_to_gguf.py fills the `tokenizer.*` keys for byte-level BPE models.
extension TokenizerVocabulary {
    /// Reads `tokenizer.json` and, when present, `tokenizer_config.json` from a model directory.
    /// `architecture` (GGUF name) picks family conventions the JSON does not spell out (GLM-4's end-of-turn token).
    public init(huggingFaceDirectory directory: String, architecture: String? = nil) throws(TokenizerError) {
        func join(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        let tokenizerPath = join("tokenizer.json")
        guard let tokenizer = FileManager.default.contents(atPath: tokenizerPath) else {
            throw .huggingFace(path: tokenizerPath, reason: "the model directory has no readable tokenizer.json; download it with the weights (autoglm reads fast-tokenizer files, not tokenizer.model or vocab.json alone)")
        }
        let config = FileManager.default.contents(atPath: join("tokenizer_config.json"))
        try self.init(huggingFaceTokenizer: tokenizer, config: config, path: tokenizerPath, architecture: architecture)
    }

    /// Builds the vocabulary from the bytes of tokenizer.json and tokenizer_config.json.
    public init(huggingFaceTokenizer data: Data, config configData: Data?, path: String = "tokenizer.json",
                architecture: String? = nil) throws(TokenizerError) {
        func fail(_ reason: String) -> TokenizerError { .huggingFace(path: path, reason: reason) }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw fail("not a JSON object; download tokenizer.json again")
        }
        guard let model = root["model"] as? [String: Any] else { throw fail("no \"model\" section") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else {
            throw fail("the tokenizer model is \(type); autoglm reads byte-level BPE tokenizer.json files. Use a GGUF of this model instead")
        }
        guard let vocab = model["vocab"] as? [String: Any] else { throw fail("model.vocab is not an object of token -> id") }
        var byID: [Int: String] = [:]
        for (token, value) in vocab {
            guard let id = value as? Int, id >= 0 else { throw fail("model.vocab['\(token)'] is not a non-negative integer id") }
            byID[id] = token
        }
        var types: [Int: TokenType] = [:]
        for case let added as [String: Any] in root["added_tokens"] as? [Any] ?? [] {
            guard let id = added["id"] as? Int, id >= 0, let content = added["content"] as? String else {
                throw fail("an added_tokens entry lacks an integer id or a content string")
            }
            byID[id] = content
            types[id] = (added["special"] as? Bool ?? false) ? .control : .userDefined
        }
        guard let maxID = byID.keys.max() else { throw .emptyVocabulary }
        var tokens: [String] = []
        var tokenTypes: [Int] = []
        tokens.reserveCapacity(maxID + 1)
        for id in 0 ... maxID {
            if let t = byID[id] {
                tokens.append(t)
                tokenTypes.append((types[id] ?? .normal).rawValue)
            } else {
                tokens.append("[PAD\(id)]")  // a hole in the ids, as llama.cpp's converter fills it
                tokenTypes.append(TokenType.unused.rawValue)
            }
        }
        var merges: [String] = []
        for case let merge in model["merges"] as? [Any] ?? [] {
            if let s = merge as? String {
                merges.append(s)
            } else if let pair = merge as? [String], pair.count == 2 {
                merges.append(pair[0] + " " + pair[1])
            } else {
                throw fail("model.merges holds an entry that is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }
        guard Self.isByteLevel(root) else {
            throw fail("it is not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer or decoder): SentencePiece-style tokenizer.json files are not read yet. Use a GGUF of this model")
        }
        let ignoreMerges = model["ignore_merges"] as? Bool ?? false

        let config = configData.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        func tokenID(_ key: String) -> Int? {
            let value = config[key]
            let text = (value as? String) ?? ((value as? [String: Any])?["content"] as? String)
            return text.flatMap { t in tokens.firstIndex(of: t) }
        }
        var template: String? = config["chat_template"] as? String
        if template == nil, let list = config["chat_template"] as? [[String: Any]] {
            template = (list.first { $0["name"] as? String == "default" } ?? list.first)?["template"] as? String
        }
        let isGLM = architecture == "glm4" || architecture == "chatglm"
        self.init(
            model: "gpt2",
            pre: Self.preTokenizerName(root, ignoreMerges: ignoreMerges, glm: isGLM),
            tokens: tokens, tokenTypes: tokenTypes, merges: merges,
            bosID: tokenID("bos_token"),
            eosID: tokenID("eos_token") ?? (isGLM ? tokens.firstIndex(of: "<|endoftext|>") : nil),
            unknownID: tokenID("unk_token"),
            paddingID: tokenID("pad_token"),
            endOfTurnID: isGLM ? tokens.firstIndex(of: "<|user|>") : tokens.firstIndex(of: "<|eot_id|>"),
            addBOS: config["add_bos_token"] as? Bool ?? (isGLM ? false : nil),
            addEOS: config["add_eos_token"] as? Bool,
            chatTemplate: template)
    }

    private static func components(_ node: Any?) -> [[String: Any]] {
        guard let node = node as? [String: Any] else { return [] }
        if node["type"] as? String == "Sequence" {
            let children = (node["pretokenizers"] as? [Any]) ?? (node["decoders"] as? [Any]) ?? []
            return children.flatMap { components($0) }
        }
        return [node]
    }

    private static func isByteLevel(_ root: [String: Any]) -> Bool {
        (components(root["pre_tokenizer"]) + components(root["decoder"])).contains { $0["type"] as? String == "ByteLevel" }
    }

    /// The llama.cpp `tokenizer.ggml.pre` name whose scanner equals this tokenizer.json's pre-tokenizer.
    static func preTokenizerName(_ root: [String: Any], ignoreMerges: Bool, glm: Bool) -> String {
        let parts = components(root["pre_tokenizer"])
        let types = parts.compactMap { $0["type"] as? String }
        let regexes = parts.compactMap { ($0["pattern"] as? [String: Any])?["Regex"] as? String }
        let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        if regexes.contains(llama3) { return glm ? "glm4" : (ignoreMerges ? "llama3" : "dbrx") }
        if regexes.contains(qwen2) { return "qwen2" }
        if regexes.isEmpty, types.contains("Digits"), types.contains("ByteLevel"),
           parts.contains(where: { $0["individual_digits"] as? Bool == true }) {
            return "smollm"
        }
        if regexes.isEmpty, types == ["ByteLevel"] { return "gpt2" }
        return "unrecognized-hf-pre-tokenizer"
    }

    /// The vocabulary as llama.cpp's `tokenizer.*` GGUF keys, in the order its converter writes them.
    public var ggufMetadata: [(String, GGUFValue)] {
        var out: [(String, GGUFValue)] = [(Key.model, .string(model))]
        if let pre { out.append((Key.pre, .string(pre))) }
        out.append((Key.tokens, .array(.string, tokens.map { .string($0) })))
        if let scores { out.append((Key.scores, .array(.float32, scores.map { .float32($0) }))) }
        if let tokenTypes { out.append((Key.tokenTypes, .array(.int32, tokenTypes.map { .int32(Int32($0)) }))) }
        if let merges { out.append((Key.merges, .array(.string, merges.map { .string($0) }))) }
        for (key, id) in [(Key.bosID, bosID), (Key.eosID, eosID), (Key.unknownID, unknownID), (Key.paddingID, paddingID),
                          (Key.endOfTurnID, endOfTurnID), (Key.endOfMessageID, endOfMessageID)] {
            if let id { out.append((key, .uint32(UInt32(id)))) }
        }
        if let addBOS { out.append((Key.addBOS, .bool(addBOS))) }
        if let addEOS { out.append((Key.addEOS, .bool(addEOS))) }
        if let addSpacePrefix { out.append((Key.addSpacePrefix, .bool(addSpacePrefix))) }
        if let chatTemplate { out.append((Key.chatTemplate, .string(chatTemplate))) }
        return out
    }
}

extension Tokenizer {
    /// The tokenizer of a Hugging Face model directory (tokenizer.json + tokenizer_config.json).
    public convenience init(huggingFaceDirectory directory: String, architecture: String? = nil) throws(TokenizerError) {
        try self.init(vocabulary: try TokenizerVocabulary(huggingFaceDirectory: directory, architecture: architecture))
    }
}
