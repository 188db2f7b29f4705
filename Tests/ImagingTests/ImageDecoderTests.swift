import Foundation
import Imaging
import Testing
import TestSupport

/// Bad images are refused with a reason, before any large allocation, and never crash the process.
@Suite("Image decoding refuses bad input")
struct ImageDecoderTests {
    static func fixture(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Fixtures.directory.appendingPathComponent("glm4v-tiny/images/\(name)")))
    }

    /// A PNG chunk with its CRC (the CRC-32 of type and data).
    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xffff_ffff
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0 ..< 8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xedb8_8320 : crc >> 1 }
        }
        crc ^= 0xffff_ffff
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        return be(UInt32(data.count)) + body + be(crc)
    }

    static func pngHeader(width: UInt32, height: UInt32) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        return [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] + chunk("IHDR", be(width) + be(height) + [8, 2, 0, 0, 0])
    }

    @Test("PNG and JPEG fixtures decode to their sizes; the format comes from the bytes")
    func decodes() throws {
        let png = try ImageDecoder.decode(try Self.fixture("rgba37x53.png"))
        #expect(png.width == 37 && png.height == 53 && png.format == .png && png.pixels.count == 37 * 53 * 3)
        let jpeg = try ImageDecoder.decode(try Self.fixture("photo83x59.jpg"))
        #expect(jpeg.width == 83 && jpeg.height == 59 && jpeg.format == .jpeg)
        #expect(ImageDecoder.sniff(Array("<svg xmlns=".utf8)) == nil)
    }

    /// A zlib stream holding `data` in one stored (uncompressed) deflate block.
    static func storedZlib(_ data: [UInt8]) -> [UInt8] {
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in data { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        let adler = (b << 16) | a
        let n = UInt16(data.count)
        return [0x78, 0x01, 0x01, UInt8(n & 0xff), UInt8(n >> 8), UInt8(~n & 0xff), UInt8(~n >> 8)] + data
            + [UInt8(adler >> 24), UInt8(adler >> 16 & 0xff), UInt8(adler >> 8 & 0xff), UInt8(adler & 0xff)]
    }

    @Test("16-bit grey PNG clamps to 255 as Pillow's I;16 conversion does (not the high byte)")
    func grey16() throws {
        let values: [UInt16] = [0, 100, 255, 256, 300, 1000, 65535, 5000]
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        let scanline: [UInt8] = [0] + values.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
        let png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] + Self.chunk("IHDR", be(UInt32(values.count)) + be(1) + [16, 0, 0, 0, 0])
            + Self.chunk("IDAT", Self.storedZlib(scanline)) + Self.chunk("IEND", [])
        let image = try ImageDecoder.decode(png)
        #expect(image.width == 8 && image.height == 1)
        // Pillow 13: Image.open(png).convert("RGB") gives 0 100 255 255 255 255 255 255 on every channel.
        #expect(image.pixels == [0, 100, 255, 255, 255, 255, 255, 255].flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
    }

    @Test("a truncated PNG is corrupt")
    func truncatedPNG() throws {
        let bytes = try Self.fixture("rgb61x45.png")
        #expect(throws: ImageDecodeError.self) { try ImageDecoder.decode(Array(bytes.prefix(bytes.count / 2))) }
        #expect(throws: ImageDecodeError.self) { try ImageDecoder.decode(Array(bytes.prefix(12))) }
        do {
            _ = try ImageDecoder.decode(Array(bytes.prefix(bytes.count / 2)))
        } catch {
            guard case .corrupt(let format, _) = error else { Issue.record("expected corrupt, got \(error)"); return }
            #expect(format == "PNG")
        }
    }

    @Test("a truncated JPEG is corrupt")
    func truncatedJPEG() throws {
        let bytes = try Self.fixture("photo83x59.jpg")
        for cut in [bytes.count / 2, 200, 4] {
            #expect(throws: ImageDecodeError.self) { try ImageDecoder.decode(Array(bytes.prefix(cut))) }
        }
    }

    @Test("a JPEG whose header lies about its size is refused, not decoded into garbage")
    func lyingJPEG() throws {
        var bytes = try Self.fixture("photo83x59.jpg")
        // The SOF0/SOF2 frame header: FF C0|C2, length (2), precision (1), height (2), width (2).
        guard let sof = bytes.indices.dropLast(9).first(where: { bytes[$0] == 0xff && (bytes[$0 + 1] == 0xc0 || bytes[$0 + 1] == 0xc2) }) else {
            Issue.record("no SOF marker")
            return
        }
        bytes[sof + 5] = 0x0f  // height 59 -> 0x0f3b = 3899 rows: the scan data runs out
        #expect(throws: ImageDecodeError.self) { try ImageDecoder.decode(bytes) }
        bytes[sof + 5] = 0x75; bytes[sof + 6] = 0x30  // 30000 rows
        bytes[sof + 7] = 0x75; bytes[sof + 8] = 0x30  // 30000 columns
        do {
            _ = try ImageDecoder.decode(bytes)
            Issue.record("decoded a 30000x30000 JPEG declaration")
        } catch {
            guard case .tooLarge = error else { Issue.record("expected tooLarge, got \(error)"); return }
        }
    }

    @Test("a PNG declaring 30000x30000 is refused before decoding (decompression bomb)")
    func bomb() {
        let header = Self.pngHeader(width: 30_000, height: 30_000) + Self.chunk("IDAT", [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])
            + Self.chunk("IEND", [])
        do {
            _ = try ImageDecoder.decode(header)
            Issue.record("decoded a 30000x30000 declaration")
        } catch {
            guard case .tooLarge(let reason) = error else { Issue.record("expected tooLarge, got \(error)"); return }
            #expect(reason.contains("30000x30000"))
        }
        // Under a small limit, a real image over it is refused the same way.
        #expect(throws: ImageDecodeError.self) {
            try ImageDecoder.decode(try Self.fixture("grey200x150.png"), limits: ImageDecodeLimits(maxPixels: 10_000, maxSide: 1000))
        }
    }

    @Test("SVG, text and empty data are not images")
    func notImages() {
        for bytes in [Array("<svg xmlns=\"http://www.w3.org/2000/svg\"/>".utf8), Array("hello".utf8), []] {
            do {
                _ = try ImageDecoder.decode(bytes)
                Issue.record("decoded \(bytes.count) bytes of non-image")
            } catch {
                guard case .notAnImage = error else { Issue.record("expected notAnImage, got \(error)"); return }
            }
        }
    }
}
