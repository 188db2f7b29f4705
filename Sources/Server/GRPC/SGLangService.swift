import Foundation
import GRPCCore
import GRPCProtocols
import InferenceCore
import Serving
import SwiftProtobuf

typealias SGL = Sglang_Grpc_Scheduler_SglangScheduler

/// SGLang's scheduler protocol (`sglang.grpc.scheduler.SglangScheduler`), as the SGLang model gateway and
/// smg-grpc-proto's clients speak it to a worker: token ids in, token ids out (the router tokenizes and
/// detokenizes). A worker serves one model: every call goes to the default (first) model, at the version a
/// request to it would get over HTTP.
///
/// Sampling fields become the same request the HTTP API reads (CompletionsAPI), so they are checked and honoured
/// the same. Proto3 cannot tell "0" from "not set", so, as SGLang's own servicer does, zero means the default
/// where zero is not a meaningful value: top_p 0 -> 1, top_k 0 or -1 -> off, repetition_penalty 0 -> 1, n 0 -> 1.
/// temperature 0 is greedy. max_new_tokens unset: as much as the context leaves (capped by limits.max_tokens).
struct SGLangService: SGL.SimpleServiceProtocol {
    let endpoint: GRPCEndpoint

    func generate(request: Sglang_Grpc_Scheduler_GenerateRequest, response: RPCWriter<Sglang_Grpc_Scheduler_GenerateResponse>,
                  context: GRPCCore.ServerContext) async throws {
        let body = try Self.body(request)
        try await endpoint.withLocalModel(nil) { model, _ in
            let job = try endpoint.api.completionJob(body, model: model)
            let choices = try endpoint.submit(job)
            let ids = choices.map(\.requestID)
            let token = endpoint.active.add(request.requestID, backend: model.backend, requestIDs: ids)
            defer { endpoint.active.remove(request.requestID, token: token) }
            do {
                try await withTaskCancellationHandler {
                    try await stream(request, job: job, choices: choices, to: response)
                } onCancel: {
                    // A client that goes away (or cancels) frees its sequences at the next engine step.
                    for id in ids { model.backend.cancel(id) }
                }
            } catch {
                for id in ids { model.backend.cancel(id) }
                throw error
            }
        }
    }

    /// Per choice: chunks of new token ids as they come (when the request streams), then its completion.
    private func stream(_ request: Sglang_Grpc_Scheduler_GenerateRequest, job: CompletionsAPI.Job, choices: [CompletionsAPI.Choice],
                        to writer: RPCWriter<Sglang_Grpc_Scheduler_GenerateResponse>) async throws {
        struct Progress {
            var ids: [UInt32] = []
            var logprobs = Sglang_Grpc_Scheduler_OutputLogProbs()
        }
        var progress = [Progress](repeating: Progress(), count: choices.count)
        var usage = (prompt: 0, completion: 0)
        let wantsLogprobs = job.logprobs
        func handle(_ slot: Int, _ event: GenerationEvent) async throws {
            let promptTokens = UInt32(choices[slot].prompt.tokens.count)
            let index = UInt32(choices[slot].index)
            switch event {
            case .token(let t):
                progress[slot].ids.append(UInt32(t.id))
                let step = wantsLogprobs ? Self.logprobs(t) : nil
                if let step {
                    progress[slot].logprobs.tokenLogprobs += step.tokenLogprobs
                    progress[slot].logprobs.tokenIds += step.tokenIds
                    progress[slot].logprobs.topLogprobs += step.topLogprobs
                }
                guard request.stream else { return }
                var chunk = Sglang_Grpc_Scheduler_GenerateStreamChunk()
                chunk.tokenIds = [UInt32(t.id)]
                chunk.promptTokens = promptTokens
                chunk.completionTokens = UInt32(progress[slot].ids.count)
                chunk.index = index
                if let step { chunk.outputLogprobs = step }
                var message = Sglang_Grpc_Scheduler_GenerateResponse()
                message.requestID = request.requestID
                message.response = .chunk(chunk)
                try await writer.write(message)
            case .finished(let outcome):
                var complete = Sglang_Grpc_Scheduler_GenerateComplete()
                complete.outputIds = progress[slot].ids
                complete.finishReason = CompletionsAPI.finishReason(outcome.finishReason)
                complete.promptTokens = UInt32(outcome.promptTokens)
                complete.completionTokens = UInt32(outcome.completionTokens)
                complete.cachedTokens = UInt32(outcome.cachedPromptTokens)
                complete.index = index
                if wantsLogprobs { complete.outputLogprobs = progress[slot].logprobs }
                usage.completion += outcome.completionTokens
                if choices[slot].index % job.parameters.n == 0 { usage.prompt += outcome.promptTokens }
                var message = Sglang_Grpc_Scheduler_GenerateResponse()
                message.requestID = request.requestID
                message.response = .complete(complete)
                try await writer.write(message)
            case .failed(let error):
                throw CompletionsAPI.apiError(error)
            }
        }
        if choices.count == 1 {
            // One choice: its own stream, without the merge's extra hop per token.
            for await event in choices[0].events { try await handle(0, event) }
        } else {
            for await (slot, event) in CompletionsAPI.merge(choices) { try await handle(slot, event) }
        }
        endpoint.settle(prompt: usage.prompt, completion: usage.completion)
        try Task.checkCancellation()
    }

