import Foundation
public import GGUF

/// The float formats a safetensors tensor may have here.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"

    public var byteSize: Int { self == .f32 ? 4 : 2 }
    /// The same element type in GGUF.
    public var ggufType: GGUFTensorType {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        }
    }
}

/// One tensor of a safetensors file: name, dtype, shape (outermost first, as PyTorch) and bytes in the file.
public struct SafeTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Absolute byte range in the file.
    public let start: Int
    public let end: Int

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { end - start }
}

/// A safetensors file mapped read-only: `u64 little-endian header length`, the JSON header, then the data.
///
/// Construction validates every tensor entry (dtype, shape, offsets inside the data section, byte length equal
/// to shape x dtype size, no overlaps), so that a tensor's bytes can be handed out without further checks.
public final class SafeTensorsFile: Sendable {
    public let path: String
    /// Tensors by name.
    public let tensors: [String: SafeTensorInfo]
    /// The header's `__metadata__` strings.
    public let metadata: [String: String]
    private let file: MappedFile

    /// Largest header accepted (the format's own limit is 100 MB).
    public static let maximumHeaderBytes = 100_000_000

    public convenience init(path: String) throws(SafeTensorsError) {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: path) } catch { throw .cannotOpen(path: path, reason: error.description) }
        try self.init(mappedFile: mapped)
    }

    public init(mappedFile: MappedFile) throws(SafeTensorsError) {
        let path = mappedFile.path
        let bytes = mappedFile.bytes
        guard bytes.count >= 8 else { throw .badHeaderLength(path: path, length: 0, fileSize: bytes.count) }
        var length: UInt64 = 0
        for i in 0 ..< 8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard length >= 2, length <= UInt64(min(Self.maximumHeaderBytes, bytes.count - 8)) else {
            throw .badHeaderLength(path: path, length: length, fileSize: bytes.count)
        }
        let dataStart = 8 + Int(length)
        let headerData = Data(bytes[8 ..< dataStart])
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: headerData) } catch {
            throw .badHeader(path: path, reason: "the header is not valid JSON")
        }
        guard let entries = object as? [String: Any] else {
            throw .badHeader(path: path, reason: "the header is not a JSON object")
        }
        let dataSize = bytes.count - dataStart
        var tensors: [String: SafeTensorInfo] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in entries {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw .badHeader(path: path, reason: "__metadata__ is not an object")
                }
                for (k, v) in m { metadata[k] = v as? String ?? "\(v)" }
                continue
            }
            tensors[name] = try Self.entry(name, value, path: path, dataStart: dataStart, dataSize: dataSize)
        }
        let ordered = tensors.values.filter { $0.byteCount > 0 }.sorted { ($0.start, $0.name) < ($1.start, $1.name) }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.start < a.end {
            throw .overlappingTensors(path: path, first: a.name, second: b.name)
        }
        self.path = path
        self.tensors = tensors
        self.metadata = metadata
        file = mappedFile
    }

    private static func entry(_ name: String, _ value: Any, path: String, dataStart: Int, dataSize: Int) throws(SafeTensorsError) -> SafeTensorInfo {
        guard let e = value as? [String: Any] else { throw .badTensorEntry(path: path, tensor: name, reason: "not an object") }
        guard let dtypeName = e["dtype"] as? String else { throw .badTensorEntry(path: path, tensor: name, reason: "no dtype string") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw .unsupportedDType(path: path, tensor: name, dtype: dtypeName)
        }
        guard let rawShape = e["shape"] as? [Any] else { throw .badTensorEntry(path: path, tensor: name, reason: "no shape array") }
        var shape: [Int] = []
        var elements = 1
        for d in rawShape {
            guard let n = Self.integer(d), n >= 0 else {
                throw .badTensorEntry(path: path, tensor: name, reason: "shape \(rawShape) has a non-integer or negative dimension")
            }
            let (product, overflow) = elements.multipliedReportingOverflow(by: n)
            guard !overflow, product <= dataSize else {
                throw .badTensorExtent(path: path, tensor: name, reason: "shape \(rawShape) needs more bytes than the file holds")
            }
            elements = product
            shape.append(n)
        }
        guard let offsets = e["data_offsets"] as? [Any], offsets.count == 2,
              let begin = Self.integer(offsets[0]), let end = Self.integer(offsets[1]) else {
            throw .badTensorEntry(path: path, tensor: name, reason: "data_offsets is not a pair of integers")
        }
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw .badTensorExtent(path: path, tensor: name,
                                   reason: "data_offsets [\(begin), \(end)] fall outside the data section of \(dataSize) bytes")
        }
        guard end - begin == elements * dtype.byteSize else {
            throw .badTensorExtent(path: path, tensor: name,
                                   reason: "shape \(shape) of \(dtype.rawValue) needs \(elements * dtype.byteSize) bytes but data_offsets span \(end - begin)")
        }
        return SafeTensorInfo(name: name, dtype: dtype, shape: shape, start: dataStart + begin, end: dataStart + end)
    }

    /// A JSON number that is an exact non-fractional integer.
    private static func integer(_ value: Any) -> Int? {
        if let i = value as? Int { return i }
        if let d = value as? Double, d.rounded() == d, abs(d) < 9e15 { return Int(d) }
        return nil
    }

    /// The tensor's bytes inside the mapping (validated at load). `info` must come from this file.
    public func bytes(_ info: SafeTensorInfo) -> UnsafeRawBufferPointer {
        precondition(info.start >= 0 && info.start <= info.end && info.end <= file.bytes.count,
                     "tensor '\(info.name)' is not a tensor of \(path)")
        return UnsafeRawBufferPointer(rebasing: file.bytes[info.start ..< info.end])
    }

    /// The tensor converted to float32 (exact for every supported dtype), row-major as stored.
    public func floats(_ info: SafeTensorInfo) -> [Float] {
        let raw = bytes(info)
        let n = info.elementCount
        var out = [Float](repeating: 0, count: n)
        switch info.dtype {
        case .f32:
            for i in 0 ..< n { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        case .bf16:
            for i in 0 ..< n {
                out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
        case .f16:
            for i in 0 ..< n { out[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        }
        return out
    }
}

/// IEEE binary16 to binary32 (exact).
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    var mantissa = UInt32(h & 0x3FF)
    if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    if exponent != 0 { return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13)) }
    if mantissa == 0 { return Float(bitPattern: sign) }
    var e: UInt32 = 113
    while mantissa & 0x400 == 0 { mantissa <<= 1; e -= 1 }
    return Float(bitPattern: sign | (e << 23) | ((mantissa & 0x3FF) << 13))
}
