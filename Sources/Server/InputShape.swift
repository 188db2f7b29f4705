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
            if key == "messages" || key == "prompt", case .array(let list) = value, list.count > maxMessages {
                throw .invalidRequest(
                    "Invalid '\(key)': array too long. Expected an array with maximum length \(maxMessages), but got an array with length \(list.count) instead (limits.max_messages).",
                    param: key, code: "array_above_max_length")
            }
            try checkStrings(value, path: [.key(key)])
        }
    }

    private enum Step {
        case key(String)
        case index(Int)
    }

    private func checkStrings(_ value: JSON, path: [Step]) throws(APIError) {
        switch value {
        case .string(let s):
            // utf8.count is O(1) for native strings and never less than the scalar count.
            guard s.utf8.count > maxStringLength else { return }
            let length = s.unicodeScalars.count
            guard length > maxStringLength else { return }
            let name = Self.name(path)
            throw .invalidRequest(
                "Invalid '\(name)': string too long. Expected a string with maximum length \(maxStringLength), but got a string with length \(length) instead (limits.max_string_length).",
                param: name, code: "string_above_max_length")
        case .array(let list):
            for (i, element) in list.enumerated() { try checkStrings(element, path: path + [.index(i)]) }
        case .object(let pairs):
            for (key, element) in pairs {
                if case .key("image_url")? = path.last, key == "url" { continue }
                if key == "image_url", case .string = element { continue }  // the short form {"image_url": "data:..."}
                try checkStrings(element, path: path + [.key(key)])
            }
        case .null, .bool, .number:
            return
        }
    }

    /// `messages[3].content`, as OpenAI names a field.
    private static func name(_ path: [Step]) -> String {
        var out = ""
        for step in path {
            switch step {
            case .key(let k): out += out.isEmpty ? k : "." + k
            case .index(let i): out += "[\(i)]"
            }
        }
        return out
    }
}
