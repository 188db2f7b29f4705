import Foundation
import Testing
@testable import Ops

/// Doctor findings on machines stood in by `FakeSystemProbe`: GPU hosts from recorded `nvidia-smi`
/// outputs (Tests/Fixtures/doctor/README.md), bad permissions for a non-root user, a full disk.
@Suite("Doctor on simulated machines")
struct DoctorSimulatedTests {
    static let defaultModel = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

    func healthy() -> FakeSystemProbe {
        var probe = FakeSystemProbe()
        probe.addModel(at: Self.defaultModel)
        return probe
    }

    func write(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("doctor-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("a healthy CPU machine with the default model: every check ok, exit 0")
    func healthyMachine() throws {
        let report = Doctor(probe: healthy()).run(DoctorOptions())
        #expect(report.exitCode == 0, "\(report.text)")
        #expect(report.findings.allSatisfy { $0.status == .ok }, "\(report.text)")
        let ids = report.findings.map(\.id)
        for id in ["config", "cpu", "memory", "disk", "numa", "open-files", "gpu", "cuda", "port",
                   "model.smollm2-135m-instruct.file", "model.smollm2-135m-instruct.gguf", "model.smollm2-135m-instruct.fits"] {
            #expect(ids.contains(id), "missing \(id)")
        }
        #expect(report.finding("gpu")?.found == "no NVIDIA GPU (nvidia-smi not found): CPU deployment")
        #expect(report.finding("cpu")?.found.contains("2 physical / 2 logical cores") == true)
        #expect(report.finding("cpu")?.found.contains("engine path: avx512-vnni") == true)
    }

    @Test("no GPU is a finding on a CPU deployment, and a failure when a model needs one")
    func noGPU() throws {
        let config = try write("""
            models:
              - name: glm
                url: http://127.0.0.1:8000/v1
                device: gpu
                preset: glm-4-9b
            """)
        let report = Doctor(probe: healthy()).run(DoctorOptions(configPath: config))
        #expect(report.finding("gpu")?.status == .fail)
        #expect(report.finding("gpu")?.found == "no NVIDIA GPU (nvidia-smi not found) (models glm need a GPU)")
        #expect(report.finding("model.glm.fits")?.status == .fail)
        #expect(report.exitCode == 1)
    }

    @Test("recorded: driver 470 is too old for a CUDA 12.4 toolkit and a cu124 torch")
    func driverTooOld() throws {
        var probe = healthy()
        probe.commands[FakeSystemProbe.query] = CommandOutput(exitCode: 2, stdout: FakeSystemProbe.recorded("compute-cap-invalid.txt"))
        probe.commands[FakeSystemProbe.legacyQuery] = CommandOutput(exitCode: 0, stdout: FakeSystemProbe.recorded("t4-470-legacy-query.csv"))
        probe.commands["nvidia-smi"] = CommandOutput(exitCode: 0, stdout: FakeSystemProbe.recorded("banner-470.txt"))
        probe.files["/proc/driver/nvidia/version"] = FakeSystemProbe.recorded("proc-version-470.txt")
        probe.commands["nvcc --version"] = CommandOutput(exitCode: 0, stdout: FakeSystemProbe.recorded("nvcc-12.4.txt"))
        probe.commands["/venv/bin/python -c \(GPUChecks.pythonScript)"] = CommandOutput(exitCode: 0, stdout: FakeSystemProbe.recorded("python-torch-cu124.json"))
        let report = Doctor(probe: probe).run(DoctorOptions(python: "/venv/bin/python"))
        let gpu = try #require(report.finding("gpu.0"))
        #expect(gpu.found == "Tesla T4: 15109 MiB total, 0 MiB used; driver 470.82.01; compute capability 7.5 (from the name)")
        #expect(report.finding("gpu.driver")?.found == "driver 470.82.01, kernel module 470.82.01; supports CUDA up to 11.4")
        let cuda = try #require(report.finding("cuda"))
        #expect(cuda.status == .fail)
        #expect(cuda.found == "nvcc 12.4 needs driver >= 525.60.13; driver is 470.82.01")
        #expect(cuda.fix?.contains("upgrade the NVIDIA driver to >= 525.60.13") == true)
        let python = try #require(report.finding("python"))
        #expect(python.status == .fail)
        #expect(python.found.contains("torch 2.5.1+cu124 (CUDA 12.4); vllm 0.6.4; driver 470.82.01"))
        #expect(python.fix?.contains("needs driver >= 525.60.13") == true)
        #expect(report.exitCode == 1)
    }

    @Test("recorded: a 16 GB card is too small for GLM-4-9B in bf16; the fix names a precision that fits")
    func tooLittleVRAM() throws {
        var probe = healthy()
        probe.addGPU(query: "a4000-query.csv", banner: "banner-550.txt", procVersion: "proc-version-535-open.txt")
        let config = try write("""
            models:
              - name: glm
                url: http://127.0.0.1:8000/v1
                device: gpu
                preset: glm-4-9b
                precision: bf16
                context_length: 8192
                max_sequences: 1
            """)
        let report = Doctor(probe: probe).run(DoctorOptions(configPath: config))
        let fit = try #require(report.finding("model.glm.fits"))
        #expect(fit.status == .fail)
        // 16376 MiB x 0.9 = 14738 MiB usable (less than the 15801 MiB free).
        #expect(fit.found.hasSuffix("GPU 0 (NVIDIA RTX A4000) has 14.39 GiB usable"))
        #expect(fit.found.contains("weights 17.51 GiB"))
        #expect(fit.fix?.contains("quantize to q8_0") == true)
        #expect(report.finding("gpu.0")?.status == .ok)
        #expect(report.exitCode == 1)
    }

    @Test("recorded: an H100 on 550 carries AutoGLM-Phone-9B bf16 at 25480 tokens x 4; toolkit 12.4 fully supported")
    func h100Fits() throws {
        var probe = healthy()
        probe.addGPU(query: "h100-query.csv", banner: "banner-550.txt", procVersion: "proc-version-550.txt")
        probe.commands["nvcc --version"] = CommandOutput(exitCode: 0, stdout: FakeSystemProbe.recorded("nvcc-12.4.txt"))
        let config = try write("""
            models:
              - name: phone
                url: http://127.0.0.1:8000/v1
                device: gpu
                preset: autoglm-phone-9b
                context_length: 25480
                max_sequences: 4
            """)
        let report = Doctor(probe: probe).run(DoctorOptions(configPath: config))
        #expect(report.finding("model.phone.fits")?.status == .ok)
        #expect(report.finding("gpu.0")?.found == "NVIDIA H100 80GB HBM3: 81559 MiB total, 0 MiB used; driver 550.54.15; compute capability 9.0")
        #expect(report.finding("gpu.driver")?.status == .ok)
        #expect(report.finding("cuda")?.found == "nvcc 12.4; driver 550.54.15 supports it fully")
        #expect(report.exitCode == 0, "\(report.text)")
    }

    @Test("recorded: BF16 on a T4 (compute capability 7.5) fails with the fp16 fix")
    func bf16OnT4() throws {
        var probe = healthy()
        probe.addGPU(query: "t4-query.csv", banner: "banner-550.txt", procVersion: "proc-version-535-open.txt")
        let config = try write("""
            models:
              - name: small
                url: http://127.0.0.1:8000/v1
                device: gpu
                preset: smollm2-1.7b
            """)
        let report = Doctor(probe: probe).run(DoctorOptions(configPath: config))
        let fit = try #require(report.finding("model.small.fits"))
        #expect(fit.status == .fail)
        #expect(fit.fix?.contains("set precision fp16") == true)
        #expect(report.finding("gpu.0")?.status == .ok)  // 7.5 meets vLLM 0.21's minimum; only BF16 is missing
    }

    @Test("recorded: a driver that is not loaded, and a user-space/kernel version mismatch")
    func brokenDrivers() throws {
        var notLoaded = healthy()
        notLoaded.commands[FakeSystemProbe.query] = CommandOutput(exitCode: 9, stdout: FakeSystemProbe.recorded("driver-not-loaded.txt"))
        let a = Doctor(probe: notLoaded).run(DoctorOptions())
        #expect(a.finding("gpu")?.status == .warn)
        #expect(a.finding("gpu")?.fix?.contains("sudo modprobe nvidia") == true)

        var mismatch = healthy()
        mismatch.commands[FakeSystemProbe.query] = CommandOutput(exitCode: 18, stdout: FakeSystemProbe.recorded("version-mismatch.txt"))
        mismatch.files["/proc/driver/nvidia/version"] = FakeSystemProbe.recorded("proc-version-535-open.txt")
        let b = Doctor(probe: mismatch).run(DoctorOptions())
        #expect(b.finding("gpu")?.status == .fail)
        #expect(b.finding("gpu")?.found == "nvidia-smi: Failed to initialize NVML: Driver/library version mismatch (kernel module 535.104.05)")
        #expect(b.finding("gpu")?.fix?.contains("reboot") == true)
        #expect(b.exitCode == 1)
    }

    @Test("permissions as a non-root user: owner, mode and fix for a chmod 000 file; the blocking directory otherwise")
    func permissions() throws {
        // Tests run as root on these machines, where chmod 000 still reads; the permission logic is tested here
        // through the probe (uid 1000), and for real by DoctorLiveTests with the binary run as nobody.
        var probe = healthy()
        probe.statuses[Self.defaultModel]?.ownerUID = 0
        probe.statuses[Self.defaultModel]?.mode = 0
        probe.openErrors[Self.defaultModel] = EACCES
        let report = Doctor(probe: probe).run(DoctorOptions())
        let file = try #require(report.finding("model.smollm2-135m-instruct.file"))
        #expect(file.status == .fail)
        #expect(file.found == "\(Self.defaultModel): permission denied: owner root (uid 0), mode --------- (0000), running as alice (uid 1000)")
        #expect(file.fix == "`sudo chmod a+r \(Self.defaultModel)` (or `sudo chown alice \(Self.defaultModel)`), or run autoglm as root")

        var own = healthy()
        own.statuses[Self.defaultModel]?.mode = 0o200
        own.openErrors[Self.defaultModel] = EACCES
        #expect(Doctor(probe: own).run(DoctorOptions()).finding("model.smollm2-135m-instruct.file")?.fix == "`chmod u+r \(Self.defaultModel)`")

        var directory = healthy()
        directory.statuses["/models"] = FileStatus(isDirectory: true, isRegularFile: false, sizeBytes: 4096, ownerUID: 0, mode: 0o700)
        directory.openErrors[Self.defaultModel] = EACCES
        let d = try #require(Doctor(probe: directory).run(DoctorOptions()).finding("model.smollm2-135m-instruct.file"))
        #expect(d.found == "\(Self.defaultModel): permission denied: directory /models (owner root, mode rwx------) is not searchable by alice (uid 1000)")
        #expect(d.fix?.hasPrefix("`sudo chmod o+x /models`") == true)
    }

    @Test("a missing default model says how to fetch it")
    func missingModel() throws {
        let report = Doctor(probe: FakeSystemProbe()).run(DoctorOptions())
        let file = try #require(report.finding("model.smollm2-135m-instruct.file"))
        #expect(file.status == .fail)
        #expect(file.fix == "fetch it: `autoglm models pull smollm2-135m-instruct` (or scripts/setup-model.sh)")
    }

    @Test("a full disk fails; little space, NUMA, low open-file limits and a CPU without AVX2 warn")
    func hostProblems() {
        var probe = healthy()
        probe.space = FileSystemSpace(totalBytes: 100 << 30, availableBytes: 12 << 20)
        probe.directories["/sys/devices/system/node"] = ["node0", "node1", "online"]
        probe.limit = (256, 4096)
        probe.files["/proc/cpuinfo"] = "processor\t: 0\nmodel name\t: QEMU Virtual CPU\nflags\t\t: fpu sse4_2 avx\n"
        let report = Doctor(probe: probe).run(DoctorOptions())
        #expect(report.finding("disk")?.status == .fail)
        #expect(report.finding("disk")?.found.hasPrefix("12.0 MiB free of 100.00 GiB") == true)
        #expect(report.finding("numa")?.status == .warn)
        #expect(report.finding("open-files")?.status == .fail)
        #expect(report.finding("open-files")?.fix?.contains("ulimit -n 4096") == true)
        #expect(report.finding("cpu")?.status == .warn)
        #expect(report.finding("cpu")?.found.contains("engine path: scalar") == true)
        probe.space = FileSystemSpace(totalBytes: 100 << 30, availableBytes: 5 << 30)
        probe.limit = (1024, 1_048_576)
        let second = Doctor(probe: probe).run(DoctorOptions())
        #expect(second.finding("disk")?.status == .warn)
        #expect(second.finding("open-files")?.status == .warn)
    }

    @Test("too little RAM for the plan fails with the context that would fit")
    func ramTooSmall() throws {
        var probe = healthy()
        probe.files["/proc/meminfo"] = "MemTotal: 1048576 kB\nMemAvailable: 20480 kB\n"
        let report = Doctor(probe: probe).run(DoctorOptions())
        let fit = try #require(report.finding("model.smollm2-135m-instruct.fits"))
        #expect(fit.status == .fail)
        #expect(fit.found.hasSuffix("20.0 MiB available"))
    }

    @Test("port in use names the holder from /proc/net/tcp and /proc/PID/fd")
    func portHolder() throws {
        var probe = healthy()
        probe.bindOutcomes[8080] = .inUse
        probe.files["/proc/net/tcp"] = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 424242 1 0000000000000000 100 0 0 10 0
            """
        probe.directories["/proc"] = ["1", "4711", "self", "meminfo"]
        probe.directories["/proc/4711/fd"] = ["0", "1", "7"]
        probe.links["/proc/4711/fd/7"] = "socket:[424242]"
        probe.files["/proc/4711/cmdline"] = "ollama\0serve\0"
        let report = Doctor(probe: probe).run(DoctorOptions())
        let port = try #require(report.finding("port"))
        #expect(port.status == .fail)
        #expect(port.found == "127.0.0.1:8080 is in use by pid 4711 (ollama serve), user bob (uid 1001)")
        #expect(port.fix == "stop it (`kill 4711`, or `systemctl stop` its service), or choose another port: --port 8081 / AUTOGLM_SERVER_PORT / server.port (set by default)")

        var low = healthy()
        low.bindOutcomes[80] = .permissionDenied
        let r = Doctor(probe: low).run(DoctorOptions(overrides: [ConfigOverride(key: "server.port", value: "80", flag: "--port")]))
        #expect(r.finding("port")?.fix?.contains("CAP_NET_BIND_SERVICE") == true)
    }

    @Test("a config typo fails doctor with the key, file:line and the allowed keys")
    func configTypo() throws {
        let config = try write("server:\n  prot: 9000\n")
        let report = Doctor(probe: healthy()).run(DoctorOptions(configPath: config))
        let finding = try #require(report.finding("config"))
        #expect(finding.status == .fail)
        #expect(finding.found == "\(config):2:3: error: server.prot: unknown key 'prot' in server; did you mean 'port'?; allowed: host, port, api_keys, tls, timeouts, drain, admin_api_keys, max_loaded_models, keep_alive, models_memory_budget, sse_heartbeat, grpc")
        #expect(report.exitCode == 1)
    }

    @Test("JSON: status, exit code, counts and every check")
    func json() throws {
        let report = Doctor(probe: healthy()).run(DoctorOptions())
        let object = try #require(try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as? [String: Any])
        #expect(object["status"] as? String == "ok")
        #expect(object["exit_code"] as? Int == 0)
        let checks = try #require(object["checks"] as? [[String: Any]])
        #expect(checks.count == report.findings.count)
        #expect(checks.first?["id"] as? String == "config")
    }
}

@Suite("Doctor parsers and tables")
struct DoctorParserTests {
    @Test("nvidia-smi query lines, with and without compute_cap")
    func query() {
        let gpus = NvidiaSMI.parseQuery(FakeSystemProbe.recorded("h100-query.csv") + "1, NVIDIA A100-SXM4-40GB, 40960, 10, 40950, 550.54.15, 8.0\n")
        #expect(gpus.count == 2)
        #expect(gpus[0] == GPUInfo(index: 0, name: "NVIDIA H100 80GB HBM3", memoryTotalMiB: 81559, memoryUsedMiB: 0, memoryFreeMiB: 80994,
                                   driverVersion: "550.54.15", computeCapability: "9.0", computeCapabilityFromName: false))
        #expect(gpus[1].computeCapability == "8.0")
        let legacy = NvidiaSMI.parseQuery(FakeSystemProbe.recorded("t4-470-legacy-query.csv"))
        #expect(legacy.first?.computeCapability == "7.5" && legacy.first?.computeCapabilityFromName == true)
        #expect(NvidiaSMI.parseQuery(FakeSystemProbe.recorded("compute-cap-invalid.txt")).isEmpty)
    }

    @Test("a control group's memory limit: v2 and v1 files, the working set without inactive file pages, no limit")
    func cgroupMemory() throws {
        let v2 = try #require(CgroupMemory.parse(max: "10737418240\n", current: "4294967296\n",
                                                  stat: "anon 3000000000\nfile 1294967296\ninactive_file 1073741824\nactive_file 221225472\n"))
        #expect(v2.limitBytes == 10 << 30 && v2.workingSetBytes == 3 << 30 && v2.headroomBytes == 7 << 30)
        #expect(CgroupMemory.parse(max: "max\n", current: "4294967296\n", stat: nil) == nil, "no limit")
        #expect(CgroupMemory.parse(max: "9223372036854771712\n", current: "1", stat: nil) == nil, "v1's 'no limit'")
        let v1 = try #require(CgroupMemory.parse(max: "2147483648", current: "2200000000", stat: "cache 10\ntotal_inactive_file 0\n"))
        #expect(v1.headroomBytes == 0, "over the limit: no headroom")
        #expect(CgroupMemory.parse(max: nil, current: nil, stat: nil) == nil)
        // A directory laid out as a v2 mount.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "1073741824\n".write(to: dir.appendingPathComponent("memory.max"), atomically: true, encoding: .utf8)
        try "536870912\n".write(to: dir.appendingPathComponent("memory.current"), atomically: true, encoding: .utf8)
        #expect(CgroupMemory.current(root: dir.path)?.headroomBytes == 512 << 20)
    }

    @Test("banner CUDA version, kernel module versions (proprietary and open), nvcc release")
    func versions() {
        #expect(NvidiaSMI.bannerCUDAVersion(FakeSystemProbe.recorded("banner-550.txt")) == "12.4")
        #expect(NvidiaSMI.bannerCUDAVersion(FakeSystemProbe.recorded("banner-470.txt")) == "11.4")
        #expect(NvidiaSMI.kernelModuleVersion(FakeSystemProbe.recorded("proc-version-550.txt")) == "550.54.15")
        #expect(NvidiaSMI.kernelModuleVersion(FakeSystemProbe.recorded("proc-version-535-open.txt")) == "535.104.05")
        #expect(NvidiaSMI.nvccRelease(FakeSystemProbe.recorded("nvcc-12.4.txt")) == "12.4")
    }

    @Test("driver support for CUDA versions (FACTS.md 5.1)")
    func cudaTable() {
        func support(_ d: String, _ c: String) -> CUDACompatibility.Support {
            CUDACompatibility.support(driver: DottedVersion(d)!, cuda: DottedVersion(c)!)
        }
        #expect(support("470.82.01", "12.4") == .unsupported(minimum: "525.60.13"))
        #expect(support("535.104.05", "12.4") == .minorVersionCompatible(bundled: "550.54.14"))
        #expect(support("550.54.15", "12.4") == .full)
        #expect(support("570.86.10", "13.0") == .unsupported(minimum: "580.65.06"))
        #expect(support("580.65.06", "13.0") == .full)
        #expect(support("470.82.01", "11.8") == .minorVersionCompatible(bundled: "520.61.05"))
        #expect(GPUChecks.newestCUDA(for: DottedVersion("535.104.05")!) == "12.2")
        #expect(DottedVersion("550.54.15")! > DottedVersion("550.54.14")!)
        #expect(DottedVersion("12.10")! > DottedVersion("12.9")!)
    }

    @Test("compute capability by name: longer names win (A100 is not A10, L40S is not L4)")
    func ccByName() {
        #expect(CUDACompatibility.computeCapability(forName: "NVIDIA A100-SXM4-80GB") == "8.0")
        #expect(CUDACompatibility.computeCapability(forName: "NVIDIA A10G") == "8.6")
        #expect(CUDACompatibility.computeCapability(forName: "NVIDIA L40S") == "8.9")
        #expect(CUDACompatibility.computeCapability(forName: "Tesla V100-SXM2-16GB") == "7.0")
        #expect(CUDACompatibility.computeCapability(forName: "Quadro P4000") == nil)
    }

    @Test("cpuinfo on x86 and arm64")
    func cpuinfo() {
        let arm = CPUInfo.parse("processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp i8mm\nprocessor\t: 1\nFeatures\t: fp asimd\n")
        #expect(arm.logicalCores == 2 && arm.physicalCores == 2)
        #expect(arm.simdFeatures == ["asimd", "asimddp", "i8mm"])
        #expect(arm.enginePath == "scalar")
        let x86 = CPUInfo.parse(FakeSystemProbe().files["/proc/cpuinfo"]!)
        #expect(x86.model == "Intel(R) Xeon(R) Gold 6338" && x86.enginePath == "avx512-vnni")
    }

    @Test("/proc/net/tcp listener lookup")
    func netTCP() {
        let table = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1491 1 0 100 0 0 10 0
               1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 777 1 0 20 4 30 10 -1
            """
        #expect(NetworkChecks.listener(in: table, port: 2024)! == ("1491", 0))
        #expect(NetworkChecks.listener(in: table, port: 8080) == nil)  // established, not listening
    }

    @Test("SHA-256 test vectors (FIPS 180-4 examples)")
    func sha256() {
        #expect(SHA256.hex(of: []) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(of: Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(of: Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var h = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 999)
        for _ in 0 ..< 1001 { h.update(chunk) }   // 999,999 bytes in odd-sized pieces
        h.update([UInt8(ascii: "a")])
        #expect(h.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
