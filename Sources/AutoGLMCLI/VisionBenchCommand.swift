import ArgumentParser
import Engine
import Foundation
import GGUF
import Imaging
import Kernels

/// Times the vision tower on one synthetic screenshot: preprocessing (resize, normalise, patches) and encoding,
/// with the work counted (matrix products and attention, in GFLOP) so the rate can be set against the machine.
struct VisionBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-vision",
        abstract: "Measure the GLM-4.1V vision tower (an mmproj GGUF) on one image of a given size.")

    @Option(help: "The vision tower: llama.cpp's mmproj GGUF (clip.projector_type glm4v).") var mmproj: String
    @Option(help: "Image size WIDTHxHEIGHT (a phone screenshot is 1080x2400).") var image = "1080x2400"
    @Option(help: "The image processor's pixel budget, both temporal copies counted (GLM-4.1V's default 9633792; 2000000 is about 1 MP).")
    var maxPixels = 9_633_792
    @Option(name: .shortAndLong, help: "Threads (default: every core).") var threads: Int?
    @Option(name: .customShort("r"), help: "Repetitions.") var repetitions = 3
    @Flag(help: "Use the readable reference encoder instead (slow; for checking).") var reference = false

    func run() throws {
        let parts = image.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts.allSatisfy({ $0 > 0 && $0 <= 16384 }) else {
            throw ValidationError("--image takes WIDTHxHEIGHT, e.g. 1080x2400 (got \(image)).")
        }
        let (width, height) = (parts[0], parts[1])
        let threadCount = threads ?? ProcessInfo.processInfo.activeProcessorCount
        let clock = ContinuousClock()
        let file: GGUFFile
        let encoder: any VisionEncoder
        let loadStart = clock.now
        do {
            file = try GGUFFile(path: mmproj)
            encoder = reference ? try ReferenceGLM4Vision(file: file) : try GLM4VisionEncoder(file: file, threads: threadCount)
        } catch let error as GGUFError {
            throw CLIError(error.description)
        } catch let error as EngineError {
            throw CLIError(error.description)
        }
        let loadSeconds = (clock.now - loadStart).secondsValue
        // A synthetic screenshot: smooth gradients with some structure (the content does not change the work).
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0 ..< height {
            for x in 0 ..< width {
                let o = (y * width + x) * 3
                pixels[o] = UInt8(x * 255 / max(width - 1, 1))
                pixels[o + 1] = UInt8(y * 255 / max(height - 1, 1))
                pixels[o + 2] = UInt8(((x / 40 + y / 40) % 2) * 200)
            }
        }
        let rgb = RGBImage(width: width, height: height, pixels: pixels)
        var processor = GLM4VImageProcessor()
        processor.minPixels = 12_544
        processor.maxPixels = maxPixels
        processor.mean = encoder.configuration.imageMean
        processor.std = encoder.configuration.imageStd
        let c = encoder.configuration
        print("mmproj: \(mmproj) (\(c.blockCount) blocks of \(c.width), \(c.headCount) heads), loaded in \(String(format: "%.2f", loadSeconds)) s; \(threadCount) threads")
        var preprocess: [Double] = [], encode: [Double] = []
        var profiles: [GLM4VisionEncoder.Profile] = []
        var tokens = 0, grid = (0, 0)
        for _ in 0 ..< repetitions {
            let t0 = clock.now
            let patches = try processor.patches(rgb)
            let t1 = clock.now
            do {
                _ = try encoder.encode(patches: patches.values, gridH: patches.gridH, gridW: patches.gridW)
            } catch { throw CLIError(error.description) }
            let t2 = clock.now
            preprocess.append((t1 - t0).secondsValue)
            if let fast = encoder as? GLM4VisionEncoder { profiles.append(fast.lastProfile) }
            encode.append((t2 - t1).secondsValue)
            tokens = patches.tokenCount(merge: c.mergeSize)
            grid = (patches.gridH, patches.gridW)
        }
        let work = GLM4VisionEncoder.work(configuration: c, gridH: grid.0, gridW: grid.1)
        let best = encode.min() ?? 0, median = encode.sorted()[encode.count / 2]
        print("image \(width)x\(height) -> \(grid.1 * c.patchSize)x\(grid.0 * c.patchSize): \(grid.0 * grid.1) patches, \(tokens) image tokens")
        print(String(format: "preprocess: median %.3f s", preprocess.sorted()[preprocess.count / 2]))
        print(String(format: "encode: median %.2f s, best %.2f s (%d runs)", median, best, encode.count))
        print(String(format: "work: %.0f GFLOP in matrix products, %.0f GFLOP in attention; at the best run %.1f GFLOP/s overall",
                     work.matrix / 1e9, work.attention / 1e9, (work.matrix + work.attention) / 1e9 / best))
        if let p = profiles.min(by: { $0.totalSeconds < $1.totalSeconds }), let fast = encoder as? GLM4VisionEncoder {
            let peak = Operations.measureFMAPeak(pool: WorkerPool(threads: fast.threads))
            let matrixRate = work.matrix / p.matrixSeconds, attentionRate = work.attention / p.attentionSeconds
            print(String(format: "best run: matrix products %.1f s (%.1f GFLOP/s), attention %.1f s (%.1f GFLOP/s), the rest %.1f s",
                         p.matrixSeconds, matrixRate / 1e9, p.attentionSeconds, attentionRate / 1e9,
                         p.totalSeconds - p.matrixSeconds - p.attentionSeconds))
            if let peak {
                print(String(format: "float32 FMA peak measured now on %d threads: %.1f GFLOP/s; matrix products at %.0f%%, attention at %.0f%%",
                             fast.threads, peak / 1e9, 100 * matrixRate / peak, 100 * attentionRate / peak))
            }
        }
    }
}
