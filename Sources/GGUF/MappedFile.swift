#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. The mapping lives as long as this object.
///
/// One of the two homes of raw pointers in autoglm (the other is the kernels): every read through
/// `bytes` is bounds-checked by `GGUFParser` before a pointer is formed. Only regular files are
/// mapped. As with any mapping, shrinking the file on disk while it is mapped makes reads of the lost
/// pages fault (SIGBUS): replace model files by renaming a new file into place, never in place.
public final class MappedFile: @unchecked Sendable {
    /// The mapped bytes; empty for an empty file. Immutable after init, so sharing across threads is safe.
    public let bytes: UnsafeRawBufferPointer
    public let path: String
    /// True for a mapping of a file on disk (its pages can be dropped and read again), false for
    /// an anonymous copy (`init(copying:name:)`), whose pages hold the only copy of the data.
    public let isFileBacked: Bool

    public init(path: String) throws(GGUFError) {
        self.path = path
        isFileBacked = true
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It has no
        // effect on regular files, and anything else is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            let code = errno
            throw Self.openError(path: path, code: code)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw .ioError(path: path, errno: errno, message: "fstat failed")
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            break
        case S_IFDIR:
            throw .ioError(path: path, errno: EISDIR, message: "it is a directory, not a file")
        default:
            throw .ioError(path: path, errno: ENODEV, message: "it is not a regular file (a device, FIFO or socket cannot be mapped)")
        }
        let size = Int(info.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let address, address != MAP_FAILED else {
            throw .ioError(path: path, errno: errno, message: "mmap failed")
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    /// A read-only anonymous mapping holding a copy of `contents`: a model file built in memory (a Hugging Face
    /// directory converted at load time). `name` stands in for the path in messages.
    public init(copying contents: [UInt8], name: String) throws(GGUFError) {
        path = name
        isFileBacked = false
        guard !contents.isEmpty else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, contents.count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let address, address != MAP_FAILED else {
            throw .ioError(path: name, errno: errno, message: "cannot allocate \(contents.count) bytes for the converted model")
        }
        contents.withUnsafeBytes { address.copyMemory(from: $0.baseAddress!, byteCount: contents.count) }
        _ = mprotect(address, contents.count, PROT_READ)
        bytes = UnsafeRawBufferPointer(start: address, count: contents.count)
    }

    deinit {
        if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }

    /// Asks the kernel to read the whole file ahead (weights are touched on every token anyway).
    public func adviseWillNeed() {
        if let base = bytes.baseAddress {
            _ = madvise(UnsafeMutableRawPointer(mutating: base), bytes.count, MADV_WILLNEED)
        }
    }

    /// Drops this process's pages of `range` (a part of `bytes`) when the mapping is file-backed: once
    /// a tensor has been copied elsewhere (packed weights), its file pages need not count in the RSS;
    /// a later read maps them again from the page cache. Only whole pages inside the range are dropped.
    public func releasePages(_ range: UnsafeRawBufferPointer) {
        guard isFileBacked, let start = range.baseAddress, let base = bytes.baseAddress else { return }
        precondition(start >= base && start + range.count <= base + bytes.count, "releasePages: range outside the mapping")
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start) + range.count) / page * page
        guard end > first, let address = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(address, end - first, MADV_DONTNEED)
    }

    private static func openError(path: String, code: Int32) -> GGUFError {
        switch code {
        case ENOENT:
            return .fileNotFound(path: path)
        case EACCES, EPERM:
            var info = stat()
            if stat(path, &info) == 0 {
                let octal = String(info.st_mode & 0o7777, radix: 8)
                let mode = String(repeating: "0", count: max(0, 3 - octal.count)) + octal
                let me = geteuid()
                return .permissionDenied(path: path, detail: "owner uid \(info.st_uid), mode \(mode), running as uid \(me)")
            }
            return .permissionDenied(path: path, detail: "a directory on the path is not searchable")
        default:
            return .ioError(path: path, errno: code, message: String(cString: strerror(code)))
        }
    }
}
