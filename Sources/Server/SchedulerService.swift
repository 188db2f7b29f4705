public import Serving
public import ServiceLifecycle

/// Runs the local models' backends for the service group. On graceful shutdown (SIGTERM) it stops
/// admitting (readiness turns 503, new requests get 503) and waits for every accepted request to
/// finish before the HTTP server closes; the group's drain timeout bounds the wait.
public struct SchedulerService: Service {
    public let backends: [any InferenceBackend]

    public init(backends: [any InferenceBackend]) {
        self.backends = backends
    }

    public func run() async throws {
        for b in backends { b.start() }
        // Wait for the shutdown signal (or cancellation), then drain.
        try? await gracefulShutdown()
        for b in backends { b.beginDraining() }
        await withTaskCancellationHandler {
            for b in backends { await b.waitUntilIdle() }
        } onCancel: {
            for b in backends { b.shutdown() }
        }
        for b in backends { b.shutdown() }
    }
}
