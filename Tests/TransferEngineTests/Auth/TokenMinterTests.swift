import Testing
@testable import TransferEngine

/// Tokens minted here must also decode in PyJWT (the Python end-to-end suite covers it). By hand:
/// ```
/// python3 -c 'import jwt,sys; print(jwt.decode(sys.argv[1], "SECRET", algorithms=["HS256"],
///     audience="AUDIENCE"))' TOKEN
/// ```
/// Pass `audience=` equal to the minter's `audience`: the minter always writes `aud` (as a one-element
/// list), and PyJWT refuses a token with a non-empty `aud` when no audience is given.
struct TokenMinterTests {
    let minter = TokenMinter(
        secret: TestTokens.secret, issuer: "https://panel.example.com", audience: "https://node.example.com:8080",
        clock: TestTokens.clock)

    @Test func mintedTokenIsPanelShaped() throws {
        let token = minter.mint(scope: .fileUpload, ttl: 600, claims: [
            "server_uuid": .string(TestTokens.serverUUID), "user_uuid": .string(TestTokens.userUUID),
        ])
        let (header, claims) = try JWT.decodeVerified(token, secret: TestTokens.secret)
        let now = Double(TestTokens.now)
        #expect(claims["iss"] == "https://panel.example.com")
        // One audience is a plain string, as the panel's JWT library writes it.
        #expect(claims["aud"] == "https://node.example.com:8080")
        #expect(claims["iat"] == .number(now))
        #expect(claims["nbf"] == .number(now - 300))
        #expect(claims["exp"] == .number(now + 600))
        #expect(claims["scope"] == "file-upload")
        #expect(claims["server_uuid"] == .string(TestTokens.serverUUID))
        let jti = try #require(claims["jti"]?.stringValue)
        #expect(jti.count == 64 && jti.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(header["jti"] == .string(jti))
        #expect(header["alg"] == "HS256")
        #expect(header["sub"] == nil)
        let uniqueID = try #require(claims["unique_id"]?.stringValue)
        #expect(uniqueID.count == 16 && uniqueID.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) })
    }

    @Test func mintedTokenVerifiesForItsScopeOnly() throws {
        let endpointClaims: [TokenScope: [String: JSONValue]] = [
            .transfer: ["sub": .string(TestTokens.serverUUID)],
            .fileDownload: ["server_uuid": .string(TestTokens.serverUUID), "file_path": "/server.properties"],
            .backupDownload: ["server_uuid": .string(TestTokens.serverUUID), "backup_uuid": "b1"],
            .fileUpload: ["server_uuid": .string(TestTokens.serverUUID), "user_uuid": .string(TestTokens.userUUID)],
            .websocket: [
                "server_uuid": .string(TestTokens.serverUUID), "user_uuid": .string(TestTokens.userUUID),
                "permissions": ["websocket.connect"],
            ],
        ]
        let verifier = TokenVerifier(secret: TestTokens.secret, clock: TestTokens.clock)
        for scope in TokenScope.allCases {
            let token = minter.mint(scope: scope, claims: endpointClaims[scope]!)
            _ = try verifier.verify(token, for: scope)
            for other in TokenScope.allCases where other != scope {
                expectRefused("scope") { _ = try verifier.verify(token, for: other) }
            }
        }
    }

    @Test func transferTokenRepeatsSubjectInHeader() throws {
        let token = minter.mint(scope: .transfer, claims: ["sub": .string(TestTokens.serverUUID)])
        let (header, claims) = try JWT.decodeVerified(token, secret: TestTokens.secret)
        #expect(header["sub"] == .string(TestTokens.serverUUID))
        #expect(claims["sub"] == .string(TestTokens.serverUUID))
    }

    @Test func unscopedMintHasNoScopeClaim() throws {
        let token = minter.mint(scope: nil, claims: ["server_uuid": .string(TestTokens.serverUUID)])
        #expect(try JWT.decodeVerified(token, secret: TestTokens.secret).claims["scope"] == nil)
    }

    @Test func everyMintIsUnique() throws {
        let a = try JWT.decodeVerified(minter.mint(scope: .fileUpload, claims: [:]), secret: TestTokens.secret).claims
        let b = try JWT.decodeVerified(minter.mint(scope: .fileUpload, claims: [:]), secret: TestTokens.secret).claims
        #expect(a["jti"] != b["jti"])
        #expect(a["unique_id"] != b["unique_id"])
    }
}
