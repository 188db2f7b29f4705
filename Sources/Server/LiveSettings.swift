import Ops

/// The settings a reload applies without touching the engines: API and admin keys, admission limits,
/// the log level (LiveLogLevel) and the rollout policy (ReleaseController.policy).
public final class LiveSettings: Sendable {
    public let keys: LiveKeys
    let admission: AdmissionLimits

    public init(apiKeys: [String], adminKeys: [String], maxConcurrent: Int?, perMinute: Int) {
        keys = LiveKeys(apiKeys: apiKeys, adminKeys: adminKeys)
        admission = AdmissionLimits(maxConcurrent: maxConcurrent, perMinute: perMinute)
    }

    public convenience init(options: ServerOptions) {
        self.init(apiKeys: options.apiKeys, adminKeys: options.adminAPIKeys, maxConcurrent: options.maxConcurrentRequests,
                  perMinute: options.requestsPerMinute)
    }

    /// Applies a configuration's keys and limits.
    public func apply(_ config: AutoGLMConfig) {
        keys.update(apiKeys: config.server.apiKeys, adminKeys: config.server.adminAPIKeys)
        admission.update(maxConcurrent: config.limits.maxConcurrentRequests, perMinute: config.limits.requestsPerMinute)
    }
}

extension RolloutPolicy {
    /// The configuration's `rollout` section.
    public init(configuration r: AutoGLMConfig.Rollout) {
        self.init(steps: r.steps, stepIntervalSeconds: r.stepIntervalSeconds, stepMinRequests: r.stepMinRequests, autoPromote: r.autoPromote,
                  onReload: OnReload(rawValue: r.onReload) ?? .switch,
                  rollback: RollbackRule(errorRate: Double(r.rollbackErrorPercent) / 100, windowSeconds: r.rollbackWindowSeconds,
                                         minRequests: r.rollbackMinRequests,
                                         p99LatencySeconds: r.rollbackP99LatencySeconds > 0 ? r.rollbackP99LatencySeconds : nil,
                                         p99FirstTokenSeconds: r.rollbackP99FirstTokenSeconds > 0 ? r.rollbackP99FirstTokenSeconds : nil,
                                         maxRestarts: r.rollbackRestarts))
    }
}

extension SelfTest {
    /// models[].self_test.
    public init(configuration prompts: [AutoGLMConfig.SelfTestPrompt]) {
        self.init(cases: prompts.map { p in
            Case(prompt: p.prompt, chat: p.chat, expect: p.expect, expectRegex: p.expectRegex, expectTokens: p.expectTokens,
                 maxTokens: p.maxTokens, maxLatencySeconds: p.maxLatencySeconds)
        })
    }
}
