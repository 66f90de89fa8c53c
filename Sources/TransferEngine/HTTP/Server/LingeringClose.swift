#if canImport(Glibc)
import Glibc
#endif

/// The close of a connection whose request was answered before its body was read.
///
/// ```
///  answer sent ─▶ shutdown(SHUT_WR) ─▶ recv and drop … until the client closes ─▶ close
///                 (plain HTTP: FIN)      or the budget (bytes, seconds) is spent
/// ```
/// Closing a socket that still has unread bytes makes the kernel send RST instead of FIN. A client
/// still writing its body then fails its next write ("Connection reset", or "Broken pipe" once our
/// FIN came first) and may never read the answer already in its buffer: curl gave up with
/// `(55) Send failure` in ~5 % of early 4xx answers to a large upload (~25 % over TLS), Python
/// `requests` over TLS in all of them. RFC 9112 §9.6 asks for this staged close; Go's net/http and
/// Apache's `lingering_close` do the same.
///
/// Under TLS our side is not shut for writing: libmicrohttpd sends its close_notify after this
/// returns, and TLS clients that only read once their body is sent (requests) need the body read.
struct LingeringClose {
    /// What the drain ended on.
    enum Outcome: Equatable {
        /// The client closed its side (or reset): nothing unread is left, the close sends no RST.
        case clientClosed
        /// Bytes or time ran out first: the close may reset what the client has not read.
        case budgetSpent
    }

    /// At most `byteLimit` more bytes, until `deadline` (monotonic seconds).
    struct Budget: Equatable {
        let deadline: Double
        private(set) var bytesLeft: Int64

        init(startedAt: Double, byteLimit: Int64, seconds: Double) {
            deadline = startedAt + seconds
            bytesLeft = byteLimit
        }

        /// Counts `count` bytes read at `now`; false once bytes or time are spent (stop reading).
        mutating func read(_ count: Int, at now: Double) -> Bool {
            bytesLeft -= Int64(count)
            return bytesLeft > 0 && now < deadline
        }

        /// Seconds left at `now` (0 when past the deadline).
        func secondsLeft(at now: Double) -> Double { max(0, deadline - now) }

        var isSpent: Bool { bytesLeft <= 0 }
    }

    /// Shuts the write side (when `shutWrite`), then reads and drops input until the client closes
    /// or `budget` is spent. The descriptor stays open (its owner closes it); it may be non-blocking.
    /// Blocks the calling thread for at most the budget's time.
    static func drain(descriptor: Int32, shutWrite: Bool, budget: inout Budget) -> Outcome {
        if shutWrite { _ = shutdown(descriptor, Int32(SHUT_WR)) }
        var scratch = [UInt8](repeating: 0, count: 64 << 10)
        while !budget.isSpent {
            let now = MonotonicClock.now()
            let left = budget.secondsLeft(at: now)
            guard left > 0 else { return .budgetSpent }
            var entry = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, Int32(min(left * 1000 + 1, 60_000)))
            if ready < 0 {
                if errno == EINTR { continue }
                return .clientClosed  // not a socket we can read any more: nothing to protect
            }
            if ready == 0 { continue }  // the deadline check above ends it
            let n = scratch.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { return .clientClosed }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                return .clientClosed  // ECONNRESET and the like: the client is gone
            }
            if !budget.read(n, at: MonotonicClock.now()) { return .budgetSpent }
        }
        return .budgetSpent
    }
}
