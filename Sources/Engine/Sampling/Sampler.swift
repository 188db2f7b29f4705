public import InferenceCore

/// Picks the next token from logits.
///
/// Order (vLLM's, which OpenAI clients expect): penalties on the raw logits, then temperature, then
/// top-k, top-p and min-p filtering of the scaled distribution, then a seeded draw. Temperature 0 is
/// greedy: the highest penalized logit, ties to the lowest id.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var generator: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        generator = SeededGenerator(seed: parameters.seed ?? UInt64.random(in: 0 ... UInt64.max))
    }

    /// Chooses a token. `prompt` and `generated` are the sequence so far: the repetition penalty looks
    /// at both (within the window), presence and frequency penalties at the generated tokens only.
    public mutating func sample(_ logits: ArraySlice<Float>, prompt: [Int] = [], generated: [Int] = []) -> SampledToken {
        var scores = Array(logits)
        applyPenalties(&scores, prompt: prompt, generated: generated)
        let id: Int
        if parameters.temperature <= 0 {
            id = Self.argmax(scores)
        } else {
            id = draw(from: scores)
        }
        return SampledToken(id: id, logprob: Self.logSoftmax(logits, at: id))
    }

    func applyPenalties(_ scores: inout [Float], prompt: [Int], generated: [Int]) {
        let p = parameters
        if p.repetitionPenalty != 1 {
            let all = prompt + generated
            let window = p.penaltyWindow > 0 ? all.suffix(p.penaltyWindow) : all[...]
            for id in Set(window) where id >= 0 && id < scores.count {
                scores[id] = scores[id] > 0 ? scores[id] / p.repetitionPenalty : scores[id] * p.repetitionPenalty
            }
        }
        if p.presencePenalty != 0 || p.frequencyPenalty != 0 {
            var counts: [Int: Int] = [:]
            for id in generated { counts[id, default: 0] += 1 }
            for (id, count) in counts where id >= 0 && id < scores.count {
                scores[id] -= p.presencePenalty + p.frequencyPenalty * Float(count)
            }
        }
        if let bias = p.logitBias {
            for (id, b) in bias where id >= 0 && id < scores.count { scores[id] += b }
        }
    }

    private mutating func draw(from scores: [Float]) -> Int {
        let p = parameters
        let maximum = scores.max() ?? 0
        // Candidates whose probability is within e^-30 of the best: the rest cannot matter to any
        // filter below (together they hold < vocabulary * 1e-13 of the mass).
        let floor = maximum - 30 * p.temperature
        var candidates: [(id: Int, weight: Float)] = []
        candidates.reserveCapacity(scores.count)
        for (id, s) in scores.enumerated() where s >= floor {
            candidates.append((id, ((s - maximum) / p.temperature).exp))
        }
        // Sorting 150k candidates per token would dominate decode time, so each filter does only
        // the work it needs: top-k keeps the k best by insertion into a short sorted list, top-p sorts
        // what is left, min-p and the draw itself need no order at all.
        let byWeight: ((id: Int, weight: Float), (id: Int, weight: Float)) -> Bool = {
            $0.weight > $1.weight || ($0.weight == $1.weight && $0.id < $1.id)
        }
        var sorted = false
        if p.topK > 0 && candidates.count > p.topK {
            var best: [(id: Int, weight: Float)] = []
            best.reserveCapacity(p.topK + 1)
            for c in candidates where best.count < p.topK || byWeight(c, best[best.count - 1]) {
                var lo = 0, hi = best.count
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if byWeight(best[mid], c) { lo = mid + 1 } else { hi = mid }
                }
                best.insert(c, at: lo)
                if best.count > p.topK { best.removeLast() }
            }
            candidates = best
            sorted = true
        }
        if p.topP < 1 {
            if !sorted { candidates.sort(by: byWeight) }
            let total = candidates.reduce(0) { $0 + $1.weight }
            var cumulative: Float = 0
            var keep = candidates.count
            for (i, c) in candidates.enumerated() {
                cumulative += c.weight
                if cumulative >= p.topP * total { keep = i + 1; break }
            }
            candidates.removeLast(candidates.count - keep)
        }
        if p.minP > 0 {
            // The best candidate has weight exp(0) = 1.
            candidates.removeAll { $0.weight < p.minP }
        }
        let total = candidates.reduce(0) { $0 + $1.weight }
        var target = generator.nextUnitFloat() * total
        for c in candidates {
            target -= c.weight
            if target < 0 { return c.id }
        }
        return candidates.last?.id ?? Self.argmax(scores)
    }

    /// Index of the largest value, the lowest index among equals.
    public static func argmax(_ values: ArraySlice<Float>) -> Int {
        values.withUnsafeBufferPointer { buffer in
            var best = 0
            var bestValue = -Float.infinity
            for i in 0 ..< buffer.count where buffer[i] > bestValue {
                bestValue = buffer[i]
                best = i
            }
            return best
        }
    }

    public static func argmax(_ values: [Float]) -> Int { argmax(values[...]) }

    /// log softmax(logits)[id], computed stably.
    public static func logSoftmax(_ logits: ArraySlice<Float>, at id: Int) -> Float {
        let maximum = logits.max() ?? 0
        var sum: Float = 0
        for v in logits { sum += (v - maximum).exp }
        return logits[logits.startIndex + id] - maximum - sum.logarithm
    }

    /// The `count` most likely ids with their log-probabilities, best first.
    public static func topLogprobs(_ logits: ArraySlice<Float>, count: Int) -> [SampledToken] {
        guard count > 0 else { return [] }
        let maximum = logits.max() ?? 0
        var sum: Float = 0
        for v in logits { sum += (v - maximum).exp }
        let logSum = sum.logarithm
        var best: [(Int, Float)] = []
        for (i, v) in logits.enumerated() {
            if best.count < count || v > best[best.count - 1].1 {
                let at = best.firstIndex { v > $0.1 } ?? best.count
                best.insert((i, v), at: at)
                if best.count > count { best.removeLast() }
            }
        }
        return best.map { SampledToken(id: $0.0, logprob: $0.1 - maximum - logSum) }
    }
}
