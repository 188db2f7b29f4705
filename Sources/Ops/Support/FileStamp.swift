import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What identifies a file's content without reading it: device, inode, size and modification time in
/// nanoseconds, through symbolic links (a model in a Hugging Face cache, a ConfigMap volume). nil: no such file.
public enum FileStamp {
    public static func of(_ path: String) -> String? {
        var s = stat()
        guard stat(path, &s) == 0 else { return nil }
        return "\(s.st_dev):\(s.st_ino):\(s.st_size):\(s.st_mtim.tv_sec).\(s.st_mtim.tv_nsec)"
    }
}
