#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Synchronization

/// The node daemon: configuration, volume store, token checks and HTTP routes, wired together.
///
/// ```
///  HTTPServer ─▶ TransferDaemon.route ─▶ POST /api/transfers      ─▶ IncomingTransfer (stream → staging → commit)
///                                     ├▶ GET  /download/file|backup ─▶ FileResponse (sendfile, ranges)
///                                     ├▶ POST /upload/file          ─▶ UploadReceiver (temp files → rename)
///                                     ├▶ POST /api/servers/:uuid/backup ─▶ BackupService (archive → temp → rename)
///                                     └▶ GET  /api/system          ─▶ node info (node token)
/// ```
/// `transferd` only parses flags and calls `start()`; everything testable lives here.
public final class TransferDaemon: Sendable {
    public let configuration: DaemonConfiguration
    public let store: VolumeStore
    let verifier: TokenVerifier
    let oneTimeTokens = OneTimeTokenStore()
    let backups: BackupService
    public let events = TransferEvents()
    public let registry: TransferRegistry
    let denyList = WebsocketDenyList()
    /// Open websockets, closed on shutdown (libmicrohttpd waits for upgraded sockets to be released).
    let websockets = Mutex<(open: [ObjectIdentifier: WebSocketConnection], stopping: Bool)>(([:], false))
    /// Set when `remote`, `token_id` and `token` are configured.
    let panel: PanelClient?
    private let server: HTTPServerBox

    public init(configuration: DaemonConfiguration) throws {
        self.configuration = configuration
        self.store = try VolumeStore(dataDirectory: configuration.dataDirectory, owner: configuration.volumeOwner)
        if !configuration.backupDirectoryIsImplicit {
            try FileTree.makeDirectories(configuration.backupDirectory, mode: 0o700)
        }
        self.verifier = TokenVerifier(
            secret: Array(configuration.token.utf8), allowUnscopedTokens: configuration.allowUnscopedTokens)
        self.server = HTTPServerBox()
        self.backups = BackupService(
            store: store, directory: configuration.backupDirectory, createdOnUse: configuration.backupDirectoryIsImplicit)
        self.registry = TransferRegistry(events: events)
        if let remote = configuration.remote, !remote.isEmpty, let tokenID = configuration.tokenID, !tokenID.isEmpty {
            self.panel = PanelClient(remote: remote, tokenID: tokenID, token: configuration.token)
        } else {
            self.panel = nil
        }
    }

    /// The bound port once started.
    public var port: UInt16 { server.value?.port ?? 0 }

    /// Binds and serves in background threads; returns once listening.
    public func start() throws {
        var options = HTTPServer.Options()
        options.host = configuration.host
        options.port = configuration.port
        options.idleTimeout = configuration.idleTimeoutSeconds
        if configuration.tlsEnabled {
            guard let certPath = configuration.tlsCertificatePath, let keyPath = configuration.tlsKeyPath,
                let cert = FileManager.default.contents(atPath: certPath),
                let key = FileManager.default.contents(atPath: keyPath)
            else {
                throw TransferError(.invalidInput, .config, "api.ssl is enabled but api.ssl.cert/api.ssl.key cannot be read")
            }
            options.tls = (String(decoding: key, as: UTF8.self), String(decoding: cert, as: UTF8.self))
        }
        let http = HTTPServer(options: options) { [self] request in route(request) }
        try http.start()
        server.value = http
        // Once it is up (a start that fails says only why): the one file-system setup that
        // makes many-file transfers crawl.
        if let warning = JournalCheck.warning(for: store.dataDirectory) { Log.warning("volumes: \(warning)") }
    }

    /// Stops accepting connections: cancels running transfers (nothing partial is committed),
    /// closes websockets with 1001 "going away", and waits for connection threads to end.
    public func stop() {
        registry.cancelAll()
        // Sessions that register after this see `stopping` and close themselves.
        let open = websockets.withLock { state -> [WebSocketConnection] in
            state.stopping = true
            return Array(state.open.values)
        }
        for session in open { session.close(code: 1001, reason: "node shutting down") }
        server.value?.stop()
    }

    public var baseURL: String { baseURL(host: configuration.host) }

    /// The daemon's URL with another host (an IPv6 literal gets its brackets).
    public func baseURL(host: String) -> String {
        let scheme = configuration.tlsEnabled ? "https" : "http"
        let bracketed = host.contains(":") ? "[\(host)]" : host
        return "\(scheme)://\(bracketed):\(port)"
    }

    /// True when listening on the wildcard address (0.0.0.0 or ::).
    public var listensOnEveryAddress: Bool {
        ["0.0.0.0", "::", "0:0:0:0:0:0:0:0"].contains(configuration.host)
    }

    // MARK: - Routing

