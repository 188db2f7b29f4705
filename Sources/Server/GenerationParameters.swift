import InferenceCore
import Serving

/// The sampling and stopping fields shared by chat, completions and /generate, read and checked.
///
/// OpenAI's fields plus the extensions vLLM and llama.cpp clients send (`top_k`, `min_p`,
/// `repetition_penalty`, `ignore_eos`, `min_tokens`). Ranges are OpenAI's where it has one.
struct GenerationParameters {
    var sampling = SamplingParameters(temperature: 1)
    var maxTokens: Int?
    var stopStrings: [String] = []
    var stopTokenIDs: [Int] = []
    var ignoreEOS = false
    var minTokens = 0
    var n = 1
    var stream = false
    var includeUsage = false
    var seed: UInt64?
    var skipSpecialTokens = true

    init(_ r: FieldReader, defaultTemperature: Float = 1) throws(APIError) {
        sampling.temperature = Float(try r.number("temperature", in: 0 ... 2) ?? Double(defaultTemperature))
        sampling.topP = Float(try r.number("top_p", in: 0 ... 1) ?? 1)
        if sampling.topP == 0 { throw .invalidRequest("'top_p' must be greater than 0.", param: "top_p") }
        let topK = try r.integer("top_k", in: -1 ... 1_000_000) ?? 0
        sampling.topK = max(0, topK)
        sampling.minP = Float(try r.number("min_p", in: 0 ... 1) ?? 0)
        sampling.presencePenalty = Float(try r.number("presence_penalty", in: -2 ... 2) ?? 0)
        sampling.frequencyPenalty = Float(try r.number("frequency_penalty", in: -2 ... 2) ?? 0)
        sampling.repetitionPenalty = Float(try r.number("repetition_penalty", in: 0.01 ... 10) ?? 1)
        if let s = try r.integer("seed", in: Int.min ... Int.max) { seed = UInt64(bitPattern: Int64(s)) }
        sampling.seed = seed
        // max_completion_tokens is the newer name; either is accepted, the newer wins.
        let legacyMaxTokens = try r.integer("max_tokens", in: 1 ... 1_000_000)
        maxTokens = try r.integer("max_completion_tokens", in: 1 ... 1_000_000) ?? legacyMaxTokens
        stopStrings = try r.strings("stop", max: 16)
        if let ids = r.value("stop_token_ids") {
            guard case .array(let items) = ids else { throw .invalidRequest("'stop_token_ids' must be a list of integers.", param: "stop_token_ids") }
            for item in items {
                // Bounded before the conversion: Int(1e19) would trap.
                guard case .number(let d) = item, d == d.rounded(), d >= 0, d < 1e9 else {
                    throw .invalidRequest("'stop_token_ids' must be a list of integers.", param: "stop_token_ids")
                }
                stopTokenIDs.append(Int(d))
            }
        }
        if let bias = r.value("logit_bias"), bias != .null {
            guard case .object(let pairs) = bias else {
                throw .invalidRequest("'logit_bias' must be an object mapping token ids (as strings) to numbers from -100 to 100.", param: "logit_bias")
            }
            guard pairs.count <= 1024 else { throw .invalidRequest("'logit_bias' has \(pairs.count) entries; at most 1024 are allowed.", param: "logit_bias") }
            var table: [Int: Float] = [:]
            for (key, value) in pairs {
                guard let id = Int(key), id >= 0, String(id) == key else {
                    throw .invalidRequest("'logit_bias' keys must be token ids written as integers; '\(key.prefix(40))' is not one.", param: "logit_bias")
                }
                guard case .number(let v) = value, v.isFinite, v >= -100, v <= 100 else {
                    throw .invalidRequest("'logit_bias[\"\(key)\"]' must be a number from -100 to 100.", param: "logit_bias")
                }
                table[id] = Float(v)
            }
            if !table.isEmpty { sampling.logitBias = table }
        }
        ignoreEOS = try r.bool("ignore_eos") ?? false
        skipSpecialTokens = try r.bool("skip_special_tokens") ?? true
        minTokens = try r.integer("min_tokens", in: 0 ... 1_000_000) ?? 0
        n = try r.integer("n", in: 1 ... 16) ?? 1
        stream = try r.bool("stream") ?? false
        if let options = r.value("stream_options") {
            let o = try FieldReader(options)
            includeUsage = try o.bool("include_usage") ?? false
            if !stream { throw .invalidRequest("'stream_options' is only allowed when 'stream' is true.", param: "stream_options") }
        }
    }

    /// Token ids the request names (logit_bias, stop_token_ids) must be in the model's vocabulary.
    func checkVocabulary(_ size: Int) throws(APIError) {
        if let bad = sampling.logitBias?.keys.sorted().first(where: { $0 >= size }) {
            throw .invalidRequest("'logit_bias' names token id \(bad), outside the vocabulary (0..<\(size)).", param: "logit_bias")
        }
        if let bad = stopTokenIDs.first(where: { $0 >= size }) {
            throw .invalidRequest("'stop_token_ids' names token id \(bad), outside the vocabulary (0..<\(size)).", param: "stop_token_ids")
        }
    }

    /// The request for choice `index`: seeds differ per choice so that n > 1 gives different samples.
    func request(id: String, prompt: [Int], maxTokens: Int, logprobs: Bool, topLogprobs: Int,
                 deadline: ContinuousClock.Instant?, firstTokenDeadline: ContinuousClock.Instant? = nil,
                 promptLogprobs: Int? = nil, choice index: Int) -> GenerationRequest {
        var s = sampling
        if let seed { s.seed = seed &+ UInt64(index) }
        var request = GenerationRequest(
            id: id, promptTokens: prompt, sampling: s,
            stop: StopCondition(maxTokens: maxTokens, stopStrings: stopStrings, stopTokens: stopTokenIDs,
                                ignoreEOS: ignoreEOS, minTokens: minTokens),
            wantsLogprobs: logprobs, topLogprobs: topLogprobs, deadline: deadline, firstTokenDeadline: firstTokenDeadline)
        request.promptLogprobs = promptLogprobs
        request.skipSpecialTokens = skipSpecialTokens
        return request
    }
}
