#if canImport(Glibc)
import Glibc
#endif

/// Minimal leveled logger writing one line per event to standard error.
///
/// Lines are written with one `write(2)` so lines from different threads never interleave.
/// Messages never contain secrets: callers log token *claims*, never tokens, and URL credentials
/// are redacted here.
public enum Log {
    public enum Level: Int, Sendable, Comparable {
        case debug, info, warning, error
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        var label: String {
            switch self {
            case .debug: "DEBUG"
            case .info: "INFO "
            case .warning: "WARN "
            case .error: "ERROR"
            }
        }
    }

    nonisolated(unsafe) public static var minimumLevel: Level = .info

    public static func debug(_ message: @autoclosure () -> String) { emit(.debug, message) }
    public static func info(_ message: @autoclosure () -> String) { emit(.info, message) }
    public static func warning(_ message: @autoclosure () -> String) { emit(.warning, message) }
    public static func error(_ message: @autoclosure () -> String) { emit(.error, message) }

    private static func emit(_ level: Level, _ message: () -> String) {
        guard level >= minimumLevel else { return }
        // One event, one line, whatever the message carries (see escapingControlCharacters), and
        // no password written into a URL (see Redaction).
        let line = "\(timestamp()) \(level.label) \(message().escapingControlCharacters.redactingURLCredentials)\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { _ = write(2, $0.baseAddress, $0.count) }
    }

    /// UTC time with millisecond precision, ISO 8601.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int = 2) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday))T"
            + "\(pad(parts.tm_hour)):\(pad(parts.tm_min)):\(pad(parts.tm_sec)).\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}
