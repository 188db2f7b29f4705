import CKernels
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
public import GGUF

/// The CPU code path the kernels use: picked once from the CPU's features, overridable for tests.
public enum KernelPath: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case scalar = 0
    case avx2 = 1
    case avx512 = 2

    /// The best path this CPU supports.
    public static var detected: KernelPath { KernelPath(rawValue: ag_isa_detected()) ?? .scalar }
    /// The path in use now.
    public static var active: KernelPath { KernelPath(rawValue: ag_isa_active()) ?? .scalar }
    /// Selects a path for the calling thread (clamped to what the CPU supports); returns the path now active.
    @discardableResult
    public static func select(_ path: KernelPath) -> KernelPath {
        KernelPath(rawValue: ag_isa_set(path.rawValue)) ?? .scalar
    }

    public var description: String { String(cString: ag_isa_name(rawValue)) }
}

/// A persistent pool of worker threads for the kernels; the calling thread is one of them.
///
/// Not for concurrent use: one owner (the engine loop) issues one job at a time.
public final class WorkerPool: @unchecked Sendable {
    let raw: OpaquePointer
    public let threads: Int

    public init(threads: Int) {
        raw = ag_pool_create(Int32(max(1, threads)))
        self.threads = Int(ag_pool_threads(raw))
    }

    deinit { ag_pool_destroy(raw) }
}

/// A fixed-size float32 buffer for activations and KV storage, zero-initialized.
///
/// Memory comes from calloc, so the pages of a large buffer (a KV arena) cost nothing until written.
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    let base: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        guard let raw = calloc(max(1, count), 4) else { fatalError("out of memory allocating \(count * 4) bytes") }
        base = raw.bindMemory(to: Float.self, capacity: max(1, count))
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { free(base) }

    public subscript(index: Int) -> Float {
        get { precondition(index >= 0 && index < count); return base[index] }
        set { precondition(index >= 0 && index < count); base[index] = newValue }
    }

    /// A copy of `count` values starting at `offset`.
    public func slice(_ offset: Int, _ length: Int) -> [Float] {
        precondition(offset >= 0 && length >= 0 && offset + length <= count)
        return Array(UnsafeBufferPointer(start: base + offset, count: length))
    }

    public func write(_ values: [Float], at offset: Int) {
        precondition(offset >= 0 && offset + values.count <= count)
        values.withUnsafeBufferPointer { (base + offset).update(from: $0.baseAddress!, count: values.count) }
    }

    /// Copies `length` floats from `source[sourceOffset...]` to `self[offset...]`.
    public func copy(from source: FloatBuffer, sourceOffset: Int, to offset: Int, length: Int) {
        precondition(sourceOffset + length <= source.count && offset + length <= count)
        (base + offset).update(from: source.base + sourceOffset, count: length)
    }

    public func zero() { base.update(repeating: 0, count: count) }

    func pointer(_ offset: Int = 0) -> UnsafeMutablePointer<Float> { base + offset }
}

/// How the KV cache stores each element. Attention reads the stored type directly (the dot products
/// and weighted sums convert as they load); scores, softmax and sums stay float32.
public enum KVCacheType: String, Sendable, CaseIterable, Codable {
    /// q8_0: ggml's Q8_0 along the head dimension (int8 and an fp16 scale per 32 elements of a token's row: 1.0625
    /// bytes an element, about half of f16); needs a head dimension that is a multiple of 32.
    case f32, f16, bf16, q8_0

    /// The engine's default: half the memory and bandwidth of f32, perplexity within 0.1% (BENCHMARKS.md).
    public static let engineDefault = KVCacheType.f16

    /// Bytes of `elements` stored elements (for q8_0, a multiple of 32: the int8 values and their scales).
    public func bytes(elements: Int) -> Int {
        switch self {
        case .f32: elements * 4
        case .f16, .bf16: elements * 2
        case .q8_0: elements + elements / 32 * 2
        }
    }

    /// Bytes of one element's value in the arena (the scales of q8_0 come after all of them).
    var elementBytes: Int { self == .f32 ? 4 : self == .q8_0 ? 1 : 2 }

    /// Why this type cannot hold a model's keys and values, or nil when it can.
    public func problem(headDimension: Int) -> String? {
        guard self == .q8_0, headDimension % 32 != 0 else { return nil }
        return "kv type q8_0 quantizes keys and values in blocks of 32 along the head dimension; this model's head dimension is \(headDimension). Use f16 or bf16."
    }

