import Server
import Testing

/// `/live`'s decision, from sampled engine statistics (no clock: times are given).
@Suite("Engine liveness")
struct EngineLivenessTests {
    @Test("an idle engine is live however long it idles; steps completing keep a busy one live")
    func progress() {
        let live = EngineLiveness(stallSeconds: 60)
        #expect(live.observe(model: "m", steps: 5, pendingWork: false, now: 0) == nil)
        #expect(live.observe(model: "m", steps: 5, pendingWork: false, now: 1000) == nil)
        // Busy, and stepping between probes.
        #expect(live.observe(model: "m", steps: 6, pendingWork: true, now: 1010) == nil)
        #expect(live.observe(model: "m", steps: 9, pendingWork: true, now: 1100) == nil)
        #expect(live.observe(model: "m", steps: 40, pendingWork: true, now: 1200) == nil)
    }

    @Test("work pending and no step for longer than the bound is a stall; it clears when a step completes")
    func stall() {
        let live = EngineLiveness(stallSeconds: 60)
        #expect(live.observe(model: "m", steps: 7, pendingWork: true, now: 0) == nil)
        #expect(live.observe(model: "m", steps: 7, pendingWork: true, now: 30) == nil)   // not yet past the bound
        #expect(live.observe(model: "m", steps: 7, pendingWork: true, now: 61) == 61)
        #expect(live.observe(model: "other", steps: 7, pendingWork: true, now: 61) == nil)  // per model
        #expect(live.observe(model: "m", steps: 8, pendingWork: true, now: 70) == nil)
        #expect(live.observe(model: "m", steps: 8, pendingWork: true, now: 100) == nil)
    }

    @Test("work that arrived after an idle probe starts the clock then, not at the idle probe")
    func arrivalRestartsTheClock() {
        let live = EngineLiveness(stallSeconds: 60)
        #expect(live.observe(model: "m", steps: 3, pendingWork: false, now: 0) == nil)
        // Probes stopped for a while; work is pending now with the same step count: not a stall yet.
        #expect(live.observe(model: "m", steps: 3, pendingWork: true, now: 500) == nil)
        #expect(live.observe(model: "m", steps: 3, pendingWork: true, now: 540) == nil)
        #expect(live.observe(model: "m", steps: 3, pendingWork: true, now: 561) == 61)
        live.forget("m")
        #expect(live.observe(model: "m", steps: 3, pendingWork: true, now: 600) == nil)
    }
}
