import Foundation
import Testing
@testable import TransferEngine

struct JWTTests {
    @Test func signThenVerifyRoundTrip() throws {
        let claims: [String: JSONValue] = [
            "sub": "5e4a2f0c", "exp": 1_800_000_900, "ratio": .number(0.5), "admin": false, "one": 1, "zero": 0, "yes": true,
            "permissions": ["websocket.connect", "control.start"], "nested": ["k": "v", "n": 3], "none": .null,
        ]
        let token = JWT.sign(claims: claims, secret: TestTokens.secret, headerExtras: ["jti": "abc123", "sub": "5e4a2f0c"])
        #expect(token.split(separator: ".", omittingEmptySubsequences: false).count == 3)
        #expect(!token.contains("="), "JWT segments are unpadded")
        let (header, decoded) = try JWT.decodeVerified(token, secret: TestTokens.secret)
        #expect(decoded == claims)
        #expect(header == ["alg": "HS256", "typ": "JWT", "jti": "abc123", "sub": "5e4a2f0c"])
    }

    /// `headerExtras` add fields; they can never replace `alg` or `typ`.
    @Test func headerExtrasCannotChangeAlgorithm() throws {
        let token = JWT.sign(claims: ["a": 1], secret: TestTokens.secret, headerExtras: ["alg": "none", "typ": "x"])
        let (header, _) = try JWT.decodeVerified(token, secret: TestTokens.secret)
        #expect(header["alg"] == "HS256")
        #expect(header["typ"] == "JWT")
    }

    @Test func tamperedPayloadRefused() {
        let token = TestTokens.sign(TestTokens.uploadClaims())
        var parts = token.split(separator: ".").map(String.init)
        var claims = TestTokens.uploadClaims()
        claims["server_uuid"] = "00000000-0000-4000-8000-000000000000"
        parts[1] = Base64URL.encode(JSONValue.object(claims).serialized())
        expectRefused("signature") { _ = try JWT.decodeVerified(parts.joined(separator: "."), secret: TestTokens.secret) }
    }

    @Test func tamperedSignatureRefused() {
        let token = TestTokens.sign(TestTokens.uploadClaims())
        var parts = token.split(separator: ".").map(String.init)
        // Change the *first* character: the last one of a 32-byte signature also carries two
        // padding bits, so some edits to it decode to the same bytes.
        let first = parts[2].first!
        parts[2] = String(first == "A" ? "B" : "A") + parts[2].dropFirst()
        expectRefused("signature") { _ = try JWT.decodeVerified(parts.joined(separator: "."), secret: TestTokens.secret) }
        // A truncated signature is refused too.
        parts = token.split(separator: ".").map(String.init)
        parts[2] = String(parts[2].dropLast(4))
        expectRefused { _ = try JWT.decodeVerified(parts.joined(separator: "."), secret: TestTokens.secret) }
    }

    @Test func wrongSecretRefused() {
        let token = TestTokens.sign(TestTokens.uploadClaims())
        expectRefused("signature") { _ = try JWT.decodeVerified(token, secret: Array("another-node-token".utf8)) }
    }