    /// ggml's type id (what the kernels take).
    var ggmlType: Int32 {
        switch self {
        case .f32: Int32(AG_TYPE_F32)
        case .f16: Int32(AG_TYPE_F16)
        case .bf16: Int32(AG_TYPE_BF16)
        case .q8_0: Int32(AG_TYPE_Q8_0)
        }
    }

    /// Accepts the names llama.cpp and vLLM use too (fp16, float16, bfloat16, fp32, float32, q8, int8).
    public init?(name: String) {
        switch name.lowercased() {
        case "f32", "fp32", "float32": self = .f32
        case "f16", "fp16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "q8_0", "q8", "int8": self = .q8_0
        default: return nil
        }
    }
}

/// Zero-initialized storage for `count` KV elements of `type` (calloc: pages cost nothing until written). For q8_0
/// the int8 values come first, then an fp16 scale for each 32 elements of a token's row (`scaleIndex` below: the
/// position-major element offset of the row's first element, divided by 32, for keys and values alike).
public final class KVArena: @unchecked Sendable {
    public let type: KVCacheType
    public let count: Int
    let base: UnsafeMutableRawPointer

    public init(type: KVCacheType, count: Int) {
        precondition(type != .q8_0 || count % 32 == 0, "a q8_0 KV arena holds whole blocks of 32")
        self.type = type
        self.count = count
        guard let raw = calloc(max(1, type.bytes(elements: count)), 1) else {
            fatalError("out of memory allocating \(type.bytes(elements: count)) bytes of KV cache")
        }
        base = raw
    }

    deinit { free(base) }

    /// The q8_0 scales (nil for the other types).
    var scales: UnsafeMutablePointer<UInt16>? {
        type == .q8_0 ? (base + count).assumingMemoryBound(to: UInt16.self) : nil
    }

    /// Stores `length` floats of `source` (from `sourceOffset`) at elements `offset`, `offset + stride`, ...,
    /// converting to `type` (a key goes into its block transposed: stride = the block size). For q8_0, `length` is a
    /// multiple of 32 and the scales go to `scaleIndex ..< scaleIndex + length / 32`.
    public func store(from source: FloatBuffer, sourceOffset: Int, to offset: Int, length: Int, stride: Int = 1,
                      scaleIndex: Int = 0) {
        precondition(sourceOffset >= 0 && sourceOffset + length <= source.count && offset >= 0 && stride >= 1
            && (length == 0 || offset + (length - 1) * stride < count))
        if let scales {
            precondition(length % 32 == 0 && scaleIndex >= 0 && scaleIndex + length / 32 <= count / 32)
            _ = ag_kv_store_q8(source.pointer(sourceOffset), (base + offset).assumingMemoryBound(to: Int8.self),
                               scales + scaleIndex, Int64(length), Int64(stride))
            return
        }
        _ = ag_kv_store_strided(type.ggmlType, source.pointer(sourceOffset), base + offset * type.elementBytes,
                                Int64(length), Int64(stride))
    }

    /// Copies elements `source ..< source + length` over `destination ..< destination + length`, as stored (for q8_0,
    /// multiples of 32 with their scales).
    public func copyElements(from source: Int, to destination: Int, length: Int) {
        precondition(source >= 0 && destination >= 0 && length >= 0 && source + length <= count && destination + length <= count)
        let size = type.elementBytes
        memmove(base + destination * size, base + source * size, length * size)
        if let scales {
            precondition(source % 32 == 0 && destination % 32 == 0 && length % 32 == 0)
            memmove(scales + destination / 32, scales + source / 32, length / 32 * 2)
        }
    }

    /// Elements `offset`, `offset + stride`, ... (`length` of them) as float32 (for tests and tools); q8_0 elements
    /// with the scales from `scaleIndex` (element i uses scale scaleIndex + i / 32).
    public func floats(_ offset: Int, _ length: Int, stride: Int = 1, scaleIndex: Int = 0) -> [Float] {
        precondition(offset >= 0 && length >= 0 && stride >= 1 && (length == 0 || offset + (length - 1) * stride < count))
        var out = [Float](repeating: 0, count: length)
        if let scales {
            for i in 0 ..< length {
                let q = (base + offset + i * stride).load(as: Int8.self)
                out[i] = Float(Float16(bitPattern: scales[scaleIndex + i / 32])) * Float(q)
            }
            return out
        }
        out.withUnsafeMutableBufferPointer { dst in
            for i in 0 ..< length {
                _ = ag_dequantize_row(type.ggmlType, base + (offset + i * stride) * type.elementBytes, dst.baseAddress! + i, 1)
            }
        }
        return out
    }
}

/// Raw scratch bytes (quantized activations).
public final class ScratchBuffer: @unchecked Sendable {
    private(set) var capacity: Int
    private(set) var base: UnsafeMutableRawPointer

