import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

extension ServerRoutes {
    /// `GET /admin/rollout`, `POST /admin/rollout/{model}/start|promote|abort|weight`, `POST /admin/reload`.
    func addRolloutRoutes(to admin: RouterGroup<ServerContext>) {
        let releases = registry.releases
        let reloader = reloader
        admin.get("rollout") { _, _ in Self.json(Self.rolloutStatus(releases)) }
        admin.post("rollout/{model}/start") { request, context in
            let model = try Self.rolloutModel(context, releases)
            let body = try await Self.body(request, context: context, limit: 1 << 16)
            let r = try FieldReader(body)
            guard let version = try r.string("version") else { throw APIError.invalidRequest("'version' is required: the loaded version to start as the canary.", param: "version") }
            let percent = try r.number("percent", in: 0 ... 100) ?? Double(releases.policy.steps.first ?? 5)
            try Self.change { () throws(ReleaseController.ChangeError) in try releases.startCanary(model, version: version, percent: percent) }
            context.logger.notice("canary started by an admin", metadata: ["model": .string(model), "version": .string(version)])
            return Self.json(Self.rolloutStatus(releases, only: model))
        }
        admin.post("rollout/{model}/promote") { _, context in
            let model = try Self.rolloutModel(context, releases)
            try Self.change { () throws(ReleaseController.ChangeError) in try releases.promote(model) }
            return Self.json(Self.rolloutStatus(releases, only: model))
        }
        admin.post("rollout/{model}/abort") { request, context in
            let model = try Self.rolloutModel(context, releases)
            let body = try await Self.body(request, context: context, limit: 1 << 16, emptyIsObject: true)
            let unload = try FieldReader(body).bool("unload") ?? false
            try Self.change { () throws(ReleaseController.ChangeError) in try releases.abort(model, unload: unload) }
            return Self.json(Self.rolloutStatus(releases, only: model))
        }
        admin.post("rollout/{model}/weight") { request, context in
            let model = try Self.rolloutModel(context, releases)
            let body = try await Self.body(request, context: context, limit: 1 << 16)
            guard let percent = try FieldReader(body).number("percent", in: 0 ... 100) else {
                throw APIError.invalidRequest("'percent' is required: the canary's share, 0...100.", param: "percent")
            }
            try Self.change { () throws(ReleaseController.ChangeError) in try releases.setWeight(model, percent: percent) }
            return Self.json(Self.rolloutStatus(releases, only: model))
        }
        admin.post("reload") { _, _ in
            guard let reloader else {
                throw APIError(status: .conflict, message: "This server was started without a configuration file (--config); there is nothing to reload.",
                               type: "invalid_request_error", param: nil, code: "no_config_file")
            }
            let report = await reloader.reload(trigger: "POST /admin/reload")
            return Self.json(Self.reloadJSON(report), status: HTTPResponse.Status(code: report.status))
        }
    }

    static func change(_ body: () throws(ReleaseController.ChangeError) -> Void) throws(APIError) {
        do {
            try body()
        } catch {
            switch error {
            case .unknownModel, .unknownVersion: throw .invalidRequest(error.description, param: "model")
            case .noCanary: throw APIError(status: .conflict, message: error.description, type: "invalid_request_error", param: nil, code: "no_canary")
            case .invalid: throw .invalidRequest(error.description, param: nil)
            }
        }
    }

    static func rolloutModel(_ context: ServerContext, _ releases: ReleaseController) throws(APIError) -> String {
        let name = context.parameters.get("model") ?? ""
        guard let canonical = releases.canonicalName(name) else { throw .modelNotFound(name, available: releases.names) }
        return canonical
    }

    static func reloadJSON(_ r: Reloader.Report) -> JSON {
        var fields: [(String, JSON)] = [("status", .string(r.ok ? "reloaded" : r.status == 400 ? "invalid_config" : r.status == 409 ? "busy" : "partly_applied")),
                                        ("changes", .array(r.changes.map { .string($0) })), ("warnings", .array(r.warnings.map { .string($0) })),
                                        ("errors", .array(r.errors.map { .string($0) }))]
        if !r.ok {
            // OpenAI's error shape too, for clients that only read that.
            fields.append(("error", .object([("message", .string(r.errors.joined(separator: "\n"))), ("type", .string("invalid_request_error")),
                                             ("param", .null), ("code", .string(r.status == 400 ? "invalid_config" : r.status == 409 ? "reload_in_progress" : "reload_failed"))])))
        }
        return .object(fields)
    }

    static func rolloutStatus(_ releases: ReleaseController, only: String? = nil) -> JSON {
        let models = releases.status().filter { only == nil || $0.model == only }.map { r -> JSON in
            .object([("model", .string(r.model)), ("stable", .string(r.stable)), ("canary", r.canary.map { .string($0) } ?? .null),
                     ("canary_percent", .number(r.canaryPercent)), ("last_good", .string(r.lastGood)),
                     ("versions", .array(r.versions.map { v in
                         .object([("id", .string(v.id)), ("kind", .string(v.kind)), ("role", .string(v.role)), ("percent", .number(v.percent)),
                                  ("in_flight", .int(v.inFlight)), ("window_requests", .int(v.windowRequests)),
                                  ("window_errors", .int(v.windowErrors)), ("requests", .int(v.totalRequests))])
                     }))])
        }
        let events = releases.events.filter { only == nil || $0.model == only || $0.model == "*" }.suffix(50).map { e -> JSON in
            .object([("time", .number(e.time)), ("model", .string(e.model)), ("kind", .string(e.kind)), ("version", .string(e.version)),
                     ("detail", .string(e.detail))])
        }
        return .object([("object", .string("rollout")), ("models", .array(models)), ("events", .array(Array(events)))])
    }
}

/// Keeps releases moving: promotion steps and the rollback rule every second, SIGHUP (and, with
/// rollout.watch_config, a changed file) reloads the configuration.
public struct ReleaseService: Service {
    public let releases: ReleaseController
    public let reloader: Reloader?
    public let watchConfig: Bool
    public let logger: Logger

    public init(releases: ReleaseController, reloader: Reloader?, watchConfig: Bool = false, logger: Logger) {
        self.releases = releases
        self.reloader = reloader
        self.watchConfig = watchConfig
        self.logger = logger
    }

    public func run() async throws {
        let reloader = reloader, releases = releases, logger = logger, watch = watchConfig
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if let reloader {
                    group.addTask {
                        for await _ in await UnixSignalsSequence(trapping: .sighup) {
                            let report = await reloader.reload(trigger: "SIGHUP")
                            if !report.ok {
                                logger.error("SIGHUP reload did not apply everything", metadata: ["errors": .string(report.errors.joined(separator: "; "))])
                            }
                        }
                    }
                }
                group.addTask {
                    var ticks = 0
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(1))
                        releases.tick()
                        ticks += 1
                        if watch, ticks % 2 == 0 { await reloader?.reloadIfChanged() }
                    }
                }
                await group.waitForAll()
            }
        }
    }
}
