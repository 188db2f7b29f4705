import CImageCodecs

/// An image as 8-bit RGB, row-major, 3 bytes a pixel.
public struct RGBImage: Sendable, Equatable {
    public enum Format: String, Sendable { case png = "PNG", jpeg = "JPEG", raw }

    public var width: Int
    public var height: Int
    public var pixels: [UInt8]
    public var format: Format

    public init(width: Int, height: Int, pixels: [UInt8], format: Format = .raw) {
        precondition(width > 0 && height > 0 && pixels.count == width * height * 3)
        self.width = width
        self.height = height
        self.pixels = pixels
        self.format = format
    }
}

/// What a decoder refused, said so that a user can act on it.
public enum ImageDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    case notAnImage(String)
    case corrupt(format: String, reason: String)
    case tooLarge(String)
    case unsupported(String)
    case outOfMemory

    public var description: String {
        switch self {
        case .notAnImage(let reason): "the data \(reason); send a PNG or JPEG image"
        case .corrupt(let format, let reason): "the \(format) image is corrupt: \(reason)"
        case .tooLarge(let reason): "the image \(reason); send a smaller image"
        case .unsupported(let reason): "the image \(reason)"
        case .outOfMemory: "not enough memory to decode the image"
        }
    }
}

/// Limits checked against the size an image declares, before any pixel is decoded (decompression bombs).
public struct ImageDecodeLimits: Sendable, Equatable {
    public var maxPixels: Int
    public var maxSide: Int

    /// 50 megapixels (a 1080x2400 screenshot is 2.6), at most 16384 a side.
    public static let `default` = ImageDecodeLimits(maxPixels: 50_000_000, maxSide: 16_384)

    public init(maxPixels: Int, maxSide: Int) {
        self.maxPixels = maxPixels
        self.maxSide = maxSide
    }
}

/// PNG and JPEG to 8-bit RGB over the system's libpng and libjpeg-turbo, converted the way Pillow's
/// `convert("RGB")` does (grey replicated, palette expanded, alpha dropped, 16-bit samples' high byte).
public enum ImageDecoder {
    /// Whether the bytes start like a PNG or a JPEG (the format is read from the data, not from a media type).
    public static func sniff(_ bytes: [UInt8]) -> RGBImage.Format? {
        let format = bytes.withUnsafeBufferPointer { ag_image_sniff($0.baseAddress, $0.count) }
        switch format {
        case Int32(AG_FORMAT_PNG): return .png
        case Int32(AG_FORMAT_JPEG): return .jpeg
        default: return nil
        }
    }

    public static func decode(_ bytes: [UInt8], limits: ImageDecodeLimits = .default) throws(ImageDecodeError) -> RGBImage {
        guard !bytes.isEmpty else { throw .notAnImage("is empty") }
        var image = ag_image()
        let status = bytes.withUnsafeBufferPointer { buffer in
            ag_image_decode(buffer.baseAddress, buffer.count, UInt64(max(limits.maxPixels, 0)),
                            UInt32(clamping: max(limits.maxSide, 0)), &image)
        }
        defer { ag_image_free(&image) }
        let message = withUnsafeBytes(of: image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        let format = sniff(bytes)?.rawValue ?? "image"
        switch status {
        case Int32(AG_IMAGE_OK):
            let count = Int(image.width) * Int(image.height) * 3
            let pixels = [UInt8](UnsafeBufferPointer(start: image.rgb, count: count))
            return RGBImage(width: Int(image.width), height: Int(image.height), pixels: pixels,
                            format: image.format == Int32(AG_FORMAT_PNG) ? .png : .jpeg)
        case Int32(AG_IMAGE_NOT_IMAGE): throw .notAnImage(message)
        case Int32(AG_IMAGE_TOO_LARGE): throw .tooLarge(message)
        case Int32(AG_IMAGE_UNSUPPORTED): throw .unsupported(message)
        case Int32(AG_IMAGE_NO_MEMORY): throw .outOfMemory
        default: throw .corrupt(format: format, reason: message.isEmpty ? "the decoder refused it" : message)
        }
    }
}
