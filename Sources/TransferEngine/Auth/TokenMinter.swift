/// Mints tokens shaped like a Pterodactyl/Pelican panel's (`iss`, `aud`, `jti` also in the header,
/// `iat`, `nbf` = now − 5 min, `exp`, `unique_id`), plus the `scope` claim and the endpoint's claims.
/// Used by `transfer-send token`, the CLI's own pushes, and tests.
public struct TokenMinter: Sendable {
    public let secret: [UInt8]
    public var issuer: String
    public var audience: String
    public var clock: WallClock

    public init(secret: [UInt8], issuer: String = "transfer-send", audience: String = "", clock: WallClock = .system) {
        self.secret = secret
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
    }

    /// A token for `scope` living `ttl` seconds, with the endpoint's `claims` (e.g. `server_uuid`).
    public func mint(scope: TokenScope?, ttl: Int64 = 900, claims: [String: JSONValue]) -> String {
        let now = clock.now()
        let jti = SHA256Hasher.hex(of: SecureRandom.bytes(16))
        var all: [String: JSONValue] = [
            "iss": .string(issuer), "jti": .string(jti),
            "iat": .number(Double(now)), "nbf": .number(Double(now - 300)), "exp": .number(Double(now + ttl)),
            "unique_id": .string(SecureRandom.alphanumeric(16)),
        ]
        // One audience, a plain string, as the panel's JWT library writes it (the node's URL).
        all["aud"] = .string(audience)
        if let scope { all["scope"] = .string(scope.rawValue) }
        all.merge(claims) { _, new in new }
        var header: [String: JSONValue] = ["jti": .string(jti)]
        if let sub = all["sub"] { header["sub"] = sub }
        return JWT.sign(claims: all, secret: secret, headerExtras: header)
    }
}
