import Imaging
@testable import Runtime
import Testing

/// The content hash keys both the vision cache and the image tokens' prefix-cache entries: equal pixels agree, and
/// small changes (one bit, or the paired high-bit flips a plain multiply-xor fold cannot see) give other keys.
@Suite("Image content hash")
struct VisionHashTests {
    static func patches(_ values: [Float], h: Int = 2, w: Int = 2) -> ImagePatches {
        ImagePatches(gridT: 1, gridH: h, gridW: w, patchValues: values.count / (h * w), values: values)
    }

    @Test("equal for equal pixels; different after one bit, paired sign flips, or another grid")
    func sensitivity() {
        let values = (0 ..< 64).map { Float($0) * 0.25 - 3 }
        let base = VisionSupport.contentHash(Self.patches(values))
        #expect(VisionSupport.contentHash(Self.patches(values)) == base)
        var oneBit = values
        oneBit[17] = Float(bitPattern: oneBit[17].bitPattern ^ 1)
        #expect(VisionSupport.contentHash(Self.patches(oneBit)) != base)
        // Bit 63 of two consecutive 64-bit words: the sign bits of floats 1 and 3.
        var paired = values
        paired[1] = -paired[1]
        paired[3] = -paired[3]
        #expect(VisionSupport.contentHash(Self.patches(paired)) != base)
        #expect(VisionSupport.contentHash(Self.patches(values, h: 4, w: 1)) != base)
    }
}