    static func logprobs(_ t: GeneratedToken) -> Sglang_Grpc_Scheduler_OutputLogProbs {
        var out = Sglang_Grpc_Scheduler_OutputLogProbs()
        out.tokenLogprobs = [t.logprob ?? 0]
        out.tokenIds = [UInt32(t.id)]
        var top = Sglang_Grpc_Scheduler_TopLogProbs()
        top.values = t.topLogprobs.map(\.logprob)
        top.tokenIds = t.topLogprobs.map { UInt32($0.id) }
        out.topLogprobs = [top]
        return out
    }

    /// The request as the body of an HTTP completion with token ids: what CompletionsAPI reads.
    static func body(_ r: Sglang_Grpc_Scheduler_GenerateRequest) throws -> JSON {
        guard r.hasTokenized, !r.tokenized.inputIds.isEmpty else {
            throw RPCError.invalidArgument("'tokenized.input_ids' is required and must not be empty: this protocol takes token ids (the router tokenizes).",
                                           field: "tokenized.input_ids")
        }
        if r.hasMmInputs {
            let m = r.mmInputs
            if !(m.imageUrls.isEmpty && m.videoUrls.isEmpty && m.audioUrls.isEmpty && m.imageData.isEmpty && m.videoData.isEmpty && m.audioData.isEmpty) {
                throw RPCError.invalidArgument("'mm_inputs': images, video and audio are not taken over gRPC; send images to /v1/chat/completions.",
                                               field: "mm_inputs")
            }
        }
        if !r.inputEmbeds.isEmpty {
            throw RPCError.invalidArgument("'input_embeds' is not supported: send token ids.", field: "input_embeds")
        }
        if !r.loraID.isEmpty {
            throw RPCError.invalidArgument("'lora_id' \(r.loraID): this server has no LoRA adapters.", field: "lora_id")
        }
        if r.returnHiddenStates {
            throw RPCError.invalidArgument("'return_hidden_states' is not supported.", field: "return_hidden_states")
        }
        if !r.tokenIdsLogprob.isEmpty {
            throw RPCError.invalidArgument("'token_ids_logprob' is not supported: use return_logprob with top_logprobs_num.", field: "token_ids_logprob")
        }
        let p = r.samplingParams
        if let constraint = p.constraint {
            let name: String
            switch constraint {
            case .regex: name = "regex"
            case .jsonSchema: name = "json_schema"
            case .ebnfGrammar: name = "ebnf_grammar"
            case .structuralTag: name = "structural_tag"
            }
            throw RPCError.invalidArgument("'sampling_params.\(name)': constrained decoding is not supported by this server.",
                                           field: "sampling_params.\(name)")
        }
        var pairs: [(String, JSON)] = [
            ("prompt", .array(r.tokenized.inputIds.map { .number(Double($0)) })),
            ("temperature", .number(Double(p.temperature))),
        ]
        if p.topP != 0 { pairs.append(("top_p", .number(Double(p.topP)))) }
        if p.topK > 0 { pairs.append(("top_k", .number(Double(p.topK)))) } else if p.topK < -1 {
            throw RPCError.invalidArgument("'sampling_params.top_k' must be -1 (off) or positive, not \(p.topK).", field: "sampling_params.top_k")
        }
        if p.minP != 0 { pairs.append(("min_p", .number(Double(p.minP)))) }
        if p.frequencyPenalty != 0 { pairs.append(("frequency_penalty", .number(Double(p.frequencyPenalty)))) }
        if p.presencePenalty != 0 { pairs.append(("presence_penalty", .number(Double(p.presencePenalty)))) }
        if p.repetitionPenalty != 0 { pairs.append(("repetition_penalty", .number(Double(p.repetitionPenalty)))) }
        if p.hasMaxNewTokens {
            guard p.maxNewTokens > 0 else {
                throw RPCError.invalidArgument("'sampling_params.max_new_tokens' must be at least 1.", field: "sampling_params.max_new_tokens")
            }
            pairs.append(("max_tokens", .number(Double(p.maxNewTokens))))
        }
        if !p.stop.isEmpty { pairs.append(("stop", .array(p.stop.map { .string($0) }))) }
        if !p.stopTokenIds.isEmpty { pairs.append(("stop_token_ids", .array(p.stopTokenIds.map { .number(Double($0)) }))) }
        if p.n > 1 { pairs.append(("n", .number(Double(p.n)))) }
        if p.minNewTokens > 0 { pairs.append(("min_tokens", .number(Double(p.minNewTokens)))) }
        if p.ignoreEos { pairs.append(("ignore_eos", .bool(true))) }
        if !p.logitBias.isEmpty {
            pairs.append(("logit_bias", .object(p.logitBias.sorted { $0.key < $1.key }.map { ($0.key, .number(Double($0.value))) })))
        }
        if p.hasCustomParams {
            for (key, value) in p.customParams.fields.sorted(by: { $0.key < $1.key }) {
                guard key == "seed" || key == "sampling_seed", case .numberValue(let seed)? = value.kind else {
                    throw RPCError.invalidArgument("'sampling_params.custom_params.\(key)' is not supported (custom_params takes 'seed').",
                                                   field: "sampling_params.custom_params.\(key)")
                }
                pairs.append(("seed", .number(seed)))
            }
        }
        if r.returnLogprob {
            guard r.topLogprobsNum >= 0, r.topLogprobsNum <= 20 else {
                throw RPCError.invalidArgument("'top_logprobs_num' must be from 0 to 20.", field: "top_logprobs_num")
            }
            pairs.append(("logprobs", .number(Double(r.topLogprobsNum))))
        }
        return .object(pairs)
    }

