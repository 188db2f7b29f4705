import ArgumentParser
import Foundation
import Ops

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Plan memory: weights, KV cache, activations and overhead, and what fits where.",
        discussion: """
            MODEL is a preset (\(ModelPresets.names.joined(separator: ", "))), a .gguf file or a Hugging Face
            config.json. Without MODEL: the default model file, else the smollm2-135m preset.
            Presets and configs default to bf16 weights; a GGUF file counts its own size.
            """)

    @Argument(help: "Preset name, .gguf file, or config.json.")
    var model: String?

    @Option(help: "Weight precision: \(Precision.allowedNames).")
    var precision: String?

    @Option(help: "Tokens of context per sequence (default: the model's trained context, at most 8192).")
    var context: Int?

    @Option(help: "Sequences held at once (concurrent requests, or the training micro-batch).")
    var sequences: Int = 1

    @Option(name: .customLong("kv-precision"), help: "KV cache element type: \(KVPrecision.allowedNames). The CPU engine stores f16 by default (serve --kv-type).")
    var kvPrecision: String = "f16"

    @Flag(help: "Plan full training with Adam instead of inference.")
    var training = false

    @Flag(help: "With --training: activation checkpointing (recompute each layer in the backward pass).")
    var checkpointing = false

    @Flag(name: .customLong("include-vision"), help: "Count a vision tower's parameters (autoglm-phone-9b).")
    var includeVision = false

    @Option(name: .customLong("gpu-utilization"), help: "Fraction of each GPU a serving engine may take (default 0.9).")
    var gpuUtilization: Double?

    @Option(name: .customLong("prefill-chunk"), help: "Tokens per prefill step (default 256, the engine's).")
    var prefillChunk: Int?

    @Option(help: "One image per request, WIDTHxHEIGHT (autoglm-phone-9b: a phone screenshot is 1080x2400): its tokens, the vision tower's work and memory.")
    var image: String?

    @Option(name: .customLong("max-pixels"), help: "With --image: the image processor's pixel budget, both temporal copies counted (default GLM-4.1V's 9633792; 2000000 is about 1 MP).")
    var maxPixels: Int?

    @Flag(help: "Print one JSON object instead of tables.")
    var json = false

    @Flag(help: "Print a Kubernetes resources block (memory request and limit) for a pod serving this plan.")
    var kubernetes = false

    @Option(help: "With --kubernetes: the CPU cores to request (the engine's threads).")
    var threads: Int?

    func run() throws {
        let options = PlanOptions(
            model: model, precision: precision, context: context, sequences: sequences, kvPrecision: kvPrecision,
            training: training, checkpointing: checkpointing, includeVision: includeVision,
            gpuUtilization: gpuUtilization, prefillChunk: prefillChunk, image: image, imageMaxPixels: maxPixels)
        let environment = ProcessInfo.processInfo.environment
        let request: PlanRequest
        do { request = try options.request(environment: environment) } catch {
            throw ValidationError(error.description)
        }
        let host = LiveSystemProbe().readFile("/proc/meminfo").flatMap(MemInfo.parse)
        let devices = PlanOptions.devices(host: host, gpuUtilization: request.model.gpuMemoryUtilization)
        let plan = MemoryPlanner.plan(request, devices: devices)
        if kubernetes {
            guard let block = PlanReport.kubernetes(plan, threads: threads) else {
                throw ValidationError("--kubernetes plans serving: leave out --training.")
            }
            print(block, terminator: "")
            return
        }
        print(json ? PlanReport.json(plan) : PlanReport.text(plan))
    }
}
