/// How weights are stored, and so how many bytes one parameter costs.
///
/// GGUF block types cost `blockBytes / blockSize` bytes per weight (ggml `ggml-common.h`, collected in
/// shared/research/glm/FACTS.md section 4.1). `int8` and `int4` are the generic GPU formats without
/// scale overhead (per-group scales add ~3% at group 128). Mixtures such as Q4_K_M keep some tensors at
/// higher precision: plan those from the GGUF file itself, which sums the real tensor sizes.
public enum Precision: String, Sendable, CaseIterable, Codable {
    case fp32, fp16, bf16, int8, int4
    case q8_0, q6_K = "q6_k", q5_K = "q5_k", q5_1, q5_0, q4_K = "q4_k", q4_1, q4_0, iq4_xs, q3_K = "q3_k", q2_K = "q2_k"

    /// Bytes per parameter.
    public var bytesPerParameter: Double {
        switch self {
        case .fp32: 4
        case .fp16, .bf16: 2
        case .int8: 1
        case .int4: 0.5
        case .q8_0: 34.0 / 32      // 8.5 bits
        case .q6_K: 210.0 / 256    // 6.5625 bits
        case .q5_K: 176.0 / 256    // 5.5 bits
        case .q5_1: 24.0 / 32      // 6.0 bits
        case .q5_0: 22.0 / 32      // 5.5 bits
        case .q4_K: 144.0 / 256    // 4.5 bits
        case .q4_1: 20.0 / 32      // 5.0 bits
        case .q4_0: 18.0 / 32      // 4.5 bits
        case .iq4_xs: 136.0 / 256  // 4.25 bits
        case .q3_K: 110.0 / 256    // 3.4375 bits
        case .q2_K: 84.0 / 256     // 2.625 bits
        }
    }

    /// Floating-point formats that training can keep weights and gradients in.
    public var isTrainable: Bool { self == .fp32 || self == .fp16 || self == .bf16 }

    /// Parses a name, case-insensitive, with the usual aliases (f32, f16, float16, bfloat16, q4_k).
    public init?(name: String) {
        let lower = name.lowercased()
        let aliases: [String: Precision] = [
            "f32": .fp32, "float32": .fp32, "float": .fp32, "f16": .fp16, "float16": .fp16, "half": .fp16,
            "bfloat16": .bf16, "q8": .int8, "q4": .int4,
        ]
        if let alias = aliases[lower] { self = alias; return }
        guard let match = Self(rawValue: lower) else { return nil }
        self = match
    }

    public static var allowedNames: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// How the KV cache stores each element.
///
/// The CPU engine stores K and V as f16 by default (`f32` and `bf16` on request); llama.cpp and vLLM
/// can store f16/bf16, q8_0 (34 bytes per 32) or fp8.
public enum KVPrecision: String, Sendable, CaseIterable, Codable {
    case f32, f16, bf16, q8_0, q4_0, fp8

    public var bytesPerElement: Double {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q8_0: 34.0 / 32
        case .q4_0: 18.0 / 32
        case .fp8: 1
        }
    }

    public init?(name: String) {
        let lower = name.lowercased()
        let aliases: [String: KVPrecision] = ["fp32": .f32, "fp16": .f16, "int8": .fp8, "fp8_e4m3": .fp8, "fp8_e5m2": .fp8]
        if let alias = aliases[lower] { self = alias; return }
        guard let match = Self(rawValue: lower) else { return nil }
        self = match
    }

    public static var allowedNames: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
