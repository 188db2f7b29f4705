/// The one spelling of a URL path that the server's router and its access checks agree on: the router finds routes by
/// their non-empty segments while the checks compare paths as written, so any other spelling (an empty segment as in
/// `//admin/models`, a `.` or `..` segment, a trailing `/`, a percent-encoded letter, digit or `-._~`) is refused by
/// the server (404) and by `config check` (public paths, the metrics path).
public enum PathSpelling {
    public static func isCanonical(_ path: String) -> Bool {
        guard path.hasPrefix("/") else { return false }
        if path == "/" { return true }
        for segment in path.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty || segment == "." || segment == ".." { return false }
            var rest = segment[...]
            while let percent = rest.firstIndex(of: "%") {
                let hex = rest[rest.index(after: percent)...].prefix(2)
                guard hex.count == 2, let byte = UInt8(hex, radix: 16) else { return false }
                let c = Character(Unicode.Scalar(byte))
                if c.isASCII && (c.isLetter || c.isNumber || "-._~".contains(c)) { return false }
                rest = rest[rest.index(percent, offsetBy: 3)...]
            }
        }
        return true
    }
}
