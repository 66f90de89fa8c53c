import Testing
@testable import TransferEngine

struct TokenVerifierTests {
    let verifier = TokenVerifier(secret: TestTokens.secret, clock: TestTokens.clock)
    let legacyVerifier = TokenVerifier(secret: TestTokens.secret, clock: TestTokens.clock, allowUnscopedTokens: true)
    let now = TestTokens.now

    @Test func validUploadTokenAccepted() throws {
        let claims = try verifier.verify(TestTokens.sign(TestTokens.uploadClaims()), for: .fileUpload)
        #expect(claims.serverUUID == TestTokens.serverUUID)
        #expect(claims.userUUID == TestTokens.userUUID)
        #expect(claims.uniqueID == "Ab3dEf6hIj9kLm2n")
        #expect(claims.expiresAt == now + 900)
        #expect(claims.issuedAt == now)
        #expect(claims.scopes == ["file-upload"])
    }

    // MARK: exp

    /// `exp` more than the 60 s leeway in the past is refused, worded exactly as Wings words it
    /// (panel consoles fetch a new token only on this text).
    @Test(arguments: [61, 3600, 86400 * 365] as [Int64])
    func expiredBeyondLeewayRefused(secondsAgo: Int64) {
        var claims = TestTokens.uploadClaims()
        claims.merge(TestTokens.times(iat: now - 1200, nbf: now - 1500, exp: now - secondsAgo)) { _, new in new }
        expectRefused("jwt: exp claim is invalid") { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
    }

    @Test(arguments: [0, 1, 30, 59] as [Int64])
    func expiredWithinLeewayAccepted(secondsAgo: Int64) throws {
        var claims = TestTokens.uploadClaims()
        claims.merge(TestTokens.times(iat: now - 900, nbf: now - 1200, exp: now - secondsAgo)) { _, new in new }
        _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload)
    }

