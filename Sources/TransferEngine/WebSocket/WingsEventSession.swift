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
///
/// A socket is only kept while it is authenticated, or for `authenticationDeadline` seconds after
/// it was opened or lost its authentication (token expired, or its `jti` denied): then it is
/// closed with 1008. Otherwise anyone could hold connection slots forever without a token.
/// Delivering an event only queues it (`WebSocketConnection.send` never blocks), so a client that
/// stops reading never slows a transfer down.
final class WingsEventSession: @unchecked Sendable {
    /// Seconds an unauthenticated socket is kept (after the upgrade, or after it lost its token).
    static let authenticationDeadline: Double = 15

    private struct State {
        var claims: TokenClaims?
        var expiringSent = false
        /// Monotonic time since which the socket has had no valid token.
        var unauthenticatedSince: Double? = MonotonicClock.now()
    }

    private let server: String
    private let connection: WebSocketConnection
    private let verifier: TokenVerifier
    private let denyList: WebsocketDenyList
    private let events: TransferEvents
    private let clock: WallClock
    private let deadline: Double
    private let state = Mutex<State>(State())

    init(server: String, connection: WebSocketConnection, verifier: TokenVerifier, denyList: WebsocketDenyList,
         events: TransferEvents, clock: WallClock = .system, authenticationDeadline: Double = WingsEventSession.authenticationDeadline)
    {
        self.server = server
        self.connection = connection
        self.verifier = verifier
        self.denyList = denyList
        self.events = events
        self.clock = clock
        deadline = authenticationDeadline
    }

    func run() {
        let subscription = events.subscribe(server: server) { [weak self] event, args in
            guard let self, self.stillAuthenticated() else { return }
            self.send(event, args)
        }
        defer {
            events.unsubscribe(subscription)
            Log.info("websocket \(server): closed")
        }
        connection.run(
            onMessage: { message in
                guard case .text(let text) = message else { return }
                handle(text)
            },
            onTick: { checkToken() })
    }

    private func send(_ event: String, _ args: [JSONValue] = []) {
        let body: JSONValue = ["event": .string(event), "args": .array(args)]
        connection.send(text: String(decoding: body.serialized(), as: UTF8.self))
    }

    /// True while the socket holds a token that is not denied. A token whose `jti` was denied
    /// after it authenticated loses its authentication here, with the denylist `jwt error` (as
    /// Wings answers instead of the event), so the panel fetches a fresh token.
    private func stillAuthenticated() -> Bool {
        let denied = state.withLock { current -> Bool? in
            guard let claims = current.claims else { return nil }
            guard denyList.isDenied(claims.tokenID) else { return false }
            current = State(claims: nil, expiringSent: false, unauthenticatedSince: MonotonicClock.now())
            return true
        }
        guard let denied else { return false }
        if denied { send("jwt error", [.string(Self.denylistError)]) }
        return !denied
    }

    // Wording matches Wings: panels fetch a fresh token only on these exact texts.
    private static let denylistError = "jwt: created too far in past (denylist)"

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
            guard stillAuthenticated() else { return }  // Wings ignores events before auth
            send("daemon error", [.string("event '\(event)' is not supported by this node")])
        }
    }

    private func authenticate(_ token: String) {
        do {
            let claims = try verifier.verify(token, for: .websocket)
            guard claims.serverUUID == server else { throw JWT.invalid("jwt: token is not valid for this server") }
            if let iat = claims.issuedAt, iat < denyList.startedAt { throw JWT.invalid(Self.denylistError) }
            if denyList.isDenied(claims.tokenID) { throw JWT.invalid(Self.denylistError) }
            // Wings checks `exp` with no leeway on the websocket (the leeway is for nbf/iat clock
            // skew): an expired token would get `auth success` and then `token expired` at once.
            if let exp = claims.expiresAt, clock.now() >= exp { throw JWT.invalid("jwt: exp claim is invalid") }
            let permissions = claims.permissions
            guard permissions.contains("websocket.connect") || permissions.contains("*") else {
                throw JWT.invalid("jwt: missing websocket.connect permission")
            }
            state.withLock { $0 = State(claims: claims, expiringSent: false, unauthenticatedSince: nil) }
            Log.info("websocket \(server): authenticated (user \(claims.userUUID ?? "unknown"))")
            send("auth success")
        } catch {
            let message = (error as? TransferError)?.message ?? "jwt: invalid token"
            state.withLock { current in
                if current.claims != nil { current = State(claims: nil, expiringSent: false, unauthenticatedSince: MonotonicClock.now()) }
            }
            // Debug only: a client may send failing auths as fast as it likes.
            Log.debug("websocket \(server): auth refused: \(message)")
            send("jwt error", [.string(message)])
        }
    }

    /// Once a second: `token expiring` about a minute before `exp`, `token expired` at `exp`
    /// (then events stop until the client authenticates again); the denylist; and the
    /// authentication deadline.
    private func checkToken() {
        _ = stillAuthenticated()
        let now = clock.now()
        let monotonic = MonotonicClock.now()
        enum Action { case send(String), close }
        let action = state.withLock { current -> Action? in
            if let since = current.unauthenticatedSince {
                return monotonic - since >= deadline ? .close : nil
            }
            guard let exp = current.claims?.expiresAt else { return nil }
            if now >= exp {
                current = State(claims: nil, expiringSent: false, unauthenticatedSince: monotonic)
                return .send("token expired")
            }
            if now >= exp - 60, !current.expiringSent {
                current.expiringSent = true
                return .send("token expiring")
            }
            return nil
        }
        switch action {
        case .send(let event): send(event)
        case .close:
            Log.info("websocket \(server): not authenticated within \(Int(deadline)) s, closing")
            connection.close(code: 1008, reason: "not authenticated")
        case nil: break
        }
    }
}
