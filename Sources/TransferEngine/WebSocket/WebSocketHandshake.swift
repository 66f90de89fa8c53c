private import COpenSSL
#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// The server side of the RFC 6455 opening handshake (§4.2).
public enum WebSocketHandshake {
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
    public static func acceptValue(forKey key: String) -> String {
        let input = Array((key + guid).utf8)
        var digest = [UInt8](repeating: 0, count: 20)
        var length: UInt32 = 0
        let context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, EVP_sha1(), nil)
        EVP_DigestUpdate(context, input, input.count)
        EVP_DigestFinal_ex(context, &digest, &length)
        EVP_MD_CTX_free(context)
        return Data(digest).base64EncodedString()
    }

    /// Checks an upgrade request; returns the accept value or a response to send instead.
    /// - Parameter allowOrigin: decides whether a browser `Origin` may connect.
    public static func validate(_ request: HTTPRequest, allowOrigin: (String) -> Bool) -> Result<String, HTTPResponseBox> {
        func fail(_ status: Int, _ message: String, _ extra: [(String, String)] = []) -> Result<String, HTTPResponseBox> {
            var response = HTTPResponse.json(status, ["error": .string(message)])
            response.headers += extra
            return .failure(HTTPResponseBox(response))
        }
        guard request.method == "GET" else { return fail(405, "websocket upgrade needs GET") }
        guard request.header("upgrade")?.lowercased() == "websocket",
            request.header("connection")?.lowercased().split(separator: ",").contains(where: { $0.trimmingSpaces() == "upgrade" }) == true
        else { return fail(426, "this endpoint needs a websocket upgrade", [("Upgrade", "websocket")]) }
        guard request.header("sec-websocket-version") == "13" else {
            return fail(426, "unsupported websocket version (13 is)", [("Sec-WebSocket-Version", "13")])
        }
        guard let key = request.header("sec-websocket-key"), let decoded = Data(base64Encoded: key), decoded.count == 16 else {
            return fail(400, "missing or invalid Sec-WebSocket-Key")
        }
        if let origin = request.header("origin"), !allowOrigin(origin) {
            return fail(403, "origin \(origin) is not allowed")
        }
        return .success(acceptValue(forKey: key))
    }
}

/// Wraps a response so it can be a `Result` failure.
public struct HTTPResponseBox: Error, Sendable {
    public let response: HTTPResponse
    public init(_ response: HTTPResponse) { self.response = response }
}
