import Foundation
import OpenAIAPI
import Testing

/// The bodies as OpenAI clients read them.
@Suite("OpenAI wire format")
struct WireFormatTests {
    static func object(_ value: some Encodable) throws -> [String: Any] {
        let data = Data(OpenAIJSON.text(value).utf8)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test("fields OpenAI sends as null are present as null, not left out")
    func nullsArePresent() throws {
        let body = try Self.object(ChatCompletion(id: "c", created: 1, model: "m",
                                                  choices: [.init(index: 0, message: .init(content: "hi"), finishReason: nil)], usage: nil))
        let choice = try #require((body["choices"] as? [[String: Any]])?.first)
        #expect(choice["logprobs"] is NSNull && choice["finish_reason"] is NSNull)
        #expect(body["object"] as? String == "chat.completion")
        let error = try Self.object(ErrorResponse(message: "bad", type: "invalid_request_error"))
        let detail = try #require(error["error"] as? [String: Any])
        #expect(detail["param"] is NSNull && detail["code"] is NSNull && detail["message"] as? String == "bad")
    }

    @Test("completion logprobs: parallel arrays, a null first prompt entry, infinities made finite")
    func completionLogprobs() throws {
        var l = CompletionLogprobs()
        l.append(token: "The", logprob: nil, top: nil, offset: 0)
        l.append(token: " cat", logprob: -.infinity, top: [(" cat", -.infinity), (" dog", -1.5)], offset: 3)
        let body = try Self.object(l)
        let values = try #require(body["token_logprobs"] as? [Any])
        #expect(values[0] is NSNull && (values[1] as? Double) == -9999)
        let tops = try #require(body["top_logprobs"] as? [Any])
        #expect(tops[0] is NSNull && (tops[1] as? [String: Double]) == [" cat": -9999, " dog": -1.5])
        #expect(body["text_offset"] as? [Int] == [0, 3])
    }

    @Test("usage carries the cached prompt tokens; a chunk's delta leaves out what it does not carry")
    func usageAndDelta() throws {
        let usage = try Self.object(Usage(promptTokens: 10, completionTokens: 4, cachedTokens: 8))
        #expect(usage["total_tokens"] as? Int == 14)
        #expect((usage["prompt_tokens_details"] as? [String: Int])?["cached_tokens"] == 8)
        let chunk = try Self.object(ChatCompletionChunk(id: "c", created: 1, model: "m",
                                                        choices: [.init(index: 0, delta: .init(content: "x"))]))
        let delta = try #require(((chunk["choices"] as? [[String: Any]])?.first)?["delta"] as? [String: Any])
        #expect(delta.keys.sorted() == ["content"])
        #expect(chunk["usage"] == nil)
    }

    @Test("stream events from any server: text, deltas, usage, errors with any fields")
    func streamEvents() throws {
        #expect(StreamEvent.decode(#"{"choices":[{"index":0,"text":" the"}]}"#)?.hasContent == true)
        #expect(StreamEvent.decode(#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#)?.hasContent == false)
        // llama-server sends a numeric code inside a stream's error.
        #expect(StreamEvent.decode(#"{"error":{"code":500,"message":"boom","type":"server_error"}}"#)?.isError == true)
        // A body autoglm wrote reads back.
        let text = OpenAIJSON.text(Completion(id: "x", created: 1, model: "m", choices: [.init(index: 0, text: "a")],
                                              usage: Usage(promptTokens: 1, completionTokens: 1)))
        let event = try #require(StreamEvent.decode(text))
        #expect(event.choices?.first?.text == "a" && event.usage?.totalTokens == 2)
    }
}
