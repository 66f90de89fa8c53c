#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Calls back to the panel (`remote` in config.yml) the way Wings does:
/// `POST {remote}/api/remote/servers/{uuid}/transfer/{success|failure}` with
/// `Authorization: Bearer <token_id>.<token>`, retried with exponential backoff on network errors
/// and 5xx answers (a 4xx is final: retrying cannot fix it).
public final class PanelClient: Sendable {
    public let remote: String
    private let authorization: String
    /// Delays between attempts, in seconds.
    public let backoff: [Double]

    public init(remote: String, tokenID: String, token: String, backoff: [Double] = [0.5, 1, 2, 4, 8, 16]) {
        var base = remote
        while base.hasSuffix("/") { base.removeLast() }
        self.remote = base
        self.authorization = "Bearer \(tokenID).\(token)"
        self.backoff = backoff
    }

    /// Reports the outcome of a transfer in the background.
    public func reportTransfer(server: String, successful: Bool) {
        let url = "\(remote)/api/remote/servers/\(server)/transfer/\(successful ? "success" : "failure")"
        spawnThread(name: "panel-callback") { [self] in post(url: url, what: "transfer \(successful ? "success" : "failure") of \(server)") }
    }

    /// POSTs with retries; blocks the calling thread. Returns whether the panel accepted it.
    @discardableResult
    public func post(url: String, what: String) -> Bool {
        for attempt in 0...backoff.count {
            var retryable = true
            do {
                let easy = try CurlEasyHandle(url: url)
                easy.addHeader("Authorization: \(authorization)")
                easy.addHeader("Accept: application/vnd.pterodactyl.v1+json")
                easy.addHeader("Content-Type: application/json")
                easy.setBodyPOST([])
                easy.setTimeout(seconds: 30)
                let status = try easy.perform()
                if (200..<300).contains(status) {
                    Log.info("panel: reported \(what) (HTTP \(status))")
                    return true
                }
                retryable = status >= 500 || status == 429
                Log.warning("panel: \(what): HTTP \(status)\(retryable ? ", retrying" : ", giving up")")
            } catch {
                Log.warning("panel: \(what): \(error)")
            }
            guard retryable, attempt < backoff.count else { break }
            usleep(UInt32(backoff[attempt] * 1_000_000))
        }
        Log.error("panel: could not report \(what)")
        return false
    }
}
