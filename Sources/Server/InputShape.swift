/// `limits.max_messages` and `limits.max_string_length`: the shape of a request body, checked once it is parsed
/// and before anything reads it, as OpenAI does (400 naming the field, codes `array_above_max_length` and
/// `string_above_max_length`). The body's size is bounded before this (limits.max_body_bytes, 413); this bounds
/// what a body of that size may hold: a chat of 100,000 one-character messages renders and tokenizes far more
/// slowly than its bytes suggest.
public struct InputShape: Sendable, Equatable {
    /// Entries of `messages` (chat) and of a list `prompt` (completions); OpenAI allows 2048.
    public var maxMessages = 2048
    /// Characters (Unicode scalars) of any one string in the body. Image URLs (`image_url.url`, a data URL can be
    /// megabytes) are bounded by limits.max_image_bytes instead.
    public var maxStringLength = 1 << 20

    public init(maxMessages: Int = 2048, maxStringLength: Int = 1 << 20) {
        self.maxMessages = maxMessages
        self.maxStringLength = maxStringLength
    }

    func check(_ body: JSON) throws(APIError) {
        guard case .object(let pairs) = body else { return }
        for (key, value) in pairs {
            if key == "messages" || key == "prompt", case .array(let list) = value {
                // A prompt of token ids is one prompt (its length is held to the context); a list of prompts or of
                // messages is counted.
                let tokenIDs = key == "prompt" && list.allSatisfy { if case .number = $0 { true } else { false } }
                if !tokenIDs { try count(list, name: key) }
                if key == "messages" {
                    for (i, message) in list.enumerated() {
                        if case .object(let fields) = message, let content = fields.first(where: { $0.0 == "content" })?.1,
                           case .array(let parts) = content {
                            try count(parts, name: "messages[\(i)].content")
                        }
                    }
                }
            }
            try checkStrings(value, path: [.key(key)])
        }
    }

    private func count(_ list: [JSON], name: String) throws(APIError) {
        guard list.count > maxMessages else { return }
        throw .invalidRequest(
            "Invalid '\(name)': array too long. Expected an array with maximum length \(maxMessages), but got an array with length \(list.count) instead (limits.max_messages).",
            param: name, code: "array_above_max_length")
    }

    private enum Step {
        case key(String)
        case index(Int)
    }

    private func checkStrings(_ value: JSON, path: [Step]) throws(APIError) {
        switch value {
        case .string(let s):
            try checkLength(s, path: path)
        case .array(let list):
            for (i, element) in list.enumerated() { try checkStrings(element, path: path + [.index(i)]) }
        case .object(let pairs):
            let imagePart = Self.isImagePart(path: path, pairs)
            for (key, element) in pairs {
                try checkLength(key, path: path + [.key(key)])
                // Only the URL of a chat message's image part: {"type": "image_url", "image_url": {"url": ...}} or
                // {"type": "image_url", "image_url": "..."} at messages[i].content[j].
                if imagePart, key == "image_url" {
                    if case .string = element { continue }
                    if case .object(let inner) = element {
                        for (k, v) in inner where k != "url" { try checkStrings(v, path: path + [.key(key), .key(k)]) }
                        continue
                    }
                }
                try checkStrings(element, path: path + [.key(key)])
            }
        case .null, .bool, .number:
            return
        }
    }

    private func checkLength(_ s: String, path: [Step]) throws(APIError) {
        // utf8.count is O(1) for native strings and never less than the scalar count.
        guard s.utf8.count > maxStringLength else { return }
        let length = s.unicodeScalars.count
        guard length > maxStringLength else { return }
        let name = Self.name(path)
        throw .invalidRequest(
            "Invalid '\(name)': string too long. Expected a string with maximum length \(maxStringLength), but got a string with length \(length) instead (limits.max_string_length).",
            param: name, code: "string_above_max_length")
    }

    /// A part of a chat message's content list whose type is image_url: path messages[i].content[j].
    private static func isImagePart(path: [Step], _ pairs: [(String, JSON)]) -> Bool {
        guard path.count == 4, case .key("messages") = path[0], case .index = path[1], case .key("content") = path[2],
              case .index = path[3] else { return false }
        return pairs.contains { $0.0 == "type" && $0.1 == .string("image_url") }
    }

    /// `messages[3].content`, as OpenAI names a field.
    private static func name(_ path: [Step]) -> String {
        var out = ""
        for step in path {
            switch step {
            case .key(let key):
                // A key may itself be the string that is too long: name it by its start.
                let k = key.utf8.count > 64 ? String(key.prefix(64)) + "..." : key
                out += out.isEmpty ? k : "." + k
            case .index(let i): out += "[\(i)]"
            }
        }
        return out
    }
}
