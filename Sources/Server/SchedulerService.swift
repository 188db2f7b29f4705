public import ServiceLifecycle

/// Runs the local models for the service group: starts the loaded engines, unloads idle models
/// after the keep-alive, and on graceful shutdown (SIGTERM) stops admitting (readiness turns 503,
/// new requests get 503) and waits for every accepted request to finish before the HTTP server
/// closes; the group's drain timeout bounds the wait.
public struct SchedulerService: Service {
    public let locals: LocalModelPool

    public init(locals: LocalModelPool) {
        self.locals = locals
    }

    public func run() async throws {
        locals.start()
        // Until the shutdown signal (or cancellation): the keep-alive sweep, when there is one.
        if let keepAlive = locals.policy.keepAliveSeconds {
            let period = Duration.milliseconds(Int64(max(0.05, min(keepAlive / 4, 5)) * 1000))
            await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try? await Task.sleep(for: period)
                    locals.sweep()
                }
            }
        } else {
            try? await gracefulShutdown()
        }
        locals.beginDraining()
        await withTaskCancellationHandler {
            await locals.waitUntilIdle()
        } onCancel: {
            locals.shutdown()
        }
        locals.shutdown()
    }
}
