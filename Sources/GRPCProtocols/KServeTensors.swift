import Foundation

/// KServe/Triton's raw BYTES tensor encoding (`raw_input_contents`, `raw_output_contents`): each element a 4-byte
/// little-endian length, then its bytes. Written by hand (not generated): the server's responses, the load
/// generator's requests and the tests share it.
public enum KServeBytes {
    public static func encode(_ items: [[UInt8]]) -> Data {
        var out = Data()
        for item in items {
            let n = UInt32(item.count)
            out.append(contentsOf: [UInt8(n & 0xff), UInt8(n >> 8 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 24)])
            out.append(contentsOf: item)
        }
        return out
    }

    public static func encode(_ text: String) -> Data { encode([Array(text.utf8)]) }
}

extension Inference_InferParameter {
    public init(bool value: Bool) {
        self.init()
        boolParam = value
    }

    public init(int64 value: Int64) {
        self.init()
        int64Param = value
    }

    public init(string value: String) {
        self.init()
        stringParam = value
    }

    public init(double value: Double) {
        self.init()
        doubleParam = value
    }
}
