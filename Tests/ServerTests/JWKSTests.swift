import Foundation
import Hummingbird
import HummingbirdTesting
import JWTKit
@testable import Server
import Synchronization
import Testing

/// auth.jwt[].jwks_url against a live JWKS endpoint on 127.0.0.1: fetched at start, cached, fetched again when a token
/// names a kid it did not have (key rotation), no more often than the refetch interval, and a start that cannot read
/// it says why.
@Suite("JWKS by URL: fetch, cache, rotation", .serialized, .timeLimit(.minutes(2)))
struct JWKSTests {
    /// A JWKS document the test changes, served at /jwks.json, counting its fetches.
    final class Endpoint: Sendable {
        let document = Mutex<String?>(nil)
        let fetches = Atomic<Int>(0)

        func application() -> some ApplicationProtocol {
            let router = Router()
            router.get("/jwks.json") { _, _ -> Response in
                self.fetches.add(1, ordering: .relaxed)
                guard let json = self.document.withLock({ $0 }) else { return Response(status: .internalServerError) }
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: json)))
            }
            return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        }
    }

    static func jwks(_ keys: [(kid: String, key: ES256PrivateKey)]) -> String {
        let entries = keys.map { k in
            let p = k.key.publicKey.parameters!
            return #"{"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":"\#(k.kid)","x":"\#(p.x)","y":"\#(p.y)"}"#
        }
        return #"{"keys":[\#(entries.joined(separator: ","))]}"#
    }

    static func token(_ key: ES256PrivateKey, kid: String, iss: String = "idp") async throws -> String {
        let keys = await JWTKeyCollection().add(ecdsa: key, kid: JWKIdentifier(string: kid))
        let exp = Int(Date().timeIntervalSince1970) + 600
        return try await keys.sign(TestClaims(iss: iss, sub: "svc", aud: ["autoglm"], exp: exp, nbf: nil, role: "user"), kid: JWKIdentifier(string: kid))
    }

    @Test("fetched once at start; a rotated key is fetched when its kid first appears; a removed key stops verifying")
    func rotation() async throws {
        let endpoint = Endpoint()
        let a = ES256PrivateKey(), b = ES256PrivateKey()
        endpoint.document.withLock { $0 = Self.jwks([("a", a)]) }
        try await endpoint.application().test(.live) { client in
            let url = "http://127.0.0.1:\(try #require(client.port))/jwks.json"
            let verifier = try await JWTVerifier.make(
                issuers: [JWTIssuer(issuer: "idp", audiences: ["autoglm"], keys: .jwksURL(url))], refetchInterval: .zero)
            #expect(endpoint.fetches.load(ordering: .relaxed) == 1)

            // Known kid: verified from the cache, no fetch.
            let principal = try await verifier.verify(try await Self.token(a, kid: "a"))
            #expect(principal.role == .user && principal.id == "jwt:idp|svc")
            _ = try await verifier.verify(try await Self.token(a, kid: "a"))
            #expect(endpoint.fetches.load(ordering: .relaxed) == 1)

            // The identity provider rotates: b is published, a withdrawn. A token with kid b makes one fetch.
            endpoint.document.withLock { $0 = Self.jwks([("b", b)]) }
            let rotated = try await verifier.verify(try await Self.token(b, kid: "b"))
            #expect(rotated.role == .user)
            #expect(endpoint.fetches.load(ordering: .relaxed) == 2)
            // a's tokens no longer verify (its key left the cache with the fetch).
            await #expect(throws: JWTVerifier.Refusal.self) { _ = try await verifier.verify(try await Self.token(a, kid: "a")) }

            // A kid nobody published: refused (bad signature), after one more fetch that found nothing new.
            let stranger = ES256PrivateKey()
            await #expect(throws: JWTVerifier.Refusal.self) { _ = try await verifier.verify(try await Self.token(stranger, kid: "z")) }
            #expect(endpoint.fetches.load(ordering: .relaxed) >= 3)
        }
    }

    @Test("unknown kids fetch the document at most once per refetch interval")
    func refetchIsRateLimited() async throws {
        let endpoint = Endpoint()
        let a = ES256PrivateKey()
        endpoint.document.withLock { $0 = Self.jwks([("a", a)]) }
        try await endpoint.application().test(.live) { client in
            let url = "http://127.0.0.1:\(try #require(client.port))/jwks.json"
            let verifier = try await JWTVerifier.make(issuers: [JWTIssuer(issuer: "idp", audiences: ["autoglm"], keys: .jwksURL(url))])
            for i in 0 ..< 20 {
                await #expect(throws: JWTVerifier.Refusal.self) {
                    _ = try await verifier.verify(try await Self.token(ES256PrivateKey(), kid: "made-up-\(i)"))
                }
            }
            // Within 30 s of the start fetch: none of the 20 made-up kids fetched again.
            #expect(endpoint.fetches.load(ordering: .relaxed) == 1)
            _ = try await verifier.verify(try await Self.token(a, kid: "a"))
        }
    }

    @Test("a JWKS URL that answers an error stops the start with a message naming the URL and the key")
    func unreadableAtStart() async throws {
        let endpoint = Endpoint()  // no document: 500
        try await endpoint.application().test(.live) { client in
            let url = "http://127.0.0.1:\(try #require(client.port))/jwks.json"
            do {
                _ = try await JWTVerifier.make(issuers: [JWTIssuer(issuer: "idp", audiences: ["autoglm"], keys: .jwksURL(url))])
                Issue.record("a verifier was made without its keys")
            } catch {
                #expect("\(error)".contains(url) && "\(error)".contains("500") && "\(error)".contains("auth.jwt[].jwks_url"), "\(error)")
            }
        }
    }
}
