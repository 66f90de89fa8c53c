#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import FoundationEssentials
private import CMicroHTTPD
private import CTransferShims

/// The daemon's HTTP/1.1 server: libmicrohttpd with a thread per connection.
///
/// ```
///  MHD connection thread ─▶ access handler ─▶ router(request) ─▶ .respond(response)
///                                                             └▶ .consumeBody(handler): receive(chunk)… finish()
/// ```
/// Request bodies are streamed to the handler as libmicrohttpd reads them (tens of KiB per call
/// with a 512 KiB connection memory limit); a handler that blocks holds the client back. Responses with
/// a file body are sent with sendfile from the descriptor.
public final class HTTPServer: @unchecked Sendable {
    public typealias Router = @Sendable (HTTPRequest) -> RouteResult

    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port: UInt16 = 8080
        /// Seconds a connection may stay idle.
        public var idleTimeout: UInt32 = 120
        /// PEM key and certificate to serve HTTPS; nil for plain HTTP.
        public var tls: (key: String, certificate: String)?
        /// After a handler failed with no early answer (under TLS, or a cancel the canceller has
        /// not answered yet), how much more body to read so that the JSON error can be sent at its
        /// end, before closing the connection instead.
        public var discardLimit: Int64 = 64 << 20
        /// After answering a request before its body ended, how much more of it to read, and for how
        /// many seconds, before closing (`LingeringClose`): enough for the client to read the answer.
        public var lingerLimit: Int64 = 64 << 20
        public var lingerSeconds: Double = 2
        public init() {}
    }

    private let options: Options
    private let router: Router
    private var daemon: OpaquePointer?
    /// The bound port (differs from `options.port` when that was 0).
    public private(set) var port: UInt16 = 0

    public init(options: Options, router: @escaping Router) {
        self.options = options
        self.router = router
    }

    deinit { stop() }

    /// Connections served at once, and from one client address: each is a thread, and a client
    /// holding hundreds of half-sent requests open must not lock everyone else out.
    static let connectionLimit: UInt32 = 1000
    static let perAddressLimit: UInt32 = 128
    fileprivate static let limitWarnings = Throttle(interval: 10)

    /// Binds and starts serving. Throws if the address is invalid or the port is taken.
    public func start() throws {
        precondition(daemon == nil, "start called twice")
        var storage = sockaddr_storage()
        try Self.fillAddress(&storage, host: options.host, port: options.port)
        let flags =
            MHD_USE_THREAD_PER_CONNECTION.rawValue | MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_POLL.rawValue
            | MHD_USE_ERROR_LOG.rawValue | MHD_ALLOW_UPGRADE.rawValue | MHD_USE_ITC.rawValue  // ITC: quiesce in stop()
        let context = Unmanaged.passUnretained(self).toOpaque()
        // libmicrohttpd's own messages go through our log, in its format: peers closing early are
        // routine (our request line already says so), failures to bind or accept are not.
        tx_mhd_set_log_sink { message in
            guard let message else { return }
            let text = String(cString: message).trimmingWhitespace()
            if text.contains("connection limit") {
                // One line per refused connection would let a flood fill the log: one per 10 s.
                if HTTPServer.limitWarnings.ready() {
                    Log.warning("http: refusing connections: \(text) (at most \(HTTPServer.connectionLimit) in all, \(HTTPServer.perAddressLimit) per client address)")
                }
            } else if text.contains("Failed") || text.contains("failed") {
                Log.warning("http: \(text)")
            } else {
                Log.debug("http: \(text)")
            }
        }
        // 512 KiB per connection: headers and the read buffer fit with room to spare; 1 MiB only
        // raised the daemon's peak RSS (measured, same throughput).
        let started = withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                tx_mhd_start_daemon(
                    flags, address, Self.accessHandler, context, Self.completedHandler, context,
                    options.idleTimeout, 512 << 10, Self.connectionLimit, Self.perAddressLimit,
                    options.tls?.key, options.tls?.certificate)
            }
        }
        guard let started else {
            // libmicrohttpd says no more than "no"; with TLS, a certificate and key that do not
            // match (or an encrypted key) fail here too, after GnuTLS's own warning lines.
            let tlsHint = options.tls == nil ? "" : ", or the TLS certificate and key do not match or cannot be used (see the lines above)"
            throw TransferError(.io, .http, "cannot listen on \(options.host):\(options.port) (address in use or not local?\(tlsHint))")
        }
        daemon = started
        port = tx_mhd_bound_port(started)
    }

    /// Stops accepting and waits for connection threads to end.
    public func stop() {
        // Give upgraded connections (closed by their owners before this) up to 5 s to be handed back.
        let deadline = MonotonicClock.now() + 5
        while Self.upgradedConnections.withLock({ $0 }) > 0 && MonotonicClock.now() < deadline { usleep(20_000) }
        guard let daemon else { return }
        self.daemon = nil
        let outstanding = Self.upgradedConnections.withLock { $0 }
        guard outstanding == 0 else {
            // MHD_stop_daemon would free connections those sockets are still to be handed back to
            // (a use after free when they are). Stop listening and leave the rest to process exit.
            Log.warning("http: \(outstanding) websocket(s) still closing after 5 s; not waiting for them")
            let listener = MHD_quiesce_daemon(daemon)
            if listener >= 0 { close(listener) }
            return
        }
        MHD_stop_daemon(daemon)
    }

    fileprivate static func fillAddress(_ storage: inout sockaddr_storage, host: String, port: UInt16) throws {
        try withUnsafeMutablePointer(to: &storage) { pointer in
            var v4 = sockaddr_in()
            if inet_pton(AF_INET, host, &v4.sin_addr) == 1 {
                v4.sin_family = sa_family_t(AF_INET)
                v4.sin_port = port.bigEndian
                UnsafeMutableRawPointer(pointer).storeBytes(of: v4, as: sockaddr_in.self)
                return
            }
            var v6 = sockaddr_in6()
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            if inet_pton(AF_INET6, bare, &v6.sin6_addr) == 1 {
                v6.sin6_family = sa_family_t(AF_INET6)
                v6.sin6_port = port.bigEndian
                UnsafeMutableRawPointer(pointer).storeBytes(of: v6, as: sockaddr_in6.self)
                return
            }
            throw TransferError(.invalidInput, .config, "listen address '\(host)' is not an IP address")
        }
    }

    // MARK: - Per-connection state

    /// One request's state, owned by libmicrohttpd's `con_cls` pointer from the first call to completion.
    final class Exchange {
        let request: HTTPRequest
        let descriptor: Int32
        let started = MonotonicClock.now()
        var handler: (any RequestBodyHandler)?
        var handlerError: (any Error)?
        var discarded: Int64 = 0
        var bodyBytes: Int64 = 0
        var responded = false
        var status = 0
        /// The queued response's `onCompletion`.
        var onCompletion: (@Sendable (Bool) -> Void)?
        /// The request announced a body (a non-zero Content-Length, or Transfer-Encoding).
        let bodyAnnounced: Bool
        /// libmicrohttpd's last call came: the body was read to its end.
        var bodyEnded = false
        /// What may still be read once an answer went out before the body ended (`LingeringClose`).
        var linger: LingeringClose.Budget?
        /// The answer to a request without a body, queued at libmicrohttpd's next call: queued on
        /// the first call, libmicrohttpd 0.9.75 closes the connection after it (no keep-alive).
        var deferred: HTTPResponse?
        /// The length of a file answer (a download), for the log line.
        var fileLength: Int64?
        /// Answered on the socket before the body ended (by this thread or a canceller).
        var answeredEarly: Bool { request.earlyAnswer?.isSettled ?? false }

        init(request: HTTPRequest, descriptor: Int32) {
            self.request = request
            self.descriptor = descriptor
            let length = request.header("content-length").map { Int64($0.trimmingSpaces()) ?? 1 } ?? 0
            bodyAnnounced = length != 0 || request.header("transfer-encoding") != nil
        }

        deinit {
            // A connection gone before the deferred answer was queued: its file is ours to close.
            if case .file(let fd, _, _) = deferred?.body { close(fd) }
        }

        /// The linger budget, started now if it was not yet.
        func lingerBudget(_ options: Options) -> LingeringClose.Budget {
            if let linger { return linger }
            let budget = LingeringClose.Budget(
                startedAt: MonotonicClock.now(), byteLimit: options.lingerLimit, seconds: options.lingerSeconds)
            linger = budget
            return budget
        }
    }

    private static let accessHandler: MHD_AccessHandlerCallback = {
        context, connection, url, method, _, uploadData, uploadSize, exchangePointer in
        let server = Unmanaged<HTTPServer>.fromOpaque(context!).takeUnretainedValue()
        return server.handle(connection!, url!, method!, uploadData, uploadSize!, exchangePointer!)
    }

    final class UpgradeContext: Sendable {
        let run: @Sendable (UpgradedConnection) -> Void
        init(_ run: @escaping @Sendable (UpgradedConnection) -> Void) { self.run = run }
    }

    /// Upgraded sockets not yet handed back; `stop()` waits for them (libmicrohttpd crashes if
    /// it shuts down while one is still out).
    static let upgradedConnections = Mutex(0)

    private static let upgradeHandler: MHD_UpgradeHandler = { context, _, _, extra, extraSize, socket, handle in
        let upgrade = Unmanaged<UpgradeContext>.fromOpaque(context!).takeRetainedValue()
        upgradedConnections.withLock { $0 += 1 }
        let initial = extra.map { Array(UnsafeRawBufferPointer(start: $0, count: extraSize)) } ?? []
        let flags = fcntl(socket, F_GETFL)
        _ = fcntl(socket, F_SETFL, flags & ~O_NONBLOCK)
        nonisolated(unsafe) let handle = handle
        spawnThread(name: "websocket") {
            upgrade.run(UpgradedConnection(descriptor: socket, initialBytes: initial))
            _ = tx_mhd_upgrade_close(handle)
            HTTPServer.upgradedConnections.withLock { $0 -= 1 }
        }
    }

    private static let completedHandler: MHD_RequestCompletedCallback = { context, _, exchangePointer, code in
        guard let raw = exchangePointer?.pointee else { return }
        let server = Unmanaged<HTTPServer>.fromOpaque(context!).takeUnretainedValue()
        let exchange = Unmanaged<Exchange>.fromOpaque(raw).takeRetainedValue()
        exchangePointer!.pointee = nil
        exchange.onCompletion?(code == .REQUEST_TERMINATED_COMPLETED_OK)
        exchange.deferred?.onCompletion?(false)  // never queued: the connection ended first
        if let handler = exchange.handler, !exchange.responded, !exchange.answeredEarly {
            switch code {
            case .REQUEST_TERMINATED_TIMEOUT_REACHED:  // nothing arrived for the idle timeout: a stall
                handler.abort(.idleTimeout(seconds: Int(server.options.idleTimeout)))
            case .REQUEST_TERMINATED_DAEMON_SHUTDOWN:
                handler.abort(.shutdown)
            default:
                handler.abort(.connectionClosed)
            }
        }
        let seconds = MonotonicClock.now() - exchange.started
        let outcome =
            exchange.request.earlyAnswer?.sentStatus.map { "\($0)" }
            ?? (exchange.responded ? "\(exchange.status)" : "connection closed before a response")
        let body = exchange.bodyBytes > 0 ? " body=\(ByteCount.format(exchange.bodyBytes))" : ""
        let file = exchange.fileLength.map { " file=\(ByteCount.format($0))\(HTTPServer.cutShort(code))" } ?? ""
        Log.info(
            "http \(exchange.request.clientAddress) \(exchange.request.loggable) -> \(outcome)\(body)\(file) "
                + "\(ByteCount.fixed(seconds * 1000, 1)) ms")
        server.closeLingering(exchange, shuttingDown: code == .REQUEST_TERMINATED_DAEMON_SHUTDOWN)
    }

    /// For a download's log line: why it did not reach its end ("" when it did).
    fileprivate static func cutShort(_ code: MHD_RequestTerminationCode) -> String {
        switch code {
        case .REQUEST_TERMINATED_COMPLETED_OK: ""
        case .REQUEST_TERMINATED_TIMEOUT_REACHED: " CUT SHORT (the client read nothing for the idle timeout)"
        case .REQUEST_TERMINATED_DAEMON_SHUTDOWN: " CUT SHORT (the node is shutting down)"
        default: " CUT SHORT (the client went away)"
        }
    }

    /// Called on the connection's thread before libmicrohttpd closes the socket: when the request
    /// was answered before its body ended, reads on (bounded) until the client closes, so that the
    /// close does not reset the answer away (`LingeringClose`).
    private func closeLingering(_ exchange: Exchange, shuttingDown: Bool) {
        guard !shuttingDown, exchange.descriptor >= 0, exchange.bodyAnnounced, !exchange.bodyEnded,
            exchange.responded || exchange.answeredEarly, exchange.status != 101
        else { return }
        var budget = exchange.lingerBudget(options)
        guard !budget.isSpent else { return }
        let before = budget.bytesLeft
        let outcome = LingeringClose.drain(
            descriptor: exchange.descriptor, shutWrite: options.tls == nil, budget: &budget)
        let ending = outcome == .clientClosed ? "the client closed" : "closing with the budget spent"
        Log.debug(
            "http \(exchange.request.clientAddress) \(exchange.request.loggable): read "
                + "\(ByteCount.format(before - budget.bytesLeft)) more after the answer; \(ending)")
    }

    private func handle(
        _ connection: OpaquePointer, _ url: UnsafePointer<CChar>, _ method: UnsafePointer<CChar>,
        _ uploadData: UnsafePointer<CChar>?, _ uploadSize: UnsafeMutablePointer<Int>,
        _ exchangePointer: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    ) -> MHD_Result {
        guard let raw = exchangePointer.pointee else {
            // First call: headers are complete, no body yet.
            let request = Self.makeRequest(connection, url: url, method: method, tls: options.tls != nil)
            let exchange = Exchange(request: request, descriptor: tx_mhd_connection_fd(connection))
            exchangePointer.pointee = Unmanaged.passRetained(exchange).toOpaque()
            if let refusal = Self.framingRefusal(request) {
                return queue(refusal, on: connection, exchange: exchange)
            }
            switch router(request) {
            case .respond(let response):
                if !exchange.bodyAnnounced, !response.isUpgrade {
                    exchange.deferred = response
                    return .YES
                }
                return queue(response, on: connection, exchange: exchange)
            case .consumeBody(let handler):
                exchange.handler = handler
                return .YES
            }
        }
        let exchange = Unmanaged<Exchange>.fromOpaque(raw).takeUnretainedValue()
        let size = uploadSize.pointee
        if size > 0 {
            uploadSize.pointee = 0
            exchange.bodyBytes += Int64(size)
            if exchange.answeredEarly {
                // The client has our answer; read on (bounded, `LingeringClose`) so that closing
                // does not reset it away.
                var budget = exchange.lingerBudget(options)
                let more = budget.read(size, at: MonotonicClock.now())
                exchange.linger = budget
                return more ? .YES : .NO
            }
            guard let handler = exchange.handler, !exchange.responded else { return .YES }
            if exchange.handlerError == nil {
                do {
                    try handler.receive(UnsafeRawBufferPointer(start: uploadData, count: size))
                } catch {
                    exchange.handlerError = error
                    // A transfer cancelled on this node is answered (or cut) by the canceller; the
                    // rest of the body is read and dropped meanwhile, below.
                    if (error as? TransferError)?.code != .cancelled {
                        answerEarly(handler.finish(error: error), exchange: exchange)
                    }
                }
            } else {
                exchange.discarded += Int64(size)
                // The client keeps sending after we failed: stop reading (it sees the connection close).
                if exchange.discarded > options.discardLimit { return .NO }
            }
            return .YES
        }
        exchange.bodyEnded = true
        if let deferred = exchange.deferred {
            exchange.deferred = nil
            return queue(deferred, on: connection, exchange: exchange)
        }
        if exchange.answeredEarly { return .NO }  // already answered on the socket: just close
        if let handler = exchange.handler, !exchange.responded {
            // A canceller may answer at the same moment: one of us wins.
            guard exchange.request.earlyAnswer?.claimForQueue() ?? true else { return .NO }
            return queue(handler.finish(error: exchange.handlerError), on: connection, exchange: exchange)
        }
        return .YES
    }

    /// Answers a request whose body handler failed before the body ended (see `EarlyAnswer`);
    /// under TLS the rest of the body is drained instead and the answer goes out at the end.
    private func answerEarly(_ response: HTTPResponse, exchange: Exchange) {
        guard let early = exchange.request.earlyAnswer, early.canWrite else { return }
        early.send(response, cutOtherwise: false)
    }

    /// The answer to a request whose framing is ambiguous, or nil when it is fine.
    ///
    /// RFC 9112 §6.3: a message with both `Transfer-Encoding` and `Content-Length` may be a request
    /// smuggling attempt (a proxy in front may have framed it by the other header), so the server
    /// answers 400 and closes the connection instead of picking one. libmicrohttpd 0.9.75 would
    /// read it as chunked; its own framing errors (bad chunk sizes, `Content-Length: -1`) never
    /// reach us (it answers them with its own HTML page).
    static func framingRefusal(_ request: HTTPRequest) -> HTTPResponse? {
        let codings = request.transferEncodingValues
        var status = 400
        let reason: String
        if request.header("transfer-encoding") != nil, request.header("content-length") != nil {
            reason = "request has both Transfer-Encoding and Content-Length (RFC 9112 §6.3)"
        } else if Set(request.contentLengthValues.flatMap { $0.split(separator: ",").map { $0.trimmingSpaces() } }).count > 1 {
            // RFC 9112 §6.3 (5): differing lengths, in repeated fields or one comma list, are an
            // unrecoverable framing error. libmicrohttpd reads the body by the first field while
            // `headers` holds the last: a smuggling gap. Identical repeats frame the same body.
            let shown = request.contentLengthValues.map { "'\($0)'" }.joined(separator: ", ")
            reason = "request has differing Content-Length values (\(shown)) (RFC 9112 §6.3)"
        } else if let coding = unsupportedTransferCoding(codings) {
            // RFC 9112 §6.1: a server that does not understand a transfer coding answers 501.
            // libmicrohttpd knows only a lone `chunked`; any other list it would read as a body
            // running to the close, handing the chunk framing on as if it were content.
            status = 501
            reason = "transfer coding '\(coding)' is not supported"
        } else if codings.count == 1, codings[0].lowercased() != "chunked" {
            // `chunked` with blanks around it: libmicrohttpd compares the whole value, so it would
            // not read the body as chunked but to the close. Refuse rather than misframe.
            reason = "Transfer-Encoding '\(codings[0])' has blanks around 'chunked'"
        } else {
            return nil
        }
        let code: TransferError.Code = status == 501 ? .unsupported : .invalidInput
        var response = HTTPResponse.error(TransferError(code, .http, reason.escapingControlCharacters))
        response.status = status
        response.headers.append(("Connection", "close"))
        return response
    }

    /// The first transfer coding in the request's `Transfer-Encoding` fields other than the one
    /// we read (a single `chunked`, any case), or nil when there are none or only that one.
    static func unsupportedTransferCoding(_ values: [String]) -> String? {
        guard !values.isEmpty else { return nil }
        // Empty list elements do not count (RFC 9110 §5.6.1).
        let codings = values.flatMap { $0.split(separator: ",") }.map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
        if codings.count == 1, codings[0].lowercased() == "chunked" { return nil }
        // A coding may carry parameters (`gzip;q=1`): name it without them.
        let named = codings.first { $0.lowercased() != "chunked" }.map { String($0.prefix { $0 != ";" }).trimmingSpaces() }
        return (named?.isEmpty == false ? named : nil) ?? codings.joined(separator: ", ")
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 422: "Unprocessable Content"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        default: "Error"
        }
    }

    private func queue(_ response: HTTPResponse, on connection: OpaquePointer, exchange: Exchange) -> MHD_Result {
        exchange.responded = true
        exchange.status = response.status
        exchange.onCompletion = response.onCompletion
        let created: OpaquePointer?
        switch response.body {
        case .bytes(let bytes):
            created = bytes.withUnsafeBytes {
                MHD_create_response_from_buffer($0.count, UnsafeMutableRawPointer(mutating: $0.baseAddress), .RESPMEM_MUST_COPY)
            }
        case .file(let fd, let offset, let length):
            exchange.fileLength = length
            created = MHD_create_response_from_fd_at_offset64(UInt64(length), fd, UInt64(offset))
        case .upgrade(let run):
            let context = Unmanaged.passRetained(UpgradeContext(run)).toOpaque()
            created = MHD_create_response_for_upgrade(Self.upgradeHandler, context)
        }
        guard let created else { return .NO }
        defer { MHD_destroy_response(created) }
        for (name, value) in response.headers {
            MHD_add_response_header(created, name, value)
        }
        return MHD_queue_response(connection, UInt32(response.status), created)
    }

    private static func makeRequest(
        _ connection: OpaquePointer, url: UnsafePointer<CChar>, method: UnsafePointer<CChar>, tls: Bool
    ) -> HTTPRequest {
        final class Collector {
            var values: [String: String] = [:]
            var contentLengths: [String] = []
            var transferEncodings: [String] = []
            var lowercaseKeys = false
        }
        var contentLengths: [String] = []
        var transferEncodings: [String] = []
        func collect(_ kind: MHD_ValueKind, lowercase: Bool) -> [String: String] {
            let collector = Collector()
            collector.lowercaseKeys = lowercase
            let pointer = Unmanaged.passUnretained(collector).toOpaque()
            // The sized variant: a value with a NUL in it (`?directory=/a%00b`) is kept whole, so
            // checks downstream refuse it, instead of being cut at the NUL (`/a`).
            _ = MHD_get_connection_values_n(
                connection, kind,
                { context, _, key, keySize, value, valueSize in
                    let collector = Unmanaged<Collector>.fromOpaque(context!).takeUnretainedValue()
                    guard let key else { return .YES }
                    let name = String(decoding: UnsafeRawBufferPointer(start: key, count: keySize), as: UTF8.self)
                    let text = value.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: valueSize), as: UTF8.self) } ?? ""
                    collector.values[collector.lowercaseKeys ? name.lowercased() : name] = text
                    if collector.lowercaseKeys {
                        switch name.lowercased() {
                        case "content-length": collector.contentLengths.append(text)
                        case "transfer-encoding": collector.transferEncodings.append(text)
                        default: break
                        }
                    }
                    return .YES
                }, pointer)
            if lowercase {
                contentLengths = collector.contentLengths
                transferEncodings = collector.transferEncodings
            }
            return collector.values
        }
        var address = [CChar](repeating: 0, count: 64)
        tx_mhd_client_address(connection, &address, address.count)
        var request = HTTPRequest(
            method: String(cString: method), path: HTTPRequest.originForm(String(cString: url)), query: collect(.GET_ARGUMENT_KIND, lowercase: false),
            headers: collect(.HEADER_KIND, lowercase: true),
            clientAddress: String(decoding: address.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        request.contentLengthValues = contentLengths
        request.transferEncodingValues = transferEncodings
        request.earlyAnswer = EarlyAnswer(descriptor: tx_mhd_connection_fd(connection), tls: tls)
        return request
    }
}
