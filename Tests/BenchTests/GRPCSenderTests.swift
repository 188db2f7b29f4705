@testable import Bench
import Foundation
import GRPCProtocols
import Testing

/// `autoglm bench --grpc`: the address, and the HTTP body turned into the same work over KServe's ModelStreamInfer.
@Suite("bench over gRPC")
struct GRPCSenderTests {
    @Test("--grpc HOST:PORT, IPv6 in brackets; anything else is refused")
    func target() throws {
        let t = try GRPCTarget("127.0.0.1:9001")
        #expect(t.host == "127.0.0.1" && t.port == 9001)
        let v6 = try GRPCTarget("[::1]:50051")
        #expect(v6.host == "::1" && v6.port == 50051)
        for bad in ["127.0.0.1", "host:0", "host:70000", ":80", "host:port"] {
            #expect(throws: BenchError.self) { try GRPCTarget(bad) }
        }
    }

    @Test("a completions body becomes text_input with the same lengths, streamed; a chat body cannot")
    func request() throws {
        let body = Data(#"{"model":"m","prompt":"héllo","max_tokens":12,"min_tokens":12,"ignore_eos":true,"stream":true}"#.utf8)
        let r = try #require(KServeStreamSender.request(body))
        #expect(r.modelName == "m")
        #expect(r.inputs.map(\.name) == ["text_input"] && r.inputs[0].datatype == "BYTES" && r.inputs[0].shape == [1])
        let raw = [UInt8](try #require(r.rawInputContents.first))
        #expect(raw.prefix(4) == [6, 0, 0, 0][...])
        #expect(String(decoding: raw.dropFirst(4), as: UTF8.self) == "héllo")
        #expect(r.parameters["max_tokens"]?.int64Param == 12)
        #expect(r.parameters["min_tokens"]?.int64Param == 12)
        #expect(r.parameters["ignore_eos"]?.boolParam == true)
        #expect(r.parameters["stream"]?.boolParam == true)
        #expect(KServeStreamSender.request(Data(#"{"model":"m","messages":[]}"#.utf8)) == nil)
    }
}
