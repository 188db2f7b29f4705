import Foundation
import Synchronization

/// Whether each local engine loop is making progress, for `/live` (a Kubernetes liveness probe): an engine with
/// requests running or waiting must complete an engine step within `stallSeconds`; an idle one is live. The HTTP
/// thread answering is not enough: a wedged engine loop with a healthy HTTP server would otherwise never restart.
///
/// Probes are sampled, not continuous: a model counts as stalled only when two probes at least `stallSeconds` apart
/// both saw work pending and the same number of completed steps (work that arrived since the last probe restarts
/// the clock).
public final class EngineLiveness: Sendable {
    public let stallSeconds: Double
    private struct Seen { var steps: Int; var hadWork: Bool; var since: Double }
    private let seen = Mutex<[String: Seen]>([:])

    public init(stallSeconds: Double = 300) {
        self.stallSeconds = stallSeconds
    }

    /// Records one observation of `model` at `now` (seconds, any monotonic origin); returns how long it has been
    /// stalled when that exceeds `stallSeconds`, else nil.
    public func observe(model: String, steps: Int, pendingWork: Bool, now: Double) -> Double? {
        seen.withLock { table in
            guard let last = table[model], last.steps == steps, last.hadWork, pendingWork else {
                table[model] = Seen(steps: steps, hadWork: pendingWork, since: now)
                return nil
            }
            let stalled = now - last.since
            return stalled > stallSeconds ? stalled : nil
        }
    }

    /// Forgets a model (unloaded).
    public func forget(_ model: String) { _ = seen.withLock { $0.removeValue(forKey: model) } }
}
