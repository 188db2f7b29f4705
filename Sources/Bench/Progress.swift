import Foundation
import Synchronization

/// Progress on stderr: a redrawn bar when stderr is a terminal, otherwise one line per level.
public final class ProgressReporter: Sendable {
    private struct State {
        var label = ""
        var total = 0
        var done = 0
        var failed = 0
        var started = ContinuousClock.now
        var lastDraw: ContinuousClock.Instant?
    }

    private let state = Mutex(State())
    private let interactive: Bool
    private let write: @Sendable (String) -> Void

    /// `interactive` nil: decide by whether stderr is a terminal.
    public init(interactive: Bool? = nil, write: (@Sendable (String) -> Void)? = nil) {
        self.interactive = interactive ?? (isatty(STDERR_FILENO) == 1)
        self.write = write ?? { text in FileHandle.standardError.write(Data(text.utf8)) }
    }

    func begin(label: String, total: Int) {
        state.withLock { $0 = State(label: label, total: total, started: .now) }
        if interactive { draw(force: true) }
    }

    func requestFinished(failed: Bool) {
        state.withLock {
            $0.done += 1
            if failed { $0.failed += 1 }
        }
        if interactive { draw(force: false) }
    }

    func end(label: String, completed: Int, failed: Int) {
        let elapsed = state.withLock { ContinuousClock.now - $0.started }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let line = String(format: "%@: %d completed, %d failed in %.1f s", label, completed, failed, seconds)
        write(interactive ? "\r\u{1B}[2K" + line + "\n" : line + "\n")
    }

    private func draw(force: Bool) {
        let text: String? = state.withLock { s in
            let now = ContinuousClock.now
            if !force, s.done < s.total, let last = s.lastDraw, now - last < .milliseconds(100) { return nil }
            s.lastDraw = now
            let width = 30
            let filled = s.total > 0 ? min(width, s.done * width / s.total) : 0
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let elapsed = now - s.started
            return "\r\u{1B}[2K\(s.label) [\(bar)] \(s.done)/\(s.total)" + (s.failed > 0 ? " failed \(s.failed)" : "")
                + " \(elapsed.components.seconds)s"
        }
        if let text { write(text) }
    }
}
