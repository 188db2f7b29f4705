// swift-tools-version: 6.1
import Foundation
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "autoglm",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "autoglm", targets: ["AutoGLMCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        // OTLP/HTTP only: the gRPC exporter would build grpc-swift for nothing.
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/apple/swift-crypto", "4.1.0" ..< "5.0.0"),
        // The gRPC API (SGLang's scheduler protocol, KServe/Triton's inference protocol, health, reflection).
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // Shared vocabulary of the whole system: no logic, no dependencies.
        .target(name: "InferenceCore", swiftSettings: swiftSettings),
        // SIMD kernels and the worker pool, in C so that each ISA path is compiled for its target
        // and chosen at run time (see ARCHITECTURE.md). The only home of raw pointer math besides GGUF's mmap.
        .target(
            name: "CKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])],
            linkerSettings: [.linkedLibrary("pthread")]
        ),
        // The serving vocabulary and the model-free scheduling policy: generation requests and events,
        // the backend protocol the server talks to, the KV block manager. No model, no HTTP.
        .target(name: "Serving", dependencies: ["InferenceCore", "Imaging"], swiftSettings: swiftSettings),
        .target(name: "GGUF", swiftSettings: swiftSettings),
        // PNG and JPEG decoding over the system's libpng and libjpeg-turbo (Debian's libpng-dev and
        // libjpeg62-turbo-dev, installed by scripts/setup-system.sh); C for the libraries' setjmp error handling.
        .target(
            name: "CImageCodecs",
            linkerSettings: [.linkedLibrary("png16"), .linkedLibrary("jpeg")]
        ),
        // Images for the vision models: decoding with limits, Pillow-exact bicubic resampling, and the
        // GLM-4.1V image processor (smart resize, normalisation, patches). No model, no HTTP.
        .target(name: "Imaging", dependencies: ["CImageCodecs"], swiftSettings: swiftSettings),
        // Hugging Face safetensors files and model directories (mmap'd like GGUF).
        .target(name: "SafeTensors", dependencies: ["GGUF"], swiftSettings: swiftSettings),
        .target(name: "Kernels", dependencies: ["CKernels", "GGUF"], swiftSettings: swiftSettings),
        .target(name: "Tokenizer", dependencies: ["GGUF", "InferenceCore"], swiftSettings: swiftSettings),
        .target(
            name: "Engine",
            dependencies: ["InferenceCore", "GGUF", "Kernels", "SafeTensors"],
            swiftSettings: swiftSettings
        ),
        // Drives the engine: the serving engine loop (Scheduler), the output processor, the local
        // backend and its assembly, generation sessions for the CLI, stop strings, perplexity.
        .target(
            name: "Runtime",
            dependencies: ["Engine", "Tokenizer", "InferenceCore", "GGUF", "SafeTensors", "Kernels", "Serving", "Ops", "Imaging"],
            swiftSettings: swiftSettings
        ),
        // Operations tools: memory planner, configuration, doctor, model store. The CLI only parses.
        .target(
            name: "Ops",
            dependencies: ["GGUF", "InferenceCore", "Imaging", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // The gRPC protocols' messages and service stubs, generated from Protos/ by scripts/generate-grpc.sh
        // (committed; regenerated only when a .proto changes). No logic.
        .target(
            name: "GRPCProtocols",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The HTTP server: OpenAI-compatible routes over Hummingbird, the upstream gateway, metrics and
        // lifecycle. It sees local models only through Serving's `InferenceBackend`: no engine import.
        .target(
            name: "Server",
            dependencies: [
                "Serving", "InferenceCore", "Ops", "OpenAIAPI", "Imaging",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
                "GRPCProtocols",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            // The OpenAPI document of every route, served at /openapi.json from the binary itself.
            resources: [.embedInCode("openapi.json")],
            swiftSettings: swiftSettings
        ),
        // OpenAI's request and response bodies as Codable types, shared by the server, the load
        // generator and their tests. Foundation only.
        .target(name: "OpenAIAPI", swiftSettings: swiftSettings),
        // Load generator against any OpenAI-compatible server (`autoglm bench`).
        .target(
            name: "Bench",
            dependencies: [
                "OpenAIAPI", "GRPCProtocols",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "AutoGLMCLI",
            dependencies: [
                "Runtime", "Engine", "Tokenizer", "GGUF", "InferenceCore", "Ops", "Server", "Bench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Fixture paths and JSON helpers shared by the test targets.
        .target(name: "TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "CKernels", "GGUF", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "GGUF", "InferenceCore", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "OpenAIAPITests", dependencies: ["OpenAIAPI"], swiftSettings: swiftSettings),
        .testTarget(name: "ServingTests", dependencies: ["Serving", "InferenceCore", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime", "Serving", "Imaging", "Engine", "Tokenizer", "GGUF", "SafeTensors", "Kernels", "InferenceCore", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "Server", "Serving", "Runtime", "Engine", "Tokenizer", "InferenceCore", "Imaging", "TestSupport", "OpenAIAPI",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                "GRPCProtocols",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BenchTests",
            dependencies: [
                "Bench", "OpenAIAPI", "GRPCProtocols",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "OpsTests", dependencies: ["Ops", "GGUF", "Engine"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EngineTests",
            dependencies: ["Engine", "GGUF", "Kernels", "SafeTensors", "InferenceCore", "TestSupport"],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)

// The libFuzzer targets (scripts/fuzz.sh builds them with the fuzzer and AddressSanitizer, in .build-fuzz):
// only when AUTOGLM_FUZZ is set, so the normal build and `swift test` never see a binary without a main.
if ProcessInfo.processInfo.environment["AUTOGLM_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "AutoGLMFuzz",
        dependencies: ["GGUF", "Imaging", "InferenceCore", "SafeTensors", "Server", "Tokenizer", "GRPCProtocols",
                       .product(name: "SwiftProtobuf", package: "swift-protobuf")],
        path: "Fuzz/AutoGLMFuzz",
        swiftSettings: swiftSettings))
    package.products.append(.executable(name: "autoglm-fuzz", targets: ["AutoGLMFuzz"]))
}