    func healthCheck(request: Sglang_Grpc_Scheduler_HealthCheckRequest, context: GRPCCore.ServerContext) async throws -> Sglang_Grpc_Scheduler_HealthCheckResponse {
        var out = Sglang_Grpc_Scheduler_HealthCheckResponse()
        let registry = endpoint.registry
        out.healthy = registry.isReady
        if registry.isReady {
            out.message = "ready"
        } else if !registry.locals.isAcceptingRequests {
            out.message = "draining: the server is shutting down"
        } else {
            out.message = "not ready: a pinned model is still loading"
        }
        return out
    }

    func abort(request: Sglang_Grpc_Scheduler_AbortRequest, context: GRPCCore.ServerContext) async throws -> Sglang_Grpc_Scheduler_AbortResponse {
        var out = Sglang_Grpc_Scheduler_AbortResponse()
        out.success = endpoint.active.abort(request.requestID)
        out.message = out.success ? "request \(request.requestID) aborted" : "no request \(request.requestID) is in flight"
        return out
    }

    func getModelInfo(request: Sglang_Grpc_Scheduler_GetModelInfoRequest, context: GRPCCore.ServerContext) async throws -> Sglang_Grpc_Scheduler_GetModelInfoResponse {
        try await endpoint.withLocalModel(nil) { model, version in
            var out = Sglang_Grpc_Scheduler_GetModelInfoResponse()
            out.modelPath = model.name
            out.tokenizerPath = model.name
            out.servedModelName = model.name
            out.isGeneration = true
            out.weightVersion = version.id
            out.maxContextLength = Int32(clamping: model.contextLength)
            out.maxReqInputLen = Int32(clamping: model.maxPromptTokens)
            out.vocabSize = Int32(clamping: model.backend.vocabularySize)
            out.supportsVision = model.backend.acceptsImages
            out.modelType = "autoglm"
            return out
        }
    }

