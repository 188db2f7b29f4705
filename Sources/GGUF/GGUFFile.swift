/// Where one tensor lives in a GGUF file and what it is.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml's `ne`: `dimensions[0]` is the contiguous (innermost) dimension.
    public let dimensions: [Int]
    public let type: GGUFTensorType
    /// Offset from the start of the tensor data section.
    public let dataOffset: Int
    /// Offset from the start of the file.
    public let fileOffset: Int
    public let byteCount: Int

    public var elementCount: Int { dimensions.reduce(1, *) }
    /// Length of one row (`ne[0]`) and the number of rows (product of the other dimensions).
    public var rowLength: Int { dimensions.first ?? 1 }
    public var rowCount: Int { dimensions.dropFirst().reduce(1, *) }
    public var rowBytes: Int { type.byteCount(elements: rowLength) }
}

/// A GGUF file (v2 or v3) mapped read-only: metadata parsed and validated, tensor data in place.
///
/// Construction checks everything a later read depends on (magic, version, counts, string and array
/// lengths, tensor shapes, types, alignment and extents), so that a tensor's bytes can be handed out
/// without further checks.
public final class GGUFFile: Sendable {
    public static let supportedVersions: ClosedRange<UInt32> = 2...3
    public static let defaultAlignment = 32

    public let path: String
    public let version: UInt32
    /// Metadata in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensors in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Offset of the tensor data section from the start of the file.
    public let dataSectionOffset: Int
    public let fileSize: Int

    private let file: MappedFile
    private let tensorIndex: [String: Int]

    public convenience init(path: String) throws(GGUFError) {
        try self.init(mappedFile: try MappedFile(path: path))
    }

    public init(mappedFile: MappedFile) throws(GGUFError) {
        let header = try GGUFParser.parse(mappedFile.bytes, path: mappedFile.path)
        file = mappedFile
        path = mappedFile.path
        version = header.version
        metadataKeys = header.metadataKeys
        metadata = header.metadata
        tensors = header.tensors
        alignment = header.alignment
        dataSectionOffset = header.dataSectionOffset
        fileSize = mappedFile.bytes.count
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        tensorIndex = index
    }

    public func tensorInfo(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The bytes of a tensor, inside the mapping (validated at load). `info` must come from this file.
    public func tensorBytes(_ info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        // Slicing an unsafe buffer is not bounds-checked in release builds: check once here.
        precondition(info.fileOffset >= 0 && info.byteCount >= 0 && info.byteCount <= fileSize - info.fileOffset,
                     "tensor '\(info.name)' is not a tensor of \(path)")
        return UnsafeRawBufferPointer(rebasing: file.bytes[info.fileOffset ..< info.fileOffset + info.byteCount])
    }

    /// Drops the process's file pages of a tensor's bytes after they were copied (see MappedFile.releasePages).
    public func releasePages(_ range: UnsafeRawBufferPointer) { file.releasePages(range) }

    /// Asks the OS to page the file in ahead of use.
    public func prefetch() { file.adviseWillNeed() }

    // MARK: typed metadata access

    public func value(_ key: String) -> GGUFValue? { metadata[key] }

    public func string(_ key: String) throws(GGUFError) -> String {
        guard let v = metadata[key] else { throw .missingKey(key) }
        guard let s = v.stringValue else { throw .wrongValueType(key: key, expected: "string", found: "\(v.type)") }
        return s
    }

    public func int(_ key: String) throws(GGUFError) -> Int {
        guard let v = metadata[key] else { throw .missingKey(key) }
        guard let i = v.intValue else { throw .wrongValueType(key: key, expected: "integer", found: "\(v.type)") }
        return i
    }

    public func double(_ key: String) throws(GGUFError) -> Double {
        guard let v = metadata[key] else { throw .missingKey(key) }
        guard let d = v.doubleValue else { throw .wrongValueType(key: key, expected: "number", found: "\(v.type)") }
        return d
    }

    public func bool(_ key: String) -> Bool? { metadata[key]?.boolValue }

    public func stringArray(_ key: String) throws(GGUFError) -> [String] {
        guard let v = metadata[key] else { throw .missingKey(key) }
        guard case .array(.string, let values) = v else {
            throw .wrongValueType(key: key, expected: "array of strings", found: Self.typeName(v))
        }
        return values.map { $0.stringValue ?? "" }
    }

    public func intArray(_ key: String) throws(GGUFError) -> [Int] {
        guard let v = metadata[key] else { throw .missingKey(key) }
        guard let values = v.arrayValue else { throw .wrongValueType(key: key, expected: "array of integers", found: Self.typeName(v)) }
        var out: [Int] = []
        out.reserveCapacity(values.count)
        for element in values {
            guard let i = element.intValue else {
                throw .wrongValueType(key: key, expected: "array of integers", found: "array of \(element.type)")
            }
            out.append(i)
        }
        return out
    }

    public func floatArray(_ key: String) throws(GGUFError) -> [Float] {
        guard let v = metadata[key] else { throw .missingKey(key) }
        guard let values = v.arrayValue else { throw .wrongValueType(key: key, expected: "array of numbers", found: Self.typeName(v)) }
        var out: [Float] = []
        out.reserveCapacity(values.count)
        for element in values {
            guard let d = element.doubleValue else {
                throw .wrongValueType(key: key, expected: "array of numbers", found: "array of \(element.type)")
            }
            out.append(Float(d))
        }
        return out
    }

    /// "uint32", "array of string", ... for error messages.
    private static func typeName(_ v: GGUFValue) -> String {
        if case .array(let element, _) = v { return "array of \(element)" }
        return "\(v.type)"
    }
}
