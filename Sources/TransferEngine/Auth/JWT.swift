#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// HS256 JSON Web Tokens (RFC 7519), the only kind panels and Wings exchange.
///
/// ```
///  base64url(header) . base64url(claims) . base64url(HMAC-SHA256(secret, header.claims))
/// ```
/// `alg` is pinned: a token whose header says anything but `HS256` (`none`, `RS256`, …) is refused
/// before its signature is even looked at, and so is one whose header has a `crit` member.
public enum JWT {
    /// Signs `claims` with `secret`. `headerExtras` go into the JOSE header (panels repeat `jti`
    /// and, for transfers, `sub` there).
    public static func sign(claims: [String: JSONValue], secret: [UInt8], headerExtras: [String: JSONValue] = [:])
        -> String
    {
        var header: [String: JSONValue] = ["typ": "JWT", "alg": "HS256"]
        header.merge(headerExtras) { current, _ in current }
        let signingInput =
            Base64URL.encode(JSONValue.object(header).serialized()) + "."
            + Base64URL.encode(JSONValue.object(claims).serialized())
        let signature = HMACSHA256.authenticationCode(key: secret, message: Array(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(signature)
    }

    /// Checks the form, `alg` and signature of `token` and returns its header and claims.
    /// Time claims and scope are the caller's (`TokenVerifier`'s) business.
    public static func decodeVerified(_ token: String, secret: [UInt8]) throws -> (
        header: [String: JSONValue], claims: [String: JSONValue]
    ) {
        guard token.utf8.count <= 16 * 1024 else { throw invalid("token is too long") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw invalid("token is not a JWT (expected three dot-separated parts)") }
        guard let headerBytes = Base64URL.decode(parts[0]), let header = try? JSONValue.parse(headerBytes).objectValue
        else { throw invalid("token header is not base64url JSON") }
        guard header["alg"]?.stringValue == "HS256" else {
            throw invalid("token algorithm must be HS256")
        }
        // RFC 7515 §4.1.11: extensions listed in `crit` must be understood, and we understand none
        // (an empty or malformed `crit` is invalid too), so any `crit` member refuses the token.
        guard header["crit"] == nil else {
            throw invalid("token header has a crit member (no JWS extensions are supported)")
        }
        guard let signature = Base64URL.decode(parts[2]) else { throw invalid("token signature is not base64url") }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        let expected = HMACSHA256.authenticationCode(key: secret, message: signingInput)
        guard HMACSHA256.constantTimeEqual(signature, expected) else { throw invalid("token signature is invalid") }
        guard let claimBytes = Base64URL.decode(parts[1]), let claims = try? JSONValue.parse(claimBytes).objectValue
        else { throw invalid("token claims are not base64url JSON") }
        return (header, claims)
    }

    /// The claims of `token` read without checking its signature, or nil when it is not three
    /// dot-separated base64url parts with a JSON object in the middle.
    ///
    /// For a client that holds a token minted elsewhere and wants to know what it is for (the
    /// server a push would land on, the file a download link names); never for deciding whether
    /// to trust the token: only `decodeVerified` does that.
    public static func unverifiedClaims(_ token: String) -> [String: JSONValue]? {
        guard token.utf8.count <= 16 * 1024 else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let bytes = Base64URL.decode(parts[1]) else { return nil }
        return try? JSONValue.parse(bytes).objectValue
    }

    static func invalid(_ message: String) -> TransferError {
        TransferError(.forbidden, .auth, message)
    }
}