    @Test func missingOrNonNumericExpRefused() {
        var claims = TestTokens.uploadClaims()
        claims["exp"] = nil
        expectRefused("jwt: exp claim is invalid") { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
        claims["exp"] = "4102444800"
        expectRefused("jwt: exp claim is invalid") { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
    }

    /// The clock is injected: one token is good until `exp` + leeway and refused after.
    @Test func sameTokenAcceptedThenRefusedAsClockAdvances() throws {
        let token = TestTokens.sign(TestTokens.uploadClaims())  // exp = now + 900
        for offset: Int64 in [-60, 0, 900, 959] {
            let at = now + offset
            _ = try TokenVerifier(secret: TestTokens.secret, clock: WallClock { at }).verify(token, for: .fileUpload)
        }
        let late = now + 961
        expectRefused("jwt: exp claim is invalid") {
            _ = try TokenVerifier(secret: TestTokens.secret, clock: WallClock { late }).verify(token, for: .fileUpload)
        }
    }

    // MARK: nbf, iat

    @Test func notBeforeInTheFutureRefused() throws {
        var claims = TestTokens.uploadClaims()
        claims["nbf"] = .number(Double(now + 120))
        expectRefused("nbf") { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
        claims["nbf"] = .number(Double(now + 59))  // inside the leeway
        _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload)
        claims["nbf"] = "soon"
        expectRefused("nbf") { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
    }

    @Test func issuedInTheFutureRefused() throws {
        var claims = TestTokens.uploadClaims()
        claims["iat"] = .number(Double(now + 120))
        expectRefused("iat") { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
        claims["iat"] = .number(Double(now + 30))  // inside the leeway
        _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload)
    }

    @Test func leewayIsConfigurable() throws {
        var claims = TestTokens.uploadClaims()
        claims["exp"] = .number(Double(now - 100))
        let token = TestTokens.sign(claims)
        expectRefused("jwt: exp claim is invalid") { _ = try verifier.verify(token, for: .fileUpload) }
        _ = try TokenVerifier(secret: TestTokens.secret, clock: TestTokens.clock, leeway: 120).verify(token, for: .fileUpload)
        expectRefused("jwt: exp claim is invalid") {
            _ = try TokenVerifier(secret: TestTokens.secret, clock: TestTokens.clock, leeway: 0).verify(
                TestTokens.sign(TestTokens.uploadClaims().merging(["exp": .number(Double(now))]) { _, new in new }),
                for: .fileUpload)
        }
    }

    // MARK: scope

    @Test func websocketScopedTokenRefusedForUpload() {
        var claims = TestTokens.uploadClaims(scope: "websocket")
        claims["permissions"] = ["websocket.connect"]
        expectRefused("scope") { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
        expectRefused("scope") { _ = try legacyVerifier.verify(TestTokens.sign(claims), for: .fileUpload) }
    }

    @Test func scopeListIsSplitOnSpacesAndMatchedExactly() throws {
        _ = try verifier.verify(TestTokens.sign(TestTokens.uploadClaims(scope: "websocket file-upload")), for: .fileUpload)
        for near in ["file-uploads", "xfile-upload", "file-upload-extra", "FILE-UPLOAD", "file upload", "file_upload"] {
            expectRefused { _ = try verifier.verify(TestTokens.sign(TestTokens.uploadClaims(scope: near)), for: .fileUpload) }
        }
    }

    @Test func unscopedTokenRefusedByDefault() {
        expectRefused("scope") { _ = try verifier.verify(TestTokens.sign(TestTokens.uploadClaims(scope: nil)), for: .fileUpload) }
        // An empty or blank scope claim is no scope at all.
        expectRefused("scope") { _ = try verifier.verify(TestTokens.sign(TestTokens.uploadClaims(scope: "")), for: .fileUpload) }
        expectRefused("scope") { _ = try verifier.verify(TestTokens.sign(TestTokens.uploadClaims(scope: "  ")), for: .fileUpload) }
    }

    @Test func unscopedUploadShapedTokenAcceptedWhenAllowed() throws {
        let claims = try legacyVerifier.verify(TestTokens.sign(TestTokens.uploadClaims(scope: nil)), for: .fileUpload)
        #expect(claims.serverUUID == TestTokens.serverUUID)
        #expect(claims.scopes.isEmpty)
    }

    /// The published Wings hole: a websocket token (it has server_uuid, user_uuid and unique_id)
    /// must never pass as an upload token, even when unscoped tokens are allowed.
    @Test func unscopedWebsocketTokenRefusedForUploadEvenWhenAllowed() throws {
        let token = TestTokens.sign(TestTokens.unscopedWebsocketClaims())
        expectRefused("permissions") { _ = try legacyVerifier.verify(token, for: .fileUpload) }
        // …while it is a fine websocket token for an old panel.
        let claims = try legacyVerifier.verify(token, for: .websocket)
        #expect(claims.permissions == ["websocket.connect", "control.console"])
    }

    @Test func unscopedDownloadTokenRefusedForUploadEvenWhenAllowed() {
        var claims = TestTokens.uploadClaims(scope: nil)
        claims["file_path"] = "/server.properties"
        expectRefused("file_path") { _ = try legacyVerifier.verify(TestTokens.sign(claims), for: .fileUpload) }
    }

    // MARK: required claims

    @Test(arguments: ["server_uuid", "user_uuid", "unique_id"])
    func missingRequiredClaimRefused(claim: String) {
        var claims = TestTokens.uploadClaims()
        claims[claim] = nil
        expectRefused(claim) { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
    }

    @Test func nonStringIdentifierClaimRefused() {
        var claims = TestTokens.uploadClaims()
        claims["server_uuid"] = 42
        expectRefused("server_uuid") { _ = try verifier.verify(TestTokens.sign(claims), for: .fileUpload) }
    }

    @Test func transferTokenNeedsSubject() throws {
        var claims = TestTokens.times()
        claims["scope"] = "transfer"
        expectRefused("sub") { _ = try verifier.verify(TestTokens.sign(claims), for: .transfer) }
        claims["sub"] = .string(TestTokens.serverUUID)
        #expect(try verifier.verify(TestTokens.sign(claims), for: .transfer).subject == TestTokens.serverUUID)
    }

    /// Signature and algorithm checks come first, through `JWT`.
    @Test func badSignatureRefusedBeforeClaimChecks() {
        let token = JWT.sign(claims: TestTokens.uploadClaims(), secret: Array("some-other-node".utf8))
        expectRefused("signature") { _ = try verifier.verify(token, for: .fileUpload) }
    }

    // MARK: interoperability

    /// PyJWT's token (exp 2100-01-01) is accepted with a fixed clock and with the real one.
    @Test func acceptsPyJWTToken() throws {
        let fixed = TokenVerifier(secret: TestTokens.pyJWTSecret, clock: WallClock { 1_704_067_300 })
        let claims = try fixed.verify(TestTokens.pyJWTToken, for: .fileUpload)
        #expect(claims.serverUUID == "5e4a2f0c-6f7b-4d0e-9a51-3a3c8d2b1f00")
        #expect(claims.userUUID == "9c1f6a2e-3b4d-4e5f-8a7b-6c5d4e3f2a10")
        #expect(claims.uniqueID == "Ab3dEf6hIj9kLm2n")
        #expect(claims.tokenID == "0a4b7c1e9f")
        #expect(claims.expiresAt == 4_102_444_800)
        _ = try TokenVerifier(secret: TestTokens.pyJWTSecret).verify(TestTokens.pyJWTToken, for: .fileUpload)
        expectRefused("scope") { _ = try fixed.verify(TestTokens.pyJWTToken, for: .fileDownload) }
        // Before its nbf (minus leeway) it is not yet valid.
        expectRefused("nbf") {
            _ = try TokenVerifier(secret: TestTokens.pyJWTSecret, clock: WallClock { 1_704_066_800 })
                .verify(TestTokens.pyJWTToken, for: .fileUpload)
        }
    }
}
