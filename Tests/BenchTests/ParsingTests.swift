import Bench
import OpenAIAPI
import Foundation
import Testing

@Suite struct SSETests {
    @Test func linesSplitAcrossChunksAndCRLF() {
        var splitter = SSELineSplitter()
        var lines: [String] = []
        // "data: {\"a\":1}\r\n\r\n: ping\r\ndata: [DONE]\n\n" cut at awkward places, including inside \r\n.
        let stream = "data: {\"a\":1}\r\n\r\n: ping\r\ndata: [DONE]\n\n"
        let bytes = Array(stream.utf8)
        let cuts = [3, 13, 14, 15, 20, 30, bytes.count]
        var from = 0
        for cut in cuts {
            lines += splitter.feed(bytes[from ..< cut])
            from = cut
        }
        #expect(lines == ["data: {\"a\":1}", "", ": ping", "data: [DONE]", ""])
        #expect(splitter.finish() == nil)
    }

    @Test func everySingleByteSplitGivesTheSameLines() {
        let stream = Array("data: é\r\ndata: x\rdata: y\n".utf8)
        var splitter = SSELineSplitter()
        var lines: [String] = []
        for byte in stream { lines += splitter.feed([byte]) }
        #expect(lines == ["data: é", "data: x", "data: y"])
    }

    @Test func unterminatedLastLineIsReturnedByFinish() {
        var splitter = SSELineSplitter()
        #expect(splitter.feed(Array("data: 1\ndata: 2".utf8)) == ["data: 1"])
        #expect(splitter.finish() == "data: 2")
    }

    @Test func lineKinds() {
        #expect(SSELine(": keep-alive") == .ignored)
        #expect(SSELine("") == .ignored)
        #expect(SSELine("event: message") == .ignored)
        #expect(SSELine("data: [DONE]") == .done)
        #expect(SSELine("data:[DONE]") == .done)
        #expect(SSELine("data: {\"x\":1}") == .data("{\"x\":1}"))
        #expect(SSELine("data:  two spaces") == .data(" two spaces"))
    }

    @Test func chunkDecoding() throws {
        let chat = try #require(StreamEvent.decode(#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#))
        #expect(chat.hasChoices && chat.hasContent)
        let role = try #require(StreamEvent.decode(#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#))
        #expect(role.hasChoices && !role.hasContent)
        let text = try #require(StreamEvent.decode(#"{"choices":[{"index":0,"text":" the"}]}"#))
        #expect(text.hasContent)
        let usage = try #require(StreamEvent.decode(#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#))
        #expect(!usage.hasChoices)
        #expect(usage.usage == Usage(promptTokens: 7, completionTokens: 3))
        #expect(StreamEvent.decode(#"{"error":{"message":"boom"}}"#)?.isError == true)
        #expect(StreamEvent.decode("not json") == nil)
    }
}

@Suite struct DatasetTests {
    @Test func promptAndMessagesLines() throws {
        let text = """
            {"prompt": "Hello", "max_tokens": 5}

            {"messages": [{"role": "user", "content": "Hi"}]}\r
            """
        let prompts = try Dataset.parse(text)
        #expect(prompts.count == 2)
        #expect(prompts[0] == BenchPrompt(input: .text("Hello"), maxTokens: 5))
        #expect(prompts[1].input == .messages([.object(["role": .string("user"), "content": .string("Hi")])]))
        #expect(prompts[1].maxTokens == nil)
    }

    @Test func badLinesNameTheLine() {
        #expect(throws: BenchError.datasetLine(source: "d.jsonl", line: 2,
                                               reason: "not a JSON object with \"prompt\" or \"messages\"")) {
            try Dataset.parse("{\"prompt\":\"a\"}\n{oops", source: "d.jsonl")
        }
        #expect(throws: BenchError.emptyDataset("x")) { try Dataset.parse("\n\n", source: "x") }
        #expect(throws: BenchError.self) { try Dataset.parse("{\"max_tokens\": 3}") }
    }

    @Test func syntheticPromptsAreSeededAndSized() {
        let a = SyntheticPrompts.make(count: 3, inputLength: 50, outputLength: 16, seed: 7)
        let b = SyntheticPrompts.make(count: 3, inputLength: 50, outputLength: 16, seed: 7)
        let c = SyntheticPrompts.make(count: 3, inputLength: 50, outputLength: 16, seed: 8)
        #expect(a == b)
        #expect(a != c)
        for prompt in a {
            guard case .text(let text) = prompt.input else { Issue.record("expected text"); continue }
            #expect(text.split(separator: " ").count == 50)
            #expect(prompt.maxTokens == 16 && prompt.exactLength)
        }
    }

    static func object(_ body: Data) throws -> [String: JSONValue] {
        guard case .object(let o) = try JSONDecoder().decode(JSONValue.self, from: body) else { throw BenchError.messagesNeedChatEndpoint }
        return o
    }

    @Test func requestBodies() throws {
        let synthetic = BenchPrompt(input: .text("a b"), maxTokens: 4, exactLength: true)
        let chatBody = try RequestBody.make(prompt: synthetic, endpoint: .chat, model: "m")
        let chat = try Self.object(chatBody)
        #expect(chat["model"] == .string("m"))
        #expect(chat["messages"] == .array([.object(["role": .string("user"), "content": .string("a b")])]))
        #expect(chat["stream"] == .bool(true))
        #expect(chat["stream_options"] == .object(["include_usage": .bool(true)]))
        #expect(chat["max_tokens"] == .number(4) && chat["min_tokens"] == .number(4) && chat["ignore_eos"] == .bool(true))
        // The same body decodes as the typed request.
        let typed = try JSONDecoder().decode(ChatCompletionRequest.self, from: chatBody)
        #expect(typed.fields.maxTokens == 4 && typed.fields.ignoreEOS == true && typed.messages.count == 1)
        let completionBody = try RequestBody.make(prompt: BenchPrompt(input: .text("p"), maxTokens: nil), endpoint: .completions, model: "m")
        let completion = try Self.object(completionBody)
        #expect(completion["prompt"] == .string("p"))
        #expect(completion["max_tokens"] == nil && completion["ignore_eos"] == nil && completion["temperature"] == nil)
        #expect(try JSONDecoder().decode(CompletionRequest.self, from: completionBody).prompt == "p")
        #expect(throws: BenchError.messagesNeedChatEndpoint) {
            try RequestBody.make(prompt: BenchPrompt(input: .messages([]), maxTokens: nil), endpoint: .completions, model: "m")
        }
    }

    @Test func baseURLs() throws {
        #expect(try ServerURLs(baseURL: "http://127.0.0.1:8080/").url(for: .chat) == "http://127.0.0.1:8080/v1/chat/completions")
        #expect(try ServerURLs(baseURL: "http://h:1/v1").url(for: .completions) == "http://h:1/v1/completions")
        #expect(try ServerURLs(baseURL: "http://h:1").models == "http://h:1/v1/models")
        #expect(throws: BenchError.invalidBaseURL("127.0.0.1:8080")) { try ServerURLs(baseURL: "127.0.0.1:8080") }
    }
}
