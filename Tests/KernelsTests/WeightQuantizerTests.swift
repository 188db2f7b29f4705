import CKernels
import Foundation
import GGUF
import Kernels
import Testing

/// The weight quantizers (`ag_quantize_weights`: Q4_0, Q4_K, Q8_0, F16, BF16) behind `convert` and load-time
/// quantization: ggml's reference arithmetic, read back by our own dequantizer within the format's error.
@Suite("weight quantizers")
struct WeightQuantizerTests {
    static let n = 4096

    static func data(seed: UInt64, scale: Float = 0.05) -> [Float] {
        var state = seed
        return (0 ..< n).map { _ in
            // xorshift, sum of four uniforms (roughly Gaussian)
            var s: Float = 0
            for _ in 0 ..< 4 {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                s += Float(Double(state >> 11) / Double(1 << 53)) * 2 - 1
            }
            return s * 0.866 * scale
        }
    }

    static func rms(_ a: [Float], _ b: [Float]) -> Float {
        (zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Float(a.count)).squareRoot()
    }

    @Test("Q4_0 is idempotent on gguf-py's Q4_0 fixture rows: quantize(dequantize(bytes)) == bytes")
    func q4_0MatchesGGUFPy() throws {
        let m = QuantFixtures.manifest
        let bytes = try QuantFixtures.bytes("Q4_0.bin")
        let floats = try QuantFixtures.floats("Q4_0.f32")
        let rowBytes = m.weights["Q4_0"]!.row_bytes
        for r in 0 ..< 6 {  // the data rows (6, 7 are random bit patterns)
            let row = QuantFixtures.row(floats, r, length: m.n)
            let again = try #require(WeightQuantization.quantize(row, to: .q4_0))
            #expect(again == Array(bytes[r * rowBytes ..< (r + 1) * rowBytes]), "row \(r)")
        }
    }

    @Test("Q8_0 weights equal the activation quantizer (ggml's quantize_row_q8_0_ref); F16/BF16 round to nearest even")
    func q8AndFloats() throws {
        let x = Self.data(seed: 3)
        #expect(WeightQuantization.quantize(x, to: .q8_0) == K.quantize(Int32(AG_TYPE_Q8_0), x))
        let half = try #require(WeightQuantization.quantize([1, -2.5, 65504, 1e-8, 0x1.002p0], to: .f16))
        #expect(dequantize(.f16, bytes: half, count: 5) == [1, -2.5, 65504, 0, 1])
        let bf = try #require(WeightQuantization.quantize([1, 0x1.01p0, 0x1.018p0, -3], to: .bf16))
        #expect(dequantize(.bf16, bytes: bf, count: 4) == [1, 1, 0x1.02p0, -3])
        #expect(WeightQuantization.quantize(Array(x.prefix(48)), to: .q4_K) == nil)  // not a whole 256-block
        #expect(WeightQuantization.quantize(x, to: .q5_K) == nil)                  // no writer for it
    }

    @Test("Q4_0 and Q4_K round trip: every element within one step, RMS error under 12% of the data's RMS",
          arguments: [GGUFTensorType.q4_0, .q4_K])
    func roundTrip(_ type: GGUFTensorType) throws {
        for seed in [1, 2, 99] as [UInt64] {
            var x = Self.data(seed: seed)
            x[7] = 0.9; x[300] = -0.7               // outliers
            for i in 512 ..< 768 { x[i] = 0 }       // an all-zero block
            for i in 1024 ..< 1280 { x[i] = abs(x[i]) + 0.01 }  // positive-only block (Q4_K's min)
            let bytes = try #require(WeightQuantization.quantize(x, to: type))
            #expect(bytes.count == type.byteCount(elements: x.count))
            let y = dequantize(type, bytes: bytes, count: x.count)
            #expect(y[512 ..< 768].allSatisfy { $0 == 0 })
            let signal = (x.map { $0 * $0 }.reduce(0, +) / Float(x.count)).squareRoot()
            let error = Self.rms(x, y)
            #expect(error < 0.12 * signal, "\(type) seed \(seed): rms error \(error) vs signal \(signal)")
            // Per block: no element further than one quantization step of that block's range.
            let block = type.blockSize
            for b in stride(from: 0, to: x.count, by: block) {
                let xs = x[b ..< b + block], ys = y[b ..< b + block]
                let range = (xs.max()! - min(0, xs.min()!))
                let step = type == .q4_0 ? 2 * xs.map(abs).max()! / 15 : range / 15 * 2
                let worst = zip(xs, ys).map { abs($0 - $1) }.max()!
                #expect(worst <= step + 1e-6, "\(type) block \(b / block): error \(worst) > step \(step)")
            }
            // Our dot kernel on the quantized rows agrees with the dequantized values.
            let a = Self.data(seed: seed + 7, scale: 1)
            let act = K.quantize(ag_activation_type(Int32(type.rawValue)), a)
            let dot = K.vecDot(Int32(type.rawValue), n: x.count, bytes, act)
            let exact = zip(y, a).map { Double($0) * Double($1) }.reduce(0, +)
            #expect(abs(Double(dot) - exact) < 0.02 * (abs(exact) + 1), "\(type) dot \(dot) vs \(exact)")
        }
    }
}
