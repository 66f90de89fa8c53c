/// Checks, without sending any data, that a URL is a node and that it accepts a node token: what
/// `evacuate --dry-run` rehearses, and what a real `evacuate` requires before its first push.
///
/// ```
///  GET <base>/api/system  (Authorization: Bearer <node token>)
///     200 + a JSON object with "version" ─▶ Node (ours when it announces "transfer", else Wings)
///     401 / 403                          ─▶ .forbidden  (the token is wrong: exit 77)
///     no connection / timeout            ─▶ .network / .timeout (exit 69)
///     404, or a 200 that is not a node   ─▶ .network (not a node: wrong --url?)
///     anything else                      ─▶ as a push would judge that status
/// ```
/// Both our daemon and Wings serve `/api/system` to the panel with the node token, compared
/// as-is with the configured one, so a 200 there proves both reachability and the token. It
/// cannot prove that transfer tokens minted from it will be accepted beyond that (they are
/// signed with the same token, so they are unless the node's clock is far off).
public enum NodeCheck {
    /// What the node said about itself.
    public struct Node: Sendable, Equatable {
        /// `transferd` (ours: it announces the `transfer` capability) or `wings` (any other node).
        public var kind: String
        public var version: String
    }

    /// Asks the node at `url` who it is, with `secret` as its node token.
    ///
    /// `cancelled` is polled about once a second while the request runs; when it returns true the
    /// check ends with `.cancelled`.
    ///
    /// - Throws: `TransferError` with `.forbidden` when the token is refused, `.network` or
    ///   `.timeout` when the node cannot be reached or is not a node, and otherwise the code a
    ///   push would give for the status.
    public static func check(
        url: String, secret: [UInt8], insecureTLS: Bool = false, caCertificate: String? = nil, timeoutSeconds: Int = 10,
        cancelled: (@Sendable () -> Bool)? = nil
    ) throws -> Node {
        // The token goes into a header: a control character would end it (or add another).
        guard !secret.isEmpty, !secret.contains(where: { $0 < 0x20 || $0 == 0x7f }) else {
            throw TransferError(.invalidInput, .auth, "the node token is empty or holds control characters")
        }
        let endpoint = CompressionNegotiator.baseURL(url) + "/api/system"
        let easy = try CurlEasyHandle(url: endpoint)
        easy.addHeader("Authorization: Bearer \(String(decoding: secret, as: UTF8.self))")
        easy.addHeader("Accept: application/json")
        TLSOptions(insecure: insecureTLS, caCertificate: caCertificate).apply(to: easy)
        easy.setTimeout(seconds: timeoutSeconds)
        if let cancelled { easy.shouldCancel = cancelled }
        let status = try easy.perform()
        return try node(status: status, body: easy.responseBody, endpoint: endpoint)
    }

    /// Judges the answer to `GET /api/system` (separate from the request so it is testable alone).
    static func node(status: Int, body: [UInt8], endpoint: String) throws -> Node {
        switch status {
        case 200:
            guard let json = try? JSONValue.parse(body), let version = json["version"]?.stringValue else {
                throw TransferError(
                    .network, .transfer,
                    "\(endpoint) answered 200 but not as a Wings or Pelican node would (no version): is --url a node?")
            }
            let ours = json["capabilities"]?.arrayValue?.contains { $0.stringValue == "transfer" } ?? false
            return Node(kind: ours ? "transferd" : "wings", version: version)
        case 401, 403:
            throw TransferError(
                .forbidden, .auth,
                "the destination refused the node token (--secret/--secret-file) with \(status): \(message(body))")
        case 404:
            throw TransferError(
                .network, .transfer, "\(endpoint) answered 404: not a Wings or Pelican node, or --url has a wrong path")
        default:
            let judged = OutgoingTransfer.remoteError(status: status, body: body)
            throw TransferError(judged.code, .transfer, "GET \(endpoint): \(judged.message)")
        }
    }

    private static func message(_ body: [UInt8]) -> String {
        let text =
            (try? JSONValue.parse(body))?["error"]?.stringValue ?? String(decoding: body.prefix(200), as: UTF8.self)
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return line.isEmpty ? "(no message)" : line
    }
}
