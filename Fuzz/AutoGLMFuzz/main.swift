// libFuzzer targets for the parsers that read untrusted bytes. One binary; AUTOGLM_FUZZ_TARGET picks the
// target: gguf, safetensors, json (request decoding), template (the chat-template parser and renderer),
// tokenizer (the default model's, from AUTOGLM_FUZZ_MODEL), image (PNG/JPEG decoding).
// Built with coverage and AddressSanitizer by scripts/fuzz.sh; not part of the normal build (Package.swift adds
// this target only when AUTOGLM_FUZZ is set).
import Foundation
import GGUF
import GRPCProtocols
import SwiftProtobuf
import Imaging
import InferenceCore
import SafeTensors
@testable import Server
import Tokenizer

enum Target: String { case gguf, safetensors, json, template, tokenizer, image, grpc }

enum Fuzz {
static let target: Target = {
    let name = ProcessInfo.processInfo.environment["AUTOGLM_FUZZ_TARGET"] ?? ""
    guard let t = Target(rawValue: name) else {
        FileHandle.standardError.write(Data("set AUTOGLM_FUZZ_TARGET to gguf, safetensors, json, template, tokenizer, image or grpc\n".utf8))
        exit(2)
    }
    return t
}()

static let tokenizer: Tokenizer? = {
    guard Fuzz.target == .tokenizer, let path = ProcessInfo.processInfo.environment["AUTOGLM_FUZZ_MODEL"],
          let file = try? GGUFFile(path: path) else { return nil }
    return try? Tokenizer(gguf: file)
}()

/// A small template the json target's messages render with; the template target parses the input itself.
static let fixedTemplate = try! ChatTemplate(jinja: "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
}

func fuzzGGUF(_ bytes: [UInt8]) {
    guard let mapped = try? MappedFile(copying: bytes, name: "fuzz.gguf"), let file = try? GGUFFile(mappedFile: mapped) else { return }
    for info in file.tensors {
        let raw = file.tensorBytes(info)
        if let first = raw.first { _ = first }
    }
    for key in file.metadataKeys { _ = file.metadata[key] }
    _ = try? TokenizerVocabulary(gguf: file)
}

func fuzzSafeTensors(_ bytes: [UInt8]) {
    guard let mapped = try? MappedFile(copying: bytes, name: "fuzz.safetensors"),
          let file = try? SafeTensorsFile(mappedFile: mapped) else { return }
    for info in file.tensors.values {
        let raw = file.bytes(info)
        if let first = raw.first { _ = first }
        if info.dtype == .f32 || info.dtype == .f16 || info.dtype == .bf16, raw.count <= 1 << 16 { _ = file.floats(info) }
    }
}

func fuzzJSON(_ bytes: [UInt8]) {
    guard let json = try? JSON.parse(bytes), let reader = try? FieldReader(json) else { return }
    _ = try? GenerationParameters(reader)
    if let tools = reader.value("tools") { try? CompletionsAPI.checkTools(tools) }
    if let choice = reader.value("tool_choice") { try? CompletionsAPI.checkToolChoice(choice) }
    if case .array(let messages)? = reader.value("messages") {
        var values: [JinjaValue] = []
        for (i, m) in messages.enumerated() {
            guard let v = try? CompletionsAPI.chatMessage(m, index: i) else { return }
            values.append(v)
        }
        _ = try? Fuzz.fixedTemplate.render(messageValues: values, addGenerationPrompt: true)
    }
    _ = json.text
}

func fuzzTemplate(_ bytes: [UInt8]) {
    guard let template = try? ChatTemplate(jinja: String(decoding: bytes, as: UTF8.self)) else { return }
    let messages = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi <b>there</b>"),
                    ChatMessage(role: "assistant", content: "Hello."), ChatMessage(role: "user", content: "{{ not code }}")]
    _ = try? template.render(messages: messages, addGenerationPrompt: true, bosToken: "<s>")
}

func fuzzTokenizer(_ bytes: [UInt8]) {
    guard let tokenizer = Fuzz.tokenizer else { return }
    let text = String(decoding: bytes, as: UTF8.self)
    let ids = tokenizer.encode(text, addSpecial: true, parseSpecial: bytes.first.map { $0 & 1 == 1 } ?? false)
    let back = tokenizer.decode(ids)
    _ = back
    // Random ids, in and out of the vocabulary.
    let raw = stride(from: 0, to: bytes.count - 3, by: 4).map { i in Int(Int32(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)) }
    _ = tokenizer.decode(raw)
}

func fuzzImage(_ bytes: [UInt8]) {
    _ = ImageDecoder.sniff(bytes)
    _ = try? ImageDecoder.decode(bytes, limits: ImageDecodeLimits(maxPixels: 4_000_000, maxSide: 4096))
}

/// The gRPC API's request reading: the bytes as a KServe ModelInferRequest (raw tensor contents, parameters) and as an
/// SGLang GenerateRequest, each read as its service reads it.
func fuzzGRPC(_ bytes: [UInt8]) {
    if let request = try? Inference_ModelInferRequest(serializedBytes: bytes), let input = try? KServeInput(request) {
        _ = input.body.text
    }
    if let request = try? Sglang_Grpc_Scheduler_GenerateRequest(serializedBytes: bytes), let body = try? SGLangService.body(request) {
        _ = body.text
    }
}

/// libFuzzer's callback: one input.
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    switch Fuzz.target {
    case .gguf: fuzzGGUF(bytes)
    case .safetensors: fuzzSafeTensors(bytes)
    case .json: fuzzJSON(bytes)
    case .template: fuzzTemplate(bytes)
    case .tokenizer: fuzzTokenizer(bytes)
    case .image: fuzzImage(bytes)
    case .grpc: fuzzGRPC(bytes)
    }
    return 0
}

// libFuzzer's driver, from the toolchain's runtime (linked by -sanitize=fuzzer). SwiftPM makes this file's top-level
// code the program's entry point, so libFuzzer's own main is not used: this hands it the arguments and the callback.
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
               _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

_ = Fuzz.target
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(runDriver(&argc, &argv, { data, size in fuzzOne(data, size) }))
