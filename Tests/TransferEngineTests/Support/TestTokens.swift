import Testing
@testable import TransferEngine

/// Secrets, clocks and hand-forged tokens shared by the Auth tests.
enum TestTokens {
    static let secret = Array("test-node-token-0123456789abcdef-0123456789".utf8)
    /// A fixed "now" (2027-01-15T08:00:00Z), so time checks never depend on the real clock.
    static let now: Int64 = 1_800_000_000
    static let clock = WallClock { now }

    static let serverUUID = "5e4a2f0c-6f7b-4d0e-9a51-3a3c8d2b1f00"
    static let userUUID = "9c1f6a2e-3b4d-4e5f-8a7b-6c5d4e3f2a10"

    /// Made with PyJWT 2.15.1 (HS256):
    /// ```
    /// jwt.encode({"aud": ["https://node.example.com:8080"], "exp": 4102444800, "iat": 1704067200,
    ///   "iss": "https://panel.example.com", "jti": "0a4b7c1e9f", "nbf": 1704066900, "scope": "file-upload",
    ///   "server_uuid": "5e4a2f0c-6f7b-4d0e-9a51-3a3c8d2b1f00", "unique_id": "Ab3dEf6hIj9kLm2n",
    ///   "user_uuid": "9c1f6a2e-3b4d-4e5f-8a7b-6c5d4e3f2a10"},
    ///   "pyjwt-fixture-secret-0123456789abcdef", algorithm="HS256", headers={"jti": "0a4b7c1e9f"})
    /// ```
    /// Claims are in sorted order, so the payload JSON is byte-identical to `JSONValue.serialized()`.
    static let pyJWTToken =
        "eyJhbGciOiJIUzI1NiIsImp0aSI6IjBhNGI3YzFlOWYiLCJ0eXAiOiJKV1QifQ."
        + "eyJhdWQiOlsiaHR0cHM6Ly9ub2RlLmV4YW1wbGUuY29tOjgwODAiXSwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDQwNjcyMDAsImlz"
        + "cyI6Imh0dHBzOi8vcGFuZWwuZXhhbXBsZS5jb20iLCJqdGkiOiIwYTRiN2MxZTlmIiwibmJmIjoxNzA0MDY2OTAwLCJzY29wZSI6ImZp"
        + "bGUtdXBsb2FkIiwic2VydmVyX3V1aWQiOiI1ZTRhMmYwYy02ZjdiLTRkMGUtOWE1MS0zYTNjOGQyYjFmMDAiLCJ1bmlxdWVfaWQiOiJB"
        + "YjNkRWY2aElqOWtMbTJuIiwidXNlcl91dWlkIjoiOWMxZjZhMmUtM2I0ZC00ZTVmLThhN2ItNmM1ZDRlM2YyYTEwIn0."
        + "TAdIsOUvS6P8IPVJlyPRMbRwF-Mwar00XjQnnquOy_E"
    static let pyJWTSecret = Array("pyjwt-fixture-secret-0123456789abcdef".utf8)
    static let pyJWTClaims: [String: JSONValue] = [
        "aud": ["https://node.example.com:8080"], "exp": 4_102_444_800, "iat": 1_704_067_200,
        "iss": "https://panel.example.com", "jti": "0a4b7c1e9f", "nbf": 1_704_066_900, "scope": "file-upload",
        "server_uuid": "5e4a2f0c-6f7b-4d0e-9a51-3a3c8d2b1f00", "unique_id": "Ab3dEf6hIj9kLm2n",
        "user_uuid": "9c1f6a2e-3b4d-4e5f-8a7b-6c5d4e3f2a10",
    ]

    /// Panel-shaped time claims around `now`.
    static func times(iat: Int64 = now, nbf: Int64 = now - 300, exp: Int64 = now + 900) -> [String: JSONValue] {
        ["iat": .number(Double(iat)), "nbf": .number(Double(nbf)), "exp": .number(Double(exp))]
    }

    /// Claims of a file-upload token (as a 2026+ panel sends it, with `scope`).
    static func uploadClaims(scope: String? = "file-upload") -> [String: JSONValue] {
        var claims = times()
        claims["server_uuid"] = .string(serverUUID)
        claims["user_uuid"] = .string(userUUID)
        claims["unique_id"] = "Ab3dEf6hIj9kLm2n"
        if let scope { claims["scope"] = .string(scope) }
        return claims
    }

    /// Claims of a websocket token as an older panel mints it: no scope.
    static func unscopedWebsocketClaims() -> [String: JSONValue] {
        var claims = times()
        claims["server_uuid"] = .string(serverUUID)
        claims["user_uuid"] = .string(userUUID)
        claims["permissions"] = ["websocket.connect", "control.console"]
        claims["unique_id"] = "Zy9xWv8uTs7rQp6o"
        return claims
    }

    static func sign(_ claims: [String: JSONValue]) -> String { JWT.sign(claims: claims, secret: secret) }

    /// A token with exactly these header and payload texts and a *correct* HMAC-SHA256 signature over
    /// them (unless `signature` overrides it): what an attacker who knows the format can build.
    static func forge(headerJSON: String, claimsJSON: String, key: [UInt8] = secret, signature: String? = nil) -> String {
        let input = Base64URL.encode(Array(headerJSON.utf8)) + "." + Base64URL.encode(Array(claimsJSON.utf8))
        return input + "." + (signature ?? Base64URL.encode(HMACSHA256.authenticationCode(key: key, message: Array(input.utf8))))
    }

    /// Compact JSON text of claims.
    static func json(_ claims: [String: JSONValue]) -> String {
        String(decoding: JSONValue.object(claims).serialized(), as: UTF8.self)
    }
}

/// Expects `body` to throw a `.forbidden` TransferError from the auth stage, whose message contains
/// `fragment` when given.
func expectRefused(
    _ fragment: String? = nil, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) {
    let error = #expect(throws: TransferError.self, sourceLocation: sourceLocation) { try body() }
    guard let error else { return }
    #expect(error.code == .forbidden, "code was \(error.code): \(error.message)", sourceLocation: sourceLocation)
    #expect(error.stage == .auth, sourceLocation: sourceLocation)
    if let fragment {
        #expect(error.message.contains(fragment), "message was: \(error.message)", sourceLocation: sourceLocation)
    }
}
