import ArgumentParser
import Engine
import Foundation
import GGUF
import Runtime

/// `autoglm convert DIR --output FILE.gguf --type q8_0`: a Hugging Face directory to a GGUF file with llama.cpp's
/// architecture keys, tensor names and tokenizer metadata (the file loads in autoglm and in llama.cpp).
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a Hugging Face model directory (safetensors) to a GGUF file.")

    @Argument(help: "The model directory: config.json, *.safetensors (or sharded with model.safetensors.index.json), tokenizer.json.")
    var directory: String

    @Option(name: .shortAndLong, help: "The GGUF file to write.")
    var output: String

    @Option(name: .customLong("type"), help: "Matrix type: f32, f16, bf16, q8_0, q4_0 or q4_k (norms and biases stay f32).")
    var type: String = "f16"

    @Option(help: "For a vision-language directory (GLM-4.1V): where to write the vision tower, llama.cpp's mmproj GGUF (default: mmproj-OUTPUT beside the output). It keeps f16 matrices unless --mmproj-type says otherwise.")
    var mmproj: String?

    @Option(help: "Matrix type of the mmproj: f32, f16, bf16 or q8_0 (convolutions stay f16).")
    var mmprojType: String = "f16"

    func validate() throws {
        guard let t = GGUFTensorType(name: type), ModelLoader.writableTypes.contains(t) else {
            throw ValidationError("--type must be one of f32, f16, bf16, q8_0, q4_0, q4_k (got \(type)).")
        }
        guard !FileManager.default.fileExists(atPath: output) || output.hasSuffix(".gguf") else {
            throw ValidationError("\(output) exists and is not a .gguf file; choose another --output.")
        }
    }

    func run() throws {
        let tensorType = GGUFTensorType(name: type)!
        let start = Date()
        let writer: GGUFWriter
        let report: HuggingFaceImport.Report
        do {
            (writer, report) = try ModelLoader.huggingFaceGGUF(directory: directory, type: tensorType)
        } catch {
            throw CLIError("cannot convert \(directory): \(error.description)")
        }
        do { try writer.write(to: output) } catch { throw CLIError(error.description) }
        for note in report.notes { printError("note: \(note)") }
        let seconds = Date().timeIntervalSince(start)
        print("wrote \(output): \(report.summary) in \(String(format: "%.1f", seconds)) s")
        guard let visionType = GGUFTensorType(name: mmprojType), [.f32, .f16, .bf16, .q8_0].contains(visionType) else {
            throw CLIError("--mmproj-type must be f32, f16, bf16 or q8_0 (got \(mmprojType)).")
        }
        let vision: (GGUFWriter, HuggingFaceImport.Report)?
        do { vision = try ModelLoader.huggingFaceMMProj(directory: directory, type: visionType) } catch {
            throw CLIError("cannot convert the vision tower of \(directory): \(error.description)")
        }
        if let (visionWriter, visionReport) = vision {
            let path = mmproj ?? ((output as NSString).deletingLastPathComponent as NSString)
                .appendingPathComponent("mmproj-" + (output as NSString).lastPathComponent)
            do { try visionWriter.write(to: path) } catch { throw CLIError(error.description) }
            print("wrote \(path) (the vision tower, for --mmproj): \(visionReport.summary)")
        } else if mmproj != nil {
            throw CLIError("\(directory) has no vision tower; --mmproj is for GLM-4.1V directories.")
        }
    }
}
