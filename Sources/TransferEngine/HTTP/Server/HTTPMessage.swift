/// An HTTP request as routes see it: everything but the body, which streams separately.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The URL path, without the query string.
    public var path: String
    /// Query arguments, already URL-decoded (the last value wins for repeated names).
    public var query: [String: String]
    /// Header fields with lowercased names (the last value wins for repeated names).
    public var headers: [String: String]
    /// Every `Content-Length` field value as received, in order (`headers` keeps only the last;
    /// libmicrohttpd frames the body by the first): for the RFC 9112 §6.3 check.
    public var contentLengthValues: [String] = []
    /// Every `Transfer-Encoding` field value as received, in order: the codings of all of them
    /// together are the message's (RFC 9110 §5.3), and libmicrohttpd looks only at the first.
    public var transferEncodingValues: [String] = []
    public var clientAddress: String
    /// Answers the request before its body has ended, from any thread (nil outside the server).
    public var earlyAnswer: EarlyAnswer?

    public init(method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:],
                clientAddress: String = "")
    {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.clientAddress = clientAddress
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }

    /// The path of a request target: an absolute-form target (`GET http://node:8080/api/system`,
    /// what a client speaking to a proxy sends) is reduced to its path, as RFC 9112 §3.2.2 asks
    /// of a server.
    public static func originForm(_ target: String) -> String {
        for scheme in ["http://", "https://"] where target.count > scheme.count && target.lowercased().hasPrefix(scheme) {
            let afterScheme = target.dropFirst(scheme.count)
            guard let slash = afterScheme.firstIndex(of: "/") else { return "/" }
            return String(afterScheme[slash...])
        }
        return target
    }

    /// The path split on `/`, without empty segments.
    public var pathSegments: [Substring] { path.split(separator: "/") }

    /// The request line for logs, with credentials in the query masked.
    public var loggable: String {
        let shown = query.keys.sorted().map { key in "\(key)=\(key == "token" ? "***" : query[key]!)" }
        let line = shown.isEmpty ? "\(method) \(path)" : "\(method) \(path)?\(shown.joined(separator: "&"))"
        return Self.clipped(line)
    }

    /// A client-chosen string as it goes into a log line or an error answer: at most `limit`
    /// characters (a 100 KB URL must not become a 100 KB log line), the cut marked.
    public static func clipped(_ text: String, limit: Int = 512) -> String {
        guard text.count > limit else { return text }
        return String(text.prefix(limit)) + "… (\(text.utf8.count) bytes)"
    }
}

/// A response: status, headers and a body that is either bytes or a range of an open file
/// (served by the HTTP layer with sendfile; the server closes the descriptor). For HEAD requests
/// libmicrohttpd sends the headers, including the body's Content-Length, and no body.
public struct HTTPResponse: Sendable {
    public enum Body: Sendable {
        case bytes([UInt8])
        case file(descriptor: Int32, offset: Int64, length: Int64)
        /// Switch protocols (status 101): after the headers are sent, `run` gets the socket on its
        /// own thread; the server closes it when `run` returns.
        case upgrade(@Sendable (UpgradedConnection) -> Void)
    }

    public var status: Int
    public var headers: [(String, String)]
    public var body: Body
    /// Called once the exchange ends: true when the whole response was sent (libmicrohttpd's
    /// `REQUEST_TERMINATED_COMPLETED_OK`), false when the connection ended before that.
    public var onCompletion: (@Sendable (_ sentWhole: Bool) -> Void)?

    /// A switch of protocols (answered at once, never deferred).
    public var isUpgrade: Bool {
        if case .upgrade = body { return true }
        return false
    }

    public init(status: Int, headers: [(String, String)] = [], body: Body = .bytes([])) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response.
    public static func json(_ status: Int, _ value: JSONValue) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: .bytes(value.serialized() + [0x0a]))
    }

    /// The JSON error body every failure gets: `{"error": "...", "code": "..."}`.
    public static func error(_ error: TransferError) -> HTTPResponse {
        var response = json(
            ErrorMapping.httpStatus(for: error.code), ["error": .string(error.message), "code": .string(error.code.description)])
        if error.code == .unauthorized { response.headers.append(("WWW-Authenticate", "Bearer")) }
        return response
    }

    public static func error(_ error: any Error) -> HTTPResponse {
        if let transferError = error as? TransferError { return self.error(transferError) }
        return self.error(TransferError(.internal, .http, "internal error: \(error)"))
    }
}

/// Receives a request body in pieces on the connection's thread.
///
/// `receive` may block (that is the backpressure on the client); if it throws, the rest of the
/// body is discarded and `finish` is still called, and must answer with the error. `abort` is
/// called instead of `finish` when the connection ends before the body did; `abort(_:)` says
/// why (a handler that does not care implements only `abort()`).
public protocol RequestBodyHandler: AnyObject, Sendable {
    func receive(_ bytes: UnsafeRawBufferPointer) throws
    func finish(error: (any Error)?) -> HTTPResponse
    func abort()
    func abort(_ reason: BodyAbortReason)
}

extension RequestBodyHandler {
    public func abort(_ reason: BodyAbortReason) { abort() }
}

/// Why a connection ended before its request body did.
public enum BodyAbortReason: Sendable, Equatable {
    /// The client closed the connection (or it broke).
    case connectionClosed
    /// Nothing arrived for the server's idle timeout (the client stalled); the connection was closed.
    case idleTimeout(seconds: Int)
    /// The server is shutting down.
    case shutdown
}

/// What a route does with a request: answer at once, or stream the body into a handler.
public enum RouteResult: Sendable {
    case respond(HTTPResponse)
    case consumeBody(any RequestBodyHandler)
}

/// A connection handed over after `101 Switching Protocols`.
public struct UpgradedConnection: Sendable {
    /// The socket, in blocking mode.
    public let descriptor: Int32
    /// Bytes the client sent after its request that the HTTP layer had already read.
    public let initialBytes: [UInt8]
}