    public init(bytes: Int = 1 << 16) {
        capacity = max(64, bytes)
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
    }

    deinit { base.deallocate() }

    func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > capacity {
            base.deallocate()
            capacity = bytes
            base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        }
        return base
    }
}

/// A row-interleaved copy of a weight matrix (16-row groups, layout in packed.c), 64-byte aligned.
final class PackedWeights: @unchecked Sendable {
    static let groupRows = 16
    let kind: Int32
    let groupBytes: Int
    let base: UnsafeMutableRawPointer
    let byteCount: Int

    init?(type: GGUFTensorType, bytes: UnsafeRawPointer, rows: Int, columns: Int) {
        let t = Int32(type.rawValue)
        let kind = ag_packed_kind(t)
        let size = ag_packed_bytes(t, Int64(rows), Int64(columns))
        guard kind >= 0, size > 0 else { return nil }
        self.kind = kind
        groupBytes = ag_packed_group_bytes(kind, Int64(columns))
        byteCount = size
        base = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        guard Self.pack(t, bytes, rows: rows, columns: columns, into: base, groupBytes: groupBytes) else {
            base.deallocate()
            return nil
        }
    }

    /// Packs on every core: 16-row groups are independent and laid out one after another, so slices
    /// of whole groups packed apart are byte for byte the tensor packed at once. (At 9B, packing at
    /// load time is most of the start-up.)
    static func pack(_ type: Int32, _ bytes: UnsafeRawPointer, rows: Int, columns: Int, into base: UnsafeMutableRawPointer,
                     groupBytes: Int, slices wanted: Int? = nil) -> Bool {
        let groups = (rows + groupRows - 1) / groupRows
        let slices = max(1, min(groups, wanted ?? min(ProcessInfo.processInfo.activeProcessorCount, groups / 64)))
        guard slices > 1 else { return ag_pack_weights(type, bytes, Int64(rows), Int64(columns), base) == 0 }
        let rowBytes = Int(ag_row_bytes(type, Int64(columns)))
        let perSlice = (groups + slices - 1) / slices
        let source = UInt(bitPattern: bytes), destination = UInt(bitPattern: base)
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: slices) { s in
            let g0 = s * perSlice, g1 = min(groups, g0 + perSlice)
            guard g0 < g1 else { return }
            let r0 = g0 * groupRows, count = min(rows, g1 * groupRows) - r0
            let src = UnsafeRawPointer(bitPattern: source + UInt(r0 * rowBytes))!
            let dst = UnsafeMutableRawPointer(bitPattern: destination + UInt(g0 * groupBytes))!
            if ag_pack_weights(type, src, Int64(count), Int64(columns), dst) != 0 { failures.add(1, ordering: .relaxed) }
        }
        return failures.load(ordering: .relaxed) == 0
    }

    deinit { base.deallocate() }
}

/// A weight matrix in place inside a mapped GGUF file: `rows` rows of `columns` elements of `type`.
/// y = W x maps a `columns`-vector to a `rows`-vector (GGUF ne = [columns, rows]).
public struct WeightMatrix: @unchecked Sendable {
    public let name: String
    public let type: GGUFTensorType
    public let rows: Int
    public let columns: Int
    let bytes: UnsafeRawPointer
    /// Keeps the mapping alive as long as the matrix is.
    let owner: GGUFFile
    /// The row-interleaved copy the batched AVX-512 kernels read, if made (`packedForBatching`).
    let packed: PackedWeights?
    /// Byte offset of this matrix's first row group inside `packed` (row slices share the copy).
    let packedOffset: Int

    public init(file: GGUFFile, tensor: GGUFTensorInfo) {
        name = tensor.name
        type = tensor.type
        columns = tensor.rowLength
        rows = tensor.rowCount
        bytes = file.tensorBytes(tensor).baseAddress!
        owner = file
        packed = nil
        packedOffset = 0
    }

    /// A tensor of more than two dimensions seen as a matrix: its last dimension is the rows, the others the columns
    /// (a convolution kernel [out][C][kh][kw] as `out` rows of C x kh x kw). Only for types without blocks across
    /// the first dimension's boundaries (F32, F16, BF16), or when the first dimension is whole blocks.
    public init?(file: GGUFFile, tensor: GGUFTensorInfo, flattening columns: Int) {
        guard columns > 0, tensor.elementCount % columns == 0, columns % tensor.type.blockSize == 0,
              columns % tensor.rowLength == 0 || tensor.type.blockSize == 1 else { return nil }
        name = tensor.name
        type = tensor.type
        self.columns = columns
        rows = tensor.elementCount / columns
        bytes = file.tensorBytes(tensor).baseAddress!
        owner = file
        packed = nil
        packedOffset = 0
    }

