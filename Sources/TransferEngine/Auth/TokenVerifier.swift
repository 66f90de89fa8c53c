/// Verified claims of a token, with typed access to the ones endpoints use.
public struct TokenClaims: Sendable {
    public let raw: [String: JSONValue]
    public init(raw: [String: JSONValue]) { self.raw = raw }

    public func string(_ name: String) -> String? { raw[name]?.stringValue }
    public var subject: String? { string("sub") }
    public var serverUUID: String? { string("server_uuid") }
    public var userUUID: String? { string("user_uuid") }
    public var uniqueID: String? { string("unique_id") }
    public var filePath: String? { string("file_path") }
    public var backupUUID: String? { string("backup_uuid") }
    public var tokenID: String? { string("jti") }
    public var expiresAt: Int64? { raw["exp"]?.numberValue.map { Int64($0) } }
    public var issuedAt: Int64? { raw["iat"]?.numberValue.map { Int64($0) } }
    public var permissions: [String] { raw["permissions"]?.arrayValue?.compactMap(\.stringValue) ?? [] }
    /// The `scope` claim split on spaces; empty when the token has none.
    public var scopes: [String] { string("scope")?.split(separator: " ").map(String.init) ?? [] }
}

/// Verifies tokens for one endpoint: signature and `alg` (via `JWT`), `exp`/`nbf`/`iat` with a
/// small leeway, the `scope` claim, and that the claim set fits the endpoint.
///
/// Wings checks only the signature and `exp`; the extra checks close the published hole where a
/// token minted for one endpoint (a websocket token) passes the claim checks of another (upload).
public struct TokenVerifier: Sendable {
    public let secret: [UInt8]
    public var clock: WallClock
    /// Allowed clock skew between panel and node, in seconds.
    public var leeway: Int64
    /// Accept tokens without a `scope` claim (panels before 2026). Their claims must still fit.
    public var allowUnscopedTokens: Bool

    public init(secret: [UInt8], clock: WallClock = .system, leeway: Int64 = 60, allowUnscopedTokens: Bool = false) {
        self.secret = secret
        self.clock = clock
        self.leeway = leeway
        self.allowUnscopedTokens = allowUnscopedTokens
    }

    /// The verified claims, or a `.forbidden` error whose message says which check failed.
    public func verify(_ token: String, for scope: TokenScope) throws -> TokenClaims {
        let (_, raw) = try JWT.decodeVerified(token, secret: secret)
        let claims = TokenClaims(raw: raw)
        let now = clock.now()
        // Wording of the two time errors follows Wings: panel consoles match on these strings.
        guard let exp = raw["exp"]?.numberValue, exp.isFinite else { throw JWT.invalid("jwt: exp claim is invalid") }
        guard Double(now - leeway) < exp else { throw JWT.invalid("jwt: exp claim is invalid") }
        if let nbf = raw["nbf"] {
            guard let value = nbf.numberValue, Double(now + leeway) >= value else {
                throw JWT.invalid("jwt: nbf claim is invalid")
            }
        }
        if let iat = raw["iat"] {
            guard let value = iat.numberValue, Double(now + leeway) >= value else {
                throw JWT.invalid("jwt: iat claim is invalid")
            }
        }
        if let scope = raw["scope"], scope.stringValue == nil {
            throw JWT.invalid("token scope claim must be a space-separated string")
        }
        let scopes = claims.scopes
        if scopes.isEmpty {
            guard allowUnscopedTokens else {
                throw JWT.invalid("token has no scope claim (set api.allow_unscoped_tokens for older panels)")
            }
            if let foreign = scope.foreignClaims.first(where: { raw[$0] != nil }) {
                throw JWT.invalid("token is not a \(scope.rawValue) token (it carries \(foreign))")
            }
        } else if !scopes.contains(scope.rawValue) {
            throw JWT.invalid("token scope does not include \(scope.rawValue)")
        }
        for name in scope.requiredClaims where raw[name] == nil {
            throw JWT.invalid("token lacks the \(name) claim")
        }
        for name in ["sub", "server_uuid", "user_uuid", "unique_id", "file_path", "backup_uuid"] {
            if let value = raw[name], value.stringValue == nil { throw JWT.invalid("token claim \(name) is not a string") }
        }
        return claims
    }
}
