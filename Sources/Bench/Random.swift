import Foundation

/// SplitMix64: a small, fast generator whose sequence depends only on the seed, so that arrival
/// schedules and synthetic prompts are reproducible across runs and platforms.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// Open-loop arrivals: a Poisson process, so inter-arrival gaps are exponential with mean 1/rate.
public enum PoissonSchedule {
    /// Send offsets in seconds from the start of the level, nondecreasing, the first one at 0.
    /// An infinite rate sends everything at once.
    public static func offsets(count: Int, rate: Double, seed: UInt64) -> [Double] {
        guard count > 0 else { return [] }
        guard rate.isFinite, rate > 0 else { return Array(repeating: 0, count: count) }
        var rng = SeededRandom(seed: seed)
        var offsets = [0.0]
        offsets.reserveCapacity(count)
        var t = 0.0
        for _ in 1 ..< count {
            t += -log1p(-rng.nextUnit()) / rate  // inverse CDF of Exp(rate); 1 - U is in (0, 1]
            offsets.append(t)
        }
        return offsets
    }
}
