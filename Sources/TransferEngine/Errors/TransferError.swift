/// The one error type the engine throws.
///
/// `code` says what kind of failure it is (and so which HTTP status or exit code it maps to),
/// `stage` says where it happened, `message` is for people (paths, sizes, peers) and never holds
/// secrets, `cause` keeps the lower-level error (a C library's status) for logs.
public struct TransferError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. A struct over a private enum so codes can be added later.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Sendable {
            case invalidInput, integrity, unauthorized, forbidden, notFound, conflict, exists, tooLarge
            case io, network, timeout, cancelled, unsupported, `internal`
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        public static let invalidInput = Code(.invalidInput)
        public static let integrity = Code(.integrity)
        /// No or malformed credentials (HTTP 401).
        public static let unauthorized = Code(.unauthorized)
        /// Credentials present but refused: bad signature, expired, wrong scope (HTTP 403).
        public static let forbidden = Code(.forbidden)
        public static let notFound = Code(.notFound)
        /// Busy now (a transfer holds the server): may work later (HTTP 409, exit 75).
        public static let conflict = Code(.conflict)
        /// What was to be created is already there (and is not to be replaced): trying again
        /// cannot help (HTTP 409, exit 73).
        public static let exists = Code(.exists)
        public static let tooLarge = Code(.tooLarge)
        public static let io = Code(.io)
        public static let network = Code(.network)
        public static let timeout = Code(.timeout)
        public static let cancelled = Code(.cancelled)
        public static let unsupported = Code(.unsupported)
        public static let `internal` = Code(.internal)

        public var description: String { kind.rawValue }

        /// Whether trying the same operation again may succeed (decided here, never at call sites).
        public var isRetryable: Bool { self == .network || self == .timeout }
    }

    /// The pipeline stage that failed.
    public enum Stage: String, Sendable {
        case archive, hashing, multipart, http, auth, volumes, transfer, config, cli
    }

    public var code: Code
    public var stage: Stage
    public var message: String
    public var cause: (any Error & Sendable)?

    public init(_ code: Code, _ stage: Stage, _ message: String, cause: (any Error & Sendable)? = nil) {
        self.code = code
        self.stage = stage
        self.message = message
        self.cause = cause
    }

    public var description: String { message }
}

/// An OS call that failed, with errno kept for logs and mapping.
struct SystemCallError: Error, Sendable, CustomStringConvertible {
    let call: String
    let errno: Int32
    var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// The cause of an error made from a node's answer: the HTTP status it answered with.
public struct NodeAnswer: Error, Sendable {
    public var status: Int
}

#if canImport(Glibc)
import Glibc
#endif

extension TransferError {
    /// Wraps a failed system call on `path` once, with context, as an I/O error.
    static func system(
        _ call: String, path: String, errno code: Int32 = errno, stage: Stage = .volumes
    ) -> TransferError {
        let reason = String(cString: strerror(code))
        let kind: Code = code == ENOENT ? .notFound : .io
        return TransferError(kind, stage, "\(path): \(reason)", cause: SystemCallError(call: call, errno: code))
    }
}
