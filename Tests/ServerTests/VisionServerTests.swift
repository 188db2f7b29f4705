import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Imaging
import Logging
import NIOCore
import Prometheus
import Runtime
import Server
import Serving
import TestSupport
import Testing

/// The Open-AutoGLM phone agent's exact requests (phone_agent/model/client.py: the official SDK's shape, a
/// 1080x2400 PNG screenshot in the last user turn, its sampling fields), streamed and not, against the tiny
/// random GLM-4.1V through the HTTP API; and every kind of bad image, each a 400 naming its part.
@Suite("Phone agent requests against the tiny GLM-4.1V", .serialized, .timeLimit(.minutes(10)))
struct VisionServerTests {
    static let modelName = "autoglm-phone-9b"

    static func app(policy: ImagePolicy = ImagePolicy()) throws -> (ServedModel, some ApplicationProtocol) {
        let loaded = try ModelLoader.load(path: Fixtures.path("glm4v-tiny"), options: ModelLoadOptions(threads: 2))
        let backend = LocalBackend(model: loaded.model, tokenizer: loaded.tokenizer,
                                   settings: LocalServingSettings(maxSequences: 4, maxBatchTokens: 256, kvMemoryBytes: 16 << 20),
                                   vision: loaded.vision)
        backend.start()
        let served = ServedModel(name: modelName, backend: backend, maxTokensLimit: 4096)
        var logger = Logger(label: "test")
        logger.logLevel = .error
        var options = ServerOptions()
        options.images = policy
        options.heartbeatSeconds = 0.2
        let app = try AutoGLMServer.application(models: [served], metrics: [:], registry: PrometheusCollectorRegistry(),
                                                options: options, logger: logger)
        return (served, app)
    }

    static func fixture(_ name: String) throws -> Data {
        try Data(contentsOf: Fixtures.directory.appendingPathComponent("glm4v-tiny/images/\(name)"))
    }

    static func dataURI(_ data: Data, type: String = "image/png") -> String { "data:\(type);base64," + data.base64EncodedString() }

    /// The agent's system prompt (abridged from phone_agent/config/prompts_en.py: the date, the output format, the actions).
    static let systemPrompt = """
        The current date: 2026-12-06, Sunday
        # Setup
        You are a professional Android operation agent assistant that can fulfill the user's high-level instructions. \
        Given a screenshot of the Android interface at each step, you first analyze the situation, then plan the best \
        course of action using Python-style pseudo-code.
        # More details about the code
        Your response format must be structured as follows:
        <think>
        [Your thought]
        </think>
        <answer>
        [Your operation code]
        </answer>
        - **Tap**
          Perform a tap action on a specified screen area. The element is a list of 2 integers, representing the \
        coordinates of the tap point (0-999).
          **Example**: <answer>do(action="Tap", element=[x,y])</answer>
        - **Launch**
          **Example**: <answer>do(action="Launch", app="Settings")</answer>
        - **Finish**
          **Example**: <answer>finish(message="<final message>")</answer>
        """

