#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Synchronization

/// Tokens refused for websockets by `jti` (`POST /api/servers/:uuid/ws/deny`), plus the daemon's
/// start time: tokens issued before it are refused too (Wings does the same after a restart).
public final class WebsocketDenyList: Sendable {
    private let denied = Mutex<[String: Int64]>([:])
    public let startedAt: Int64

    public init(startedAt: Int64 = WallClock.system.now()) { self.startedAt = startedAt }

    public func deny(_ jtis: [String]) {
        let now = WallClock.system.now()
        denied.withLock { table in
            table = table.filter { now - $0.value < 86_400 }  // tokens live minutes; a day is plenty
            for jti in jtis { table[jti] = now }
        }
    }

    public func isDenied(_ jti: String?) -> Bool {
        guard let jti else { return false }
        return denied.withLock { $0[jti] != nil }
    }
}

/// The Wings console protocol on one websocket (DESIGN.md §4), limited to what a transfer node
/// does: `auth` → `auth success` / `jwt error`; `token expiring` / `token expired`; re-auth on the
/// same socket; and the server's transfer events while authenticated.
final class WingsEventSession: @unchecked Sendable {
    private let server: String
    private let connection: WebSocketConnection
    private let verifier: TokenVerifier
    private let denyList: WebsocketDenyList
    private let events: TransferEvents
    private let clock: WallClock
    private let state = Mutex<(claims: TokenClaims?, expiringSent: Bool)>((nil, false))

    init(server: String, connection: WebSocketConnection, verifier: TokenVerifier, denyList: WebsocketDenyList,
         events: TransferEvents, clock: WallClock = .system)
    {
        self.server = server
        self.connection = connection
        self.verifier = verifier
        self.denyList = denyList
        self.events = events
        self.clock = clock
    }

    func run() {
        let subscription = events.subscribe(server: server) { [weak self] event, args in
            guard let self, self.state.withLock({ $0.claims != nil }) else { return }
            self.send(event, args)
        }
        defer { events.unsubscribe(subscription) }
        connection.run(
            onMessage: { message in
                guard case .text(let text) = message else { return }
                handle(text)
            },
            onTick: { checkExpiry() })
    }

    private func send(_ event: String, _ args: [JSONValue] = []) {
        let body: JSONValue = ["event": .string(event), "args": .array(args)]
        connection.send(text: String(decoding: body.serialized(), as: UTF8.self))
    }

    private func handle(_ text: String) {
        guard let message = try? JSONValue.parse(Array(text.utf8)), let event = message["event"]?.stringValue else {
            send("daemon error", ["malformed message: expected {\"event\": \"...\", \"args\": [...]}"])
            return
        }
        let args = message["args"]?.arrayValue ?? []
        switch event {
        case "auth":
            authenticate(args.first?.stringValue ?? "")
        default:
            guard state.withLock({ $0.claims != nil }) else { return }  // Wings ignores events before auth
            send("daemon error", [.string("event '\(event)' is not supported by this node")])
        }
    }

    private func authenticate(_ token: String) {
        do {
            let claims = try verifier.verify(token, for: .websocket)
            guard claims.serverUUID == server else { throw JWT.invalid("jwt: token is not valid for this server") }
            // Wording matches Wings: panels fetch a fresh token only on these exact texts.
            if let iat = claims.issuedAt, iat < denyList.startedAt { throw JWT.invalid("jwt: created too far in past (denylist)") }
            if denyList.isDenied(claims.tokenID) { throw JWT.invalid("jwt: created too far in past (denylist)") }
            let permissions = claims.permissions
            guard permissions.contains("websocket.connect") || permissions.contains("*") else {
                throw JWT.invalid("jwt: missing websocket.connect permission")
            }
            state.withLock { $0 = (claims, false) }
            send("auth success")
        } catch let error as TransferError {
            state.withLock { $0 = (nil, false) }
            send("jwt error", [.string(error.message)])
        } catch {
            send("jwt error", [.string("jwt: invalid token")])
        }
    }

    /// `token expiring` about a minute before `exp`, `token expired` at `exp` (then events stop
    /// until the client authenticates again).
    private func checkExpiry() {
        let now = clock.now()
        let action = state.withLock { current -> String? in
            guard let exp = current.claims?.expiresAt else { return nil }
            if now >= exp {
                current = (nil, false)
                return "token expired"
            }
            if now >= exp - 60, !current.expiringSent {
                current.expiringSent = true
                return "token expiring"
            }
            return nil
        }
        if let action { send(action) }
    }
}