    /// `alg: none` is refused even when the signature is a valid HMAC of the forged header and claims.
    @Test func algNoneRefusedEvenWithValidLookingSignature() {
        let claims = TestTokens.json(TestTokens.uploadClaims())
        let signed = TestTokens.forge(headerJSON: #"{"alg":"none","typ":"JWT"}"#, claimsJSON: claims)
        expectRefused("HS256") { _ = try JWT.decodeVerified(signed, secret: TestTokens.secret) }
        let unsigned = TestTokens.forge(headerJSON: #"{"alg":"none","typ":"JWT"}"#, claimsJSON: claims, signature: "")
        expectRefused("HS256") { _ = try JWT.decodeVerified(unsigned, secret: TestTokens.secret) }
        let capitalised = TestTokens.forge(headerJSON: #"{"alg":"None","typ":"JWT"}"#, claimsJSON: claims, signature: "")
        expectRefused { _ = try JWT.decodeVerified(capitalised, secret: TestTokens.secret) }
    }

    /// Only HS256 is accepted: HS512, RS256, a lowercase spelling or a missing `alg` are all refused,
    /// even with a signature that is the correct HMAC-SHA256 of the token.
    @Test(arguments: [
        #"{"alg":"HS512","typ":"JWT"}"#, #"{"alg":"RS256","typ":"JWT"}"#, #"{"alg":"hs256","typ":"JWT"}"#,
        #"{"typ":"JWT"}"#, #"{"alg":["HS256"],"typ":"JWT"}"#,
    ])
    func otherAlgorithmsRefused(header: String) {
        let token = TestTokens.forge(headerJSON: header, claimsJSON: TestTokens.json(TestTokens.uploadClaims()))
        expectRefused { _ = try JWT.decodeVerified(token, secret: TestTokens.secret) }
    }

    /// Sanity check for the forging helper: with an HS256 header, the same construction verifies.
    /// RFC 7515 §4.1.11: a `crit` header member names extensions the recipient must understand; we
    /// understand none, so every form of it (a list, empty, malformed, null) refuses a well-signed token.
    @Test(arguments: [#"["exp"]"#, #"["b64"]"#, "[]", #""exp""#, "null", #"{"x":1}"#, "[1]"])
    func critHeaderRefused(crit: String) {
        let claims = TestTokens.json(TestTokens.uploadClaims())
        let token = TestTokens.forge(headerJSON: #"{"alg":"HS256","typ":"JWT","crit":"# + crit + "}", claimsJSON: claims)
        expectRefused("crit") { _ = try JWT.decodeVerified(token, secret: TestTokens.secret) }
    }

    @Test func forgedHS256TokenVerifies() throws {
        let claims = TestTokens.uploadClaims()
        let token = TestTokens.forge(headerJSON: #"{"alg":"HS256","typ":"JWT"}"#, claimsJSON: TestTokens.json(claims))
        #expect(try JWT.decodeVerified(token, secret: TestTokens.secret).claims == claims)
    }

    /// Standard base64's `+` and `/` (and so a token re-encoded by a careless client) are refused in
    /// every segment, even when the HMAC over the exact text is right.
    @Test func standardBase64CharactersRefused() throws {
        // PyJWT's token has both '-' and '_' in its signature.
        let pyParts = TestTokens.pyJWTToken.split(separator: ".").map(String.init)
        try #require(pyParts[2].contains("-") && pyParts[2].contains("_"))
        let standardSignature = pyParts[2].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        let resigned = pyParts[0] + "." + pyParts[1] + "." + standardSignature
        expectRefused { _ = try JWT.decodeVerified(resigned, secret: TestTokens.pyJWTSecret) }

        // A payload whose standard base64 contains '+' and '/', signed correctly over that text.
        let claimsJSON = #"{"exp":1800000900,"note":"???>>>~~~"}"#
        let standard = Data(claimsJSON.utf8).base64EncodedString().replacingOccurrences(of: "=", with: "")
        try #require(standard.contains("+") || standard.contains("/"), "test payload must need + or /: \(standard)")
        let header = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let input = header + "." + standard
        let token = input + "." + Base64URL.encode(HMACSHA256.authenticationCode(key: TestTokens.secret, message: Array(input.utf8)))
        expectRefused { _ = try JWT.decodeVerified(token, secret: TestTokens.secret) }
    }

    @Test(arguments: ["", "abc", "a.b", "a.b.c.d", "..", "...", "eyJhbGciOiJIUzI1NiJ9.e30"])
    func malformedTokensRefused(token: String) {
        expectRefused { _ = try JWT.decodeVerified(token, secret: TestTokens.secret) }
    }

    @Test func oversizedTokenRefused() {
        var claims = TestTokens.uploadClaims()
        claims["padding"] = .string(String(repeating: "x", count: 20_000))
        expectRefused("too long") { _ = try JWT.decodeVerified(TestTokens.sign(claims), secret: TestTokens.secret) }
    }

    /// A token made by PyJWT (see `TestTokens.pyJWTToken`) decodes to the claims PyJWT was given.
    @Test func acceptsTokenMadeByPyJWT() throws {
        let (header, claims) = try JWT.decodeVerified(TestTokens.pyJWTToken, secret: TestTokens.pyJWTSecret)
        #expect(header == ["alg": "HS256", "typ": "JWT", "jti": "0a4b7c1e9f"])
        #expect(claims == TestTokens.pyJWTClaims)
    }

    /// Given the same sorted claims and header, `sign` reproduces PyJWT's token byte for byte
    /// (same JSON text, same base64url, same HMAC).
    @Test func signMatchesPyJWTByteForByte() {
        let token = JWT.sign(claims: TestTokens.pyJWTClaims, secret: TestTokens.pyJWTSecret, headerExtras: ["jti": "0a4b7c1e9f"])
        #expect(token == TestTokens.pyJWTToken)
    }
}
