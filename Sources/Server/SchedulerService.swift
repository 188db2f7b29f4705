public import Runtime
public import ServiceLifecycle

/// Runs the models' schedulers for the service group. On graceful shutdown (SIGTERM) it stops
/// admitting (readiness turns 503, new requests get 503) and waits for every accepted request to
/// finish before the HTTP server closes; the group's drain timeout bounds the wait.
public struct SchedulerService: Service {
    public let schedulers: [Scheduler]

    public init(schedulers: [Scheduler]) {
        self.schedulers = schedulers
    }

    public func run() async throws {
        for s in schedulers { s.start() }
        // Wait for the shutdown signal (or cancellation), then drain.
        try? await gracefulShutdown()
        for s in schedulers { s.beginDraining() }
        await withTaskCancellationHandler {
            for s in schedulers { await s.waitUntilIdle() }
        } onCancel: {
            for s in schedulers { s.shutdown() }
        }
        for s in schedulers { s.shutdown() }
    }
}