    private init(name: String, type: GGUFTensorType, rows: Int, columns: Int, bytes: UnsafeRawPointer, owner: GGUFFile,
                 packed: PackedWeights?, packedOffset: Int) {
        self.name = name
        self.type = type
        self.rows = rows
        self.columns = columns
        self.bytes = bytes
        self.owner = owner
        self.packed = packed
        self.packedOffset = packedOffset
    }

    /// Rows `start ..< start + count` as a matrix of their own (a view, no copy): how a fused
    /// tensor (GLM's gate+up `ffn_up`, a fused `attn_qkv`) is split into its parts. The packed
    /// copy is shared when `start` falls on a 16-row group; otherwise the slice uses the plain kernels.
    public func rowSlice(_ start: Int, count: Int) -> WeightMatrix {
        precondition(start >= 0 && count > 0 && start + count <= rows)
        let group = PackedWeights.groupRows
        let keep = packed != nil && start % group == 0
        return WeightMatrix(name: "\(name)[\(start)..<\(start + count)]", type: type, rows: count, columns: columns,
                            bytes: bytes + start * rowBytes, owner: owner, packed: keep ? packed : nil,
                            packedOffset: keep ? packedOffset + start / group * (packed?.groupBytes ?? 0) : 0)
    }

    /// Whether products with this matrix use the packed kernels on the calling thread's path now.
    public var usesPackedKernels: Bool { packed != nil && ag_packed_kind(Int32(type.rawValue)) >= 0 }

    /// The activation format of the packed products (AG_PACKED_INPUT_*), or -1 without a packed copy.
    var packedInputFormat: Int32 { packed.map { ag_packed_input_format($0.kind) } ?? -1 }

    /// This matrix with a row-interleaved copy for the batched AVX-512 / AVX2 kernels (Q4_0, Q4_1, Q5_0, Q5_1,
    /// Q8_0, Q4_K, Q5_K and Q6_K, see packed.c; F16 and BF16, see packed_float.c), or itself unchanged where there are none (another type, a CPU without
    /// AVX2, `AUTOGLM_KERNELS=scalar`). The copy costs as much memory as the tensor; the file's pages of the
    /// tensor are released afterwards, so the resident size stays about the file's size.
    public func packedForBatching() -> WeightMatrix {
        guard packed == nil, let copy = PackedWeights(type: type, bytes: bytes, rows: rows, columns: columns) else { return self }
        owner.releasePages(UnsafeRawBufferPointer(start: bytes, count: rows * rowBytes))
        return WeightMatrix(name: name, type: type, rows: rows, columns: columns, bytes: bytes, owner: owner,
                            packed: copy, packedOffset: 0)
    }

    public var rowBytes: Int { type.byteCount(elements: columns) }

    /// Row `r` dequantized to float32 (exactly as ggml dequantizes).
    public func dequantizedRow(_ r: Int) -> [Float] {
        precondition(r >= 0 && r < rows)
        var out = [Float](repeating: 0, count: columns)
        out.withUnsafeMutableBufferPointer { buffer in
            _ = ag_dequantize_row(Int32(type.rawValue), bytes + r * rowBytes, buffer.baseAddress!, Int64(columns))
        }
        return out
    }

    /// Row `r` dequantized into `buffer` at `offset`.
    public func dequantizeRow(_ r: Int, into buffer: FloatBuffer, at offset: Int) {
        precondition(r >= 0 && r < rows && offset + columns <= buffer.count)
        _ = ag_dequantize_row(Int32(type.rawValue), bytes + r * rowBytes, buffer.pointer(offset), Int64(columns))
    }

    /// The whole matrix as float32, row-major [rows][columns].
    public func dequantized() -> [Float] {
        var out = [Float](repeating: 0, count: rows * columns)
        out.withUnsafeMutableBufferPointer { buffer in
            for r in 0 ..< rows {
                _ = ag_dequantize_row(Int32(type.rawValue), bytes + r * rowBytes, buffer.baseAddress! + r * columns, Int64(columns))
            }
        }
        return out
    }
}

/// Dequantizes raw blocks of `type` (for tests and tools).
public func dequantize(_ type: GGUFTensorType, bytes: [UInt8], count: Int) -> [Float] {
    var out = [Float](repeating: 0, count: count)
    bytes.withUnsafeBytes { src in
        out.withUnsafeMutableBufferPointer { dst in
            _ = ag_dequantize_row(Int32(type.rawValue), src.baseAddress!, dst.baseAddress!, Int64(count))
        }
    }
    return out
}