    func getServerInfo(request: Sglang_Grpc_Scheduler_GetServerInfoRequest, context: GRPCCore.ServerContext) async throws -> Sglang_Grpc_Scheduler_GetServerInfoResponse {
        try await endpoint.withLocalModel(nil) { model, version in
            let s = model.backend.statistics
            var out = Sglang_Grpc_Scheduler_GetServerInfoResponse()
            out.activeRequests = Int32(clamping: s.running + s.waiting)
            out.isPaused = !model.backend.isAcceptingRequests
            out.uptimeSeconds = Date().timeIntervalSince(endpoint.started)
            out.sglangVersion = "autoglm"
            out.serverType = "grpc"
            out.startTime = Google_Protobuf_Timestamp(date: endpoint.started)
            var args = Google_Protobuf_Struct()
            args.fields["served_model_name"] = Google_Protobuf_Value(stringValue: model.name)
            args.fields["model_version"] = Google_Protobuf_Value(stringValue: version.id)
            args.fields["context_length"] = Google_Protobuf_Value(numberValue: Double(model.contextLength))
            args.fields["max_new_tokens_limit"] = Google_Protobuf_Value(numberValue: Double(model.maxTokensLimit))
            out.serverArgs = args
            var info = Google_Protobuf_Struct()
            info.fields["kv_blocks_total"] = Google_Protobuf_Value(numberValue: Double(s.kvBlocksTotal))
            info.fields["engine_steps"] = Google_Protobuf_Value(numberValue: Double(s.steps))
            out.schedulerInfo = info
            return out
        }
    }

    func getLoads(request: Sglang_Grpc_Scheduler_GetLoadsRequest, context: GRPCCore.ServerContext) async throws -> Sglang_Grpc_Scheduler_GetLoadsResponse {
        if request.hasDpRank, request.dpRank != 0 {
            throw RPCError.invalidArgument("'dp_rank' \(request.dpRank): this server has one rank, 0.", field: "dp_rank")
        }
        return try await endpoint.withLocalModel(nil) { model, _ in
            let s = model.backend.statistics
            var load = Sglang_Grpc_Scheduler_SchedulerLoad()
            load.numRunningReqs = Int32(clamping: s.running)
            load.numWaitingReqs = Int32(clamping: s.waiting)
            load.numTotalReqs = Int32(clamping: s.running + s.waiting)
            let usage = s.kvBlocksTotal > 0 ? Double(s.kvBlocksUsed) / Double(s.kvBlocksTotal) : 0
            load.tokenUsage = usage
            load.utilization = usage
            load.cacheHitRate = s.prefixQueriedTokens > 0 ? Double(s.prefixHitTokens) / Double(s.prefixQueriedTokens) : 0
            var queues = Sglang_Grpc_Scheduler_QueueMetrics()
            queues.waiting = Int32(clamping: s.waiting)
            load.queues = queues
            var out = Sglang_Grpc_Scheduler_GetLoadsResponse()
            out.timestamp = ISO8601DateFormatter().string(from: Date())
            out.version = "autoglm"
            out.dpRankCount = 1
            out.loads = [load]
            var aggregate = Sglang_Grpc_Scheduler_AggregateMetrics()
            aggregate.totalRunningReqs = load.numRunningReqs
            aggregate.totalWaitingReqs = load.numWaitingReqs
            aggregate.totalReqs = load.numTotalReqs
            aggregate.avgTokenUsage = usage
            aggregate.avgUtilization = usage
            out.aggregate = aggregate
            return out
        }
    }
}
