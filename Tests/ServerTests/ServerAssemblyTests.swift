import Ops
import Server
import Testing

/// How `serve` turns the effective configuration into the server's parts.
@Suite("Server assembly")
struct ServerAssemblyTests {
    static func config(_ yaml: String) throws -> AutoGLMConfig {
        let loaded = ConfigLoader(environment: ["HOME": "/nonexistent"]).load(text: yaml, path: "test.yaml")
        #expect(loaded.errors.isEmpty, "\(loaded.errors)")
        return loaded.config
    }

    @Test("server options come from server, limits and metrics")
    func options() throws {
        let c = try Self.config("""
            server:
              host: 0.0.0.0
              port: 9000
              api_keys: [k1]
              timeouts: {request: 120, first_token: 5, idle: 30}
            limits: {max_concurrent_requests: 7, requests_per_minute: 60}
            metrics: {enabled: false}
            """)
        let o = ServerOptions(configuration: c)
        #expect(o.host == "0.0.0.0" && o.port == 9000 && o.apiKeys == ["k1"])
        #expect(o.requestTimeoutSeconds == 120 && o.firstTokenTimeoutSeconds == 5 && o.idleTimeoutSeconds == 30)
        #expect(o.maxConcurrentRequests == 7 && o.requestsPerMinute == 60)
        #expect(o.metricsPath == nil)
        #expect(ServerOptions(configuration: try Self.config("")).metricsPath == "/metrics")
    }

    @Test("upstream settings: breaker and balancing from the upstream section")
    func upstreamSettings() throws {
        let c = try Self.config("""
            upstream: {retries: 4, failure_threshold: 3, open_duration: 12s, balance: consistent_hash}
            """)
        let s = UpstreamSettings(configuration: c.upstream)
        #expect(s.retries == 4 && s.breaker.failureThreshold == 3 && s.breaker.openSeconds == 12)
        #expect(s.balance == .consistentHash)
    }

    @Test("upstream models: configured entries without a path, then --upstream flags; a flag naming a local model is refused")
    func upstreamModels() throws {
        let c = try Self.config("""
            models:
              - {name: local, path: /models/a.gguf}
              - {name: glm, url: "http://gpu-1:8000/v1", urls: ["http://gpu-2:8000/v1"], weights: [3, 1], upstream_model: glm-4-9b, fallback: local}
            """)
        let models = try UpstreamModel.assemble(
            configured: c.models, flags: [("glm", "http://gpu-3:8000/v1"), ("other", "http://cpu:8080/v1")], localNames: ["local"])
        #expect(models.map(\.name) == ["glm", "other"])
        #expect(models[0].endpoints.map(\.baseURL) == ["http://gpu-1:8000/v1", "http://gpu-2:8000/v1", "http://gpu-3:8000/v1"])
        #expect(models[0].upstreamName == "glm-4-9b" && models[0].fallback == "local")
        #expect(models[0].endpoints.map(\.weight) == [3, 1, 1])
        let bad = ConfigLoader(environment: [:]).load(text: """
            models:
              - {name: glm, url: "http://gpu-1:8000/v1", urls: ["http://gpu-2:8000/v1"], weights: [3]}
            """, path: "test.yaml")
        #expect(bad.errors.contains { $0.key == "models[0].weights" && $0.message.contains("1 entries for 2 endpoints") })
        #expect(throws: UpstreamNameClash.self) {
            try UpstreamModel.assemble(configured: c.models, flags: [("local", "http://x:1/v1")], localNames: ["local"])
        }
    }
}