    /// phone_agent/agent.py's messages at step 2: system, the first user turn (its image already removed), the
    /// model's answer as a plain string, and the new user turn with the screenshot first, then the text.
    static func agentBody(stream: Bool, image: String) throws -> ByteBuffer {
        let messages: [[String: Any]] = [
            ["role": "system", "content": systemPrompt],
            ["role": "user", "content": [["type": "text", "text": "Open Settings and turn on Wi-Fi\n\n** Screen Info **\n\n{\"current_app\": \"System Home\"}"]]],
            ["role": "assistant", "content": "<think>The home screen is shown; Settings must be opened.</think><answer>do(action=\"Launch\", app=\"Settings\")</answer>"],
            ["role": "user", "content": [
                ["type": "image_url", "image_url": ["url": image]],
                ["type": "text", "text": "** Screen Info **\n\n{\"current_app\": \"Settings\"}"],
            ]],
        ]
        let body: [String: Any] = ["model": modelName, "messages": messages, "max_tokens": 3000, "temperature": 0.0,
                                   "top_p": 0.85, "frequency_penalty": 0.2, "stream": stream]
        return ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))
    }

    static func post(_ client: some TestClientProtocol, _ body: ByteBuffer) async throws -> TestResponse {
        try await client.execute(uri: "/v1/chat/completions", method: .post, headers: [.contentType: "application/json"], body: body)
    }

    static func json(_ response: TestResponse) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
    }

    /// GLM's special tokens as text: what would break the agent's `ast` parse of the action.
    static func hasSpecialText(_ text: String) -> Bool {
        ["<|", "[gMASK]", "<sop>", "<eop>"].contains { text.contains($0) }
    }

    @Test("streamed: 200, the role chunk first, a well-formed stream to [DONE], no special tokens in the text")
    func streamed() async throws {
        let (served, app) = try Self.app()
        defer { served.backend.shutdown() }
        let screenshot = Self.dataURI(try Self.fixture("screen1080x2400.png"))
        try await app.test(.router) { client in
            let response = try await Self.post(client, try Self.agentBody(stream: true, image: screenshot))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream")
            let blocks = String(buffer: response.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
            let data = blocks.filter { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
            // Every block is an event or an SSE comment (a heartbeat); nothing else.
            #expect(blocks.allSatisfy { $0.hasPrefix("data: ") || $0.hasPrefix(":") })
            #expect(data.last == "[DONE]")
            var text = ""
            var finish: String?
            for (i, payload) in data.dropLast().enumerated() {
                let chunk = try #require(try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any])
                #expect(chunk.string("object") == "chat.completion.chunk")
                guard let choice = chunk.array("choices").first as? [String: Any] else { continue }
                let delta = choice.dict("delta")
                if i == 0 { #expect(delta.string("role") == "assistant") }
                text += delta.string("content") ?? ""
                if let f = choice["finish_reason"] as? String { finish = f }
            }
            #expect(finish == "stop" || finish == "length")
            #expect(!Self.hasSpecialText(text), "special-token text in: \(text)")
        }
    }

    @Test("not streamed (the deployment check's request): 200, one choice, usage counts the image tokens")
    func oneShot() async throws {
        let (served, app) = try Self.app()
        defer { served.backend.shutdown() }
        let screenshot = Self.dataURI(try Self.fixture("screen1080x2400.png"))
        try await app.test(.router) { client in
            let response = try await Self.post(client, try Self.agentBody(stream: false, image: screenshot))
            #expect(response.status == .ok)
            let body = try Self.json(response)
            let choice = try #require(body.array("choices").first as? [String: Any])
            let content = try #require(choice.dict("message").string("content"))
            #expect(!Self.hasSpecialText(content))
            // The same request without the image has fewer prompt tokens by the image's tokens less its placeholder.
            let usage = body.dict("usage")
            let image = try ImageDecoder.decode([UInt8](try Self.fixture("screen1080x2400.png")))
            let processor = try GLM4VImageProcessor(json: try Fixtures.json("glm4v-tiny/preprocessor_config.json"))
            let imageTokens = try processor.patches(image).tokenCount(merge: 2)
            #expect(imageTokens > 1)
            let text = try await Self.post(client, try Self.agentBody(stream: false, image: screenshot).replacingImagePart())
            #expect(text.status == .ok)
            let textUsage = try Self.json(text).dict("usage")
            #expect((usage.int("prompt_tokens") ?? 0) - (textUsage.int("prompt_tokens") ?? 0) == imageTokens + 2)
        }
    }

    static func badImages() throws -> [(String, String)] {
        let png = try fixture("rgb61x45.png"), jpeg = try fixture("photo83x59.jpg")
        var lying = [UInt8](jpeg)
        if let sof = lying.indices.dropLast(9).first(where: { lying[$0] == 0xff && (lying[$0 + 1] == 0xc0 || lying[$0 + 1] == 0xc2) }) {
            lying[sof + 5] = 0x0f  // 3899 rows declared, 59 present
        }
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            var crc: UInt32 = 0xffff_ffff
            for byte in body {
                crc ^= UInt32(byte)
                for _ in 0 ..< 8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xedb8_8320 : crc >> 1 }
            }
            return be(UInt32(data.count)) + body + be(crc ^ 0xffff_ffff)
        }
        let bomb = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] + chunk("IHDR", be(30_000) + be(30_000) + [8, 2, 0, 0, 0])
            + chunk("IDAT", [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) + chunk("IEND", [])
        let svg = Data("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>".utf8)
        return [
            ("truncated PNG", dataURI(png.prefix(png.count / 2))),
            ("JPEG whose header lies", dataURI(Data(lying), type: "image/jpeg")),
            ("30000x30000 PNG", dataURI(Data(bomb))),
            ("SVG", dataURI(svg, type: "image/svg+xml")),
            ("a PNG that says it is a JPEG", dataURI(png, type: "image/jpeg")),
            ("not an image", dataURI(Data("hello, world".utf8), type: "text/plain")),
            ("not base64", "data:image/png;base64,@@@@"),
            ("http URL", "http://example.com/screen.png"),
            ("file URL", "file:///etc/passwd"),
        ]
    }

    @Test("bad images are a 400 naming the message and part; the server keeps serving")
    func badImagesRefused() async throws {
        let (served, app) = try Self.app()
        defer { served.backend.shutdown() }
        let good = Self.dataURI(try Self.fixture("rgb61x45.png"))
        try await app.test(.router) { client in
            for (what, url) in try Self.badImages() {
                let response = try await Self.post(client, try Self.agentBody(stream: true, image: url))
                #expect(response.status == .badRequest, "\(what)")
                let error = try Self.json(response).dict("error")
                #expect(error.string("param") == "messages[3].content[0]", "\(what): \(error)")
                #expect((error.string("message") ?? "").hasPrefix("messages[3].content[0]"), "\(what): \(error)")
            }
            #expect(try await Self.post(client, try Self.agentBody(stream: false, image: good)).status == .ok)
        }
    }

    @Test("file:// images under images.local_directory and http(s) images from images.allowed_domains are taken; others are not")
    func sources() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("autoglm-images-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let png = try Self.fixture("rgb61x45.png")
        try png.write(to: directory.appendingPathComponent("screen.png"))
        // A second server on 127.0.0.1 hosts the image, as an allowed remote would.
        let router = Router()
        router.get("/screen.png") { _, _ in Response(status: .ok, headers: [.contentType: "image/png"], body: .init(byteBuffer: ByteBuffer(bytes: png))) }
        let host = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await host.test(.live) { hostClient in
            let port = try #require(hostClient.port)
            let (served, app) = try Self.app(policy: ImagePolicy(localDirectory: directory.path, allowedDomains: ["127.0.0.1"]))
            defer { served.backend.shutdown() }
            try await app.test(.router) { client in
                for (url, status) in [("file://\(directory.path)/screen.png", HTTPResponse.Status.ok),
                                      ("file://\(directory.path)/../screen.png", .badRequest),
                                      ("file:///etc/hostname", .badRequest),
                                      ("http://127.0.0.1:\(port)/screen.png", .ok),
                                      ("http://127.0.0.1:\(port)/missing.png", .badRequest),
                                      ("http://localhost:\(port)/screen.png", .badRequest)] {
                    let body: [String: Any] = ["model": Self.modelName, "max_tokens": 2, "messages": [["role": "user", "content": [
                        ["type": "image_url", "image_url": ["url": url]], ["type": "text", "text": "?"]]]]]
                    let r = try await Self.post(client, ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
                    #expect(r.status == status, "\(url): \(String(buffer: r.body))")
                }
            }
        }
    }

    @Test("too many images, and a per-request pixel budget over the server's bound, are 400s")
    func limits() async throws {
        let (served, app) = try Self.app(policy: ImagePolicy(maxImagesPerRequest: 1, maxPixels: 2 * 28 * 28 * 16))
        defer { served.backend.shutdown() }
        let image = Self.dataURI(try Self.fixture("rgb61x45.png"))
        try await app.test(.router) { client in
            let two: [String: Any] = ["model": Self.modelName, "max_tokens": 4, "messages": [["role": "user", "content": [
                ["type": "image_url", "image_url": ["url": image]], ["type": "image_url", "image_url": ["url": image]]]]]]
            let r = try await Self.post(client, ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: two)))
            #expect(r.status == .badRequest)
            #expect(try Self.json(r).dict("error").string("param") == "messages[0].content[1]")
            let greedy: [String: Any] = ["model": Self.modelName, "max_tokens": 4, "mm_processor_kwargs": ["max_pixels": 1 << 30],
                                         "messages": [["role": "user", "content": [["type": "image_url", "image_url": ["url": image]]]]]]
            #expect(try await Self.post(client, ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: greedy))).status == .badRequest)
        }
    }
}

extension ByteBuffer {
    /// The agent's body with its image part removed (the same conversation as text only).
    func replacingImagePart() throws -> ByteBuffer {
        var body = try JSONSerialization.jsonObject(with: Data(readableBytesView)) as? [String: Any] ?? [:]
        var messages = body["messages"] as? [[String: Any]] ?? []
        if var last = messages.last, let parts = last["content"] as? [[String: Any]] {
            last["content"] = parts.filter { ($0["type"] as? String) != "image_url" }
            messages[messages.count - 1] = last
        }
        body["messages"] = messages
        return ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))
    }
}
