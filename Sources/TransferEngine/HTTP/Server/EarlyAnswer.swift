#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The answer to a request whose body is still arriving, written straight to the socket.
///
/// libmicrohttpd 0.9.75 cannot queue a response before the body has ended, yet a request may
/// have to be answered earlier: its handler failed (a damaged archive), or the transfer was
/// cancelled on this node from another thread (`DELETE /api/transfers/:uuid`, shutdown). Both
/// the connection thread and a canceller may try to answer; whoever comes first wins, and the
/// connection thread's normal response (`claimForQueue`) is skipped once an early one went out.
/// On plain HTTP the answer goes out with `Connection: close` and our side is shut for writing,
/// so clients like curl read it and stop sending. Under TLS raw bytes cannot be written: the
/// canceller cuts the connection instead, and a failing handler's answer waits for the body's end.
public final class EarlyAnswer: Sendable {
    private enum State { case open, queued, sent(Int), cut }
    private let state = Mutex(State.open)
    private let descriptor: Int32
    private let tls: Bool

    init(descriptor: Int32, tls: Bool) {
        self.descriptor = descriptor
        self.tls = tls
    }

    /// Whether raw bytes can be written (plain HTTP on a known socket).
    var canWrite: Bool { !tls && descriptor >= 0 }

    /// The status written early, if any.
    var sentStatus: Int? {
        state.withLock { if case .sent(let status) = $0 { status } else { nil } }
    }

    /// Whether the request was answered early or its connection cut: nothing more may be written.
    var isSettled: Bool {
        state.withLock { if case .open = $0 { false } else if case .queued = $0 { false } else { true } }
    }

    /// For the connection thread before it queues its response: false once an early answer went out.
    func claimForQueue() -> Bool {
        state.withLock {
            guard case .open = $0 else { return false }
            $0 = .queued
            return true
        }
    }

    /// Writes `response` now (plain HTTP) or, when that cannot be done and `cutOtherwise`, cuts the
    /// connection. Does nothing once the request has been answered. Safe from any thread.
    public func send(_ response: HTTPResponse, cutOtherwise: Bool) {
        state.withLock {
            guard case .open = $0 else { return }
            guard canWrite, case .bytes(let body) = response.body else {
                if cutOtherwise {
                    if descriptor >= 0 { _ = shutdown(descriptor, Int32(SHUT_RDWR)) }
                    $0 = .cut
                }
                return
            }
            var head = "HTTP/1.1 \(response.status) \(HTTPServer.reason(response.status))\r\n"
            for (name, value) in response.headers { head += "\(name): \(value)\r\n" }
            head += "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n"
            let bytes = Array(head.utf8) + body
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress! + offset, bytes.count - offset, sendWithoutSignal | Int32(MSG_DONTWAIT)) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
            _ = shutdown(descriptor, Int32(SHUT_WR))
            $0 = .sent(response.status)
        }
    }
}
