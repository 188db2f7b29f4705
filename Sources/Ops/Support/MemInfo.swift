import Foundation

/// `/proc/meminfo`, the parts the planner and doctor need.
public struct MemInfo: Sendable, Equatable, Codable {
    public var totalBytes: Int
    /// The kernel's estimate of memory available for new work without swapping (MemAvailable).
    public var availableBytes: Int
    public var swapTotalBytes: Int

    public init(totalBytes: Int, availableBytes: Int, swapTotalBytes: Int = 0) {
        self.totalBytes = totalBytes
        self.availableBytes = availableBytes
        self.swapTotalBytes = swapTotalBytes
    }

    /// Parses `/proc/meminfo` ("MemTotal:       24568932 kB"); nil without MemTotal.
    public static func parse(_ text: String) -> MemInfo? {
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            guard parts.count >= 2, let value = Int(parts[1]) else { continue }
            let unit = parts.count >= 3 ? parts[2].lowercased() : ""
            values[String(parts[0])] = unit == "kb" ? value * 1024 : value
        }
        guard let total = values["MemTotal"] else { return nil }
        // Kernels before 3.14 lack MemAvailable: free + buffers + cached is the old estimate.
        let available = values["MemAvailable"]
            ?? (values["MemFree"] ?? 0) + (values["Buffers"] ?? 0) + (values["Cached"] ?? 0)
        return MemInfo(totalBytes: total, availableBytes: available, swapTotalBytes: values["SwapTotal"] ?? 0)
    }
}

/// The memory limit of the control group this process runs in (a container's or a systemd unit's), which
/// /proc/meminfo does not show: in a pod limited to 10 GiB on a 256 GiB host, MemAvailable says 200 GiB.
public struct CgroupMemory: Sendable, Equatable {
    public var limitBytes: Int
    /// In use, less the inactive file pages the kernel reclaims first (the working set, as the kubelet counts it).
    public var workingSetBytes: Int

    public init(limitBytes: Int, workingSetBytes: Int) {
        self.limitBytes = limitBytes
        self.workingSetBytes = workingSetBytes
    }

    /// What can still be allocated before the limit.
    public var headroomBytes: Int { max(0, limitBytes - workingSetBytes) }

    /// From cgroup v2's memory.max, memory.current and memory.stat (or v1's memory.limit_in_bytes,
    /// memory.usage_in_bytes and memory.stat's total_inactive_file); nil when there is no limit ("max", or
    /// v1's huge number) or the files are missing.
    public static func parse(max: String?, current: String?, stat: String?) -> CgroupMemory? {
        guard let maxText = max?.trimmingCharacters(in: .whitespacesAndNewlines), let limit = Int(maxText),
              limit < 1 << 60, let used = current.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else { return nil }
        var inactive = 0
        for line in (stat ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, parts[0] == "inactive_file" || parts[0] == "total_inactive_file", let v = Int(parts[1]) { inactive = v }
        }
        return CgroupMemory(limitBytes: limit, workingSetBytes: Swift.max(0, used - inactive))
    }

    /// This process's limit now (cgroup v2, else v1); nil: none.
    public static func current(root: String = "/sys/fs/cgroup") -> CgroupMemory? {
        func read(_ path: String) -> String? { try? String(contentsOfFile: root + "/" + path, encoding: .utf8) }
        if let v2 = parse(max: read("memory.max"), current: read("memory.current"), stat: read("memory.stat")) { return v2 }
        return parse(max: read("memory/memory.limit_in_bytes"), current: read("memory/memory.usage_in_bytes"), stat: read("memory/memory.stat"))
    }
}
