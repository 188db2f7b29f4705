import HTTPTypes
import NIOCore
import NIOHTTPTypes
import OpenAIAPI

/// Sits between HTTP decoding and Hummingbird on each connection and deals with request bodies before a
/// handler would read them:
///
/// - A `Content-Length` over the limit gets 413 in OpenAI's error shape at once, with `Connection: close`;
///   the body is read and dropped for a bounded time so the client, still sending, sees the answer rather
///   than a reset, then the connection closes. Nothing reaches the router.
/// - `Expect: 100-continue` within the limit gets `100 Continue` at once (curl waits a second for it before
///   sending a body over 1 MB; other clients wait for it too).
/// - A chunked body that grows past the limit reaches the handler only up to one byte over it (the handler's
///   collect fails with 413); the rest is dropped and the connection closes after the response.
final class BodyGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum State {
        /// Between requests, or reading a body within the limit (`received` bytes so far).
        case passing(received: Int)
        /// The body went over the limit: its rest is dropped; the response closes the connection.
        case truncating
        /// Answered 413 before the body: everything inbound is dropped until the connection closes.
        case refused
    }

    private let limit: Int
    /// How long a refused connection keeps draining a body the client is still sending.
    private let drainTime: TimeAmount
    private var state = State.passing(received: 0)
    /// auth.audit_log: a refusal here never reaches the router (whose middleware writes the other lines), so it
    /// writes its own line, with no principal (the request is refused before anyone reads its credentials).
    private let audit: AuditLog?

    init(limit: Int, drainTime: TimeAmount = .seconds(10), audit: AuditLog? = nil) {
        self.limit = limit
        self.drainTime = drainTime
        self.audit = audit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch (state, part) {
        case (.refused, .end):
            // The client sent its whole body after all: nothing more to wait for.
            context.close(promise: nil)
        case (.refused, _), (.truncating, _):
            return
        case (.passing, .head(let head)):
            if let length = head.headerFields[.contentLength].flatMap({ Int($0) }), length > limit {
                refuse(context: context, length: length)
                if let audit {
                    // The path without its query, bounded: the line must not carry what a client chose to send.
                    let path = (head.path ?? "").split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                    audit.record(AuditEntry(requestID: nil, principal: nil, method: head.method.rawValue, route: String(decoding: path.utf8.prefix(256), as: UTF8.self),
                                            model: nil, decision: "body_too_large", status: 413, ms: 0))
                }
                return
            }
            state = .passing(received: 0)
            if let expect = head.headerFields[.expect], expect.lowercased() == "100-continue" {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
            }
            context.fireChannelRead(data)
        case (.passing(let received), .body(let buffer)):
            let total = received + buffer.readableBytes
            if total > limit {
                // One byte over the limit is enough for the handler's collect to fail with 413.
                let keep = limit + 1 - received
                context.fireChannelRead(wrapInboundOut(.body(buffer.getSlice(at: buffer.readerIndex, length: keep)!)))
                context.fireChannelRead(wrapInboundOut(.end(nil)))
                state = .truncating
            } else {
                state = .passing(received: total)
                context.fireChannelRead(data)
            }
        case (.passing, .end):
            state = .passing(received: 0)
            context.fireChannelRead(data)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .truncating = state else {
            context.write(data, promise: promise)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(var head):
            head.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            context.writeAndFlush(data, promise: promise)
            context.close(promise: nil)
        }
    }

    private func refuse(context: ChannelHandlerContext, length: Int) {
        state = .refused
        let error = APIError.bodyTooLarge(limit: limit)
        let body = ByteBuffer(string: OpenAIJSON.text(error.body))
        var head = HTTPResponse(status: .contentTooLarge)
        head.headerFields[.contentType] = "application/json"
        head.headerFields[.contentLength] = String(body.readableBytes)
        head.headerFields[.connection] = "close"
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        // Half-close: the client reads the answer and our FIN; its remaining body is read and dropped (above)
        // until it stops or the drain time passes, so closing does not reset the connection under its reply.
        let loop = context.eventLoop
        let drain = drainTime
        let channel = context.channel
        written.futureResult.whenComplete { _ in
            channel.close(mode: .output, promise: nil)
            loop.scheduleTask(in: drain) { channel.close(promise: nil) }
        }
    }
}