    func route(_ request: HTTPRequest) -> RouteResult {
        let s = request.pathSegments.map(String.init)
        let method = request.method
        let readMethods = ["GET", "HEAD"]
        switch s.count {
        case 2 where s == ["api", "transfers"]:
            if readMethods.contains(method) { return .respond(listTransfers(request)) }
            guard method == "POST" else { return .respond(methodNotAllowed(request, allowed: "GET, POST")) }
            return receiveTransfer(request)
        case 3 where s == ["api", "transfers", "capabilities"]:
            return .respond(capabilities(request))
        case 3 where s == ["api", "transfers", "probe"]:
            guard method == "POST" else { return .respond(methodNotAllowed(request, allowed: "POST")) }
            return linkProbe(request)
        case 3 where s[0] == "api" && s[1] == "transfers":
            guard method == "DELETE" else { return .respond(methodNotAllowed(request, allowed: "DELETE")) }
            return .respond(cancelTransfer(request, server: s[2], direction: .incoming))
        case 4 where s[0] == "api" && s[1] == "servers" && s[3] == "transfer":
            if method == "DELETE" { return .respond(cancelTransfer(request, server: s[2], direction: .outgoing)) }
            guard method == "POST" else { return .respond(methodNotAllowed(request, allowed: "POST, DELETE")) }
            return startOutgoingTransfer(request, server: s[2])
        case 4 where s[0] == "api" && s[1] == "servers" && s[3] == "ws":
            return .respond(openWebsocket(request, server: s[2]))
        case 5 where s[0] == "api" && s[1] == "servers" && s[3] == "ws" && s[4] == "deny":
            guard method == "POST" else { return .respond(methodNotAllowed(request, allowed: "POST")) }
            return denyWebsocketTokens(request)
        case 2 where s == ["api", "system"]:
            guard readMethods.contains(method) else { return .respond(methodNotAllowed(request, allowed: "GET")) }
            return .respond(systemInfo(request))
        case 2 where s == ["download", "file"]:
            guard readMethods.contains(method) else { return .respond(methodNotAllowed(request, allowed: "GET, HEAD")) }
            return .respond(downloadFile(request))
        case 2 where s == ["download", "backup"]:
            guard readMethods.contains(method) else { return .respond(methodNotAllowed(request, allowed: "GET, HEAD")) }
            return .respond(downloadBackup(request))
        case 2 where s == ["upload", "file"]:
            // The seed document says GET; panels send POST. Both carry a multipart body.
            guard ["POST", "GET"].contains(method) else { return .respond(methodNotAllowed(request, allowed: "POST")) }
            return receiveUpload(request)
        case 4 where s[0] == "api" && s[1] == "servers" && s[3] == "backup":
            guard method == "POST" else { return .respond(methodNotAllowed(request, allowed: "POST")) }
            return createBackup(request, server: s[2])
        case 5 where s[0] == "api" && s[1] == "servers" && s[3] == "backup":
            guard ["GET", "DELETE"].contains(method) else { return .respond(methodNotAllowed(request, allowed: "GET, DELETE")) }
            return .respond(backupStatus(request, server: s[2], backup: s[4]))
        default:
            return .respond(.error(TransferError(.notFound, .http, "no route for \(HTTPRequest.clipped("\(request.method) \(request.path)"))")))
        }
    }

    private func methodNotAllowed(_ request: HTTPRequest, allowed: String) -> HTTPResponse {
        var response = HTTPResponse.json(
            405, ["error": .string("\(request.method) is not allowed on \(request.path)"), "code": "methodNotAllowed"])
        response.headers.append(("Allow", allowed))
        return response
    }

    /// The bearer token of the Authorization header, or a 401 error.
    func bearerToken(_ request: HTTPRequest) throws -> String {
        guard let header = request.header("authorization") else {
            throw TransferError(.unauthorized, .auth, "missing Authorization header (expected: Bearer <token>)")
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer", !parts[1].trimmingSpaces().isEmpty else {
            throw TransferError(.unauthorized, .auth, "malformed Authorization header (expected: Bearer <token>)")
        }
        return parts[1].trimmingSpaces()
    }

    /// Node-token endpoints (panel → node): constant-time compare with the configured token.
    func requireNodeToken(_ request: HTTPRequest) throws {
        let presented = try bearerToken(request)
        guard HMACSHA256.constantTimeEqual(Array(presented.utf8), Array(configuration.token.utf8)) else {
            throw TransferError(.forbidden, .auth, "the node token is not valid")
        }
    }

    /// Node-token endpoints about one server: checks the token and that the server is here.
    func requireNodeToken(_ request: HTTPRequest, server: String) throws {
        try requireNodeToken(request)
        try store.requireVolume(server)
    }

    private func systemInfo(_ request: HTTPRequest) -> HTTPResponse {
        do {
            try requireNodeToken(request)
            return .json(200, [
                "version": .string(TransferEngineVersion.current), "os": "linux",
                "capabilities": .array([.string("transfer")] + StreamCompression.allCases.map { .string($0.rawValue) }),
            ])
        } catch {
            return .error(error)
        }
    }
}

/// Holds the HTTP server once started (set once from `start`, read from any thread).
final class HTTPServerBox: @unchecked Sendable {
    private let lock = Condition()
    private var server: HTTPServer?
    var value: HTTPServer? {
        get { lock.withLock { server } }
        set { lock.withLock { server = newValue } }
    }
}

/// The engine's version, reported by `--version` and `/api/system`.
public enum TransferEngineVersion {
    public static let current = "0.1.0"
}
