#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// One server-side websocket after the handshake: reads frames on the calling thread, answers
/// pings, reassembles messages, and runs the close handshake. `send` may be called from any thread
/// and never blocks: frames go to a bounded outbound buffer that non-blocking writes drain (at
/// once, and from the read loop when the socket is writable). A client whose buffer would pass
/// `maxOutboundBytes`, or that accepts nothing for `stalledWriteLimit` seconds, is dropped (socket
/// shut down, no close frame: it is not reading).
///
/// ```
///  socket ─poll(250 ms)─▶ WebSocketFrameParser ─▶ control? ping→pong, close→echo+stop
///                                              └▶ WebSocketMessageAssembler ─▶ onMessage(text)
///  every ~1 s ─▶ onTick()
///  send(text) ─lock─▶ outbound (≤ maxOutboundBytes) ─MSG_DONTWAIT─▶ socket   (rest on POLLOUT)
/// ```
public final class WebSocketConnection: @unchecked Sendable {
    /// Most bytes queued for one client; past this the client is dropped rather than waited for.
    public static let maxOutboundBytes = 1 << 20
    /// A client whose socket accepts no byte of pending output for this long is dropped.
    public static let stalledWriteLimit: Double = 20
    /// After a close frame is queued, how long the read loop still tries to deliver it.
    public static let closeFlushLimit: Double = 2

    private let descriptor: Int32
    private var pendingInput: [UInt8]
    private var parser: WebSocketFrameParser
    private var assembler: WebSocketMessageAssembler
    private let writeLock = Condition()
    // Guarded by writeLock.
    private var outbound: [UInt8] = []
    private var outboundStart = 0
    private var lastWriteProgress = MonotonicClock.now()
    private var closing = false  // a close frame is queued: no more frames
    private var finished = false  // the socket is done (peer gone, write error, or dropped)
    private let maxOutbound: Int
    private let stallLimit: Double

    public init(
        _ connection: UpgradedConnection, maxMessage: Int = 64 * 1024, maxOutbound: Int = WebSocketConnection.maxOutboundBytes,
        stalledWriteLimit: Double = WebSocketConnection.stalledWriteLimit
    ) {
        descriptor = connection.descriptor
        pendingInput = connection.initialBytes
        parser = WebSocketFrameParser(maxPayload: maxMessage)
        assembler = WebSocketMessageAssembler(maxMessage: maxMessage)
        self.maxOutbound = maxOutbound
        stallLimit = stalledWriteLimit
    }

    /// True once a close frame is queued or the socket is done: `send` refuses from then on.
    public var isClosed: Bool { writeLock.withLock { closing || finished } }

    /// True when the client was dropped or went away (not merely closing).
    public var isFinished: Bool { writeLock.withLock { finished } }

    /// Queues a text message; false if the connection is closed, or was dropped because the client
    /// does not read. Never blocks on the socket.
    @discardableResult
    public func send(text: String) -> Bool {
        send(frame: WebSocketFrame(opcode: .text, payload: Array(text.utf8)))
    }

    @discardableResult
    func send(frame: WebSocketFrame) -> Bool {
        writeLock.withLock {
            guard !closing, !finished else { return false }
            if frame.opcode == .close { closing = true }
            let bytes = frame.encoded()
            let pending = outbound.count - outboundStart
            if pending + bytes.count > maxOutbound {
                dropLocked()
                return false
            }
            if pending == 0 { lastWriteProgress = MonotonicClock.now() }
            outbound.append(contentsOf: bytes)
            flushLocked()
            return !finished
        }
    }

    /// Queues a close frame (if not closed yet); the read loop ends soon after.
    public func close(code: UInt16 = 1000, reason: String = "") {
        send(frame: .close(code, reason))
    }

    /// `close`, then delivers the frame (at most `closeFlushLimit` seconds) without the read loop:
    /// for a connection that is closed before `run` (the node is shutting down).
    public func closeAndFlush(code: UInt16, reason: String = "") {
        close(code: code, reason: reason)
        drainOutbound()
    }

    /// Writes what the socket takes now without blocking. Call with writeLock held.
    private func flushLocked() {
        while !finished, outboundStart < outbound.count {
            let n = outbound.withUnsafeBytes {
                Glibc.send(descriptor, $0.baseAddress! + outboundStart, outbound.count - outboundStart, sendWithoutSignal | Int32(MSG_DONTWAIT))
            }
            if n > 0 {
                outboundStart += n
                lastWriteProgress = MonotonicClock.now()
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                break
            } else {
                dropLocked()
            }
        }
        if outboundStart == outbound.count {
            outbound.removeAll(keepingCapacity: outbound.count <= 64 * 1024)
            outboundStart = 0
        } else if outboundStart > 64 * 1024 && outboundStart * 2 > outbound.count {
            outbound.removeFirst(outboundStart)
            outboundStart = 0
        }
    }

    /// Gives up on the client: frees the buffer and shuts the socket so the read loop ends.
    private func dropLocked() {
        finished = true
        outbound = []
        outboundStart = 0
        shutdown(descriptor, Int32(SHUT_RDWR))
    }

    /// Flushes; drops a stalled client. Returns (done, output still pending).
    private func service() -> (done: Bool, pending: Bool) {
        writeLock.withLock {
            guard !finished else { return (true, false) }
            flushLocked()
            let pending = outboundStart < outbound.count
            if pending && MonotonicClock.now() - lastWriteProgress > stallLimit { dropLocked() }
            return (finished || closing, !finished && pending)
        }
    }

    /// After the loop: try to deliver a queued close frame for at most `closeFlushLimit` seconds.
    private func drainOutbound() {
        let start = MonotonicClock.now()
        while true {
            let pending = writeLock.withLock { () -> Bool in
                flushLocked()
                return !finished && outboundStart < outbound.count
            }
            if !pending || MonotonicClock.now() - start > Self.closeFlushLimit { return }
            var poller = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            _ = poll(&poller, 1, 100)
        }
    }

    /// Runs until the peer closes, a protocol error, `close()`, or the client is dropped. Blocks
    /// the calling thread.
    public func run(onMessage: (WebSocketMessageAssembler.Message) -> Void, onTick: () -> Void) {
        defer { drainOutbound() }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var lastTick = MonotonicClock.now()
        var input = pendingInput
        pendingInput = []
        while true {
            if !input.isEmpty {
                do {
                    for frame in try parser.feed(input) {
                        if !handle(frame, onMessage: onMessage) { return }
                    }
                } catch {
                    close(code: error.code, reason: error.reason)
                    return
                }
                input = []
            }
            let (done, pending) = service()
            if done { return }
            let now = MonotonicClock.now()
            if now - lastTick >= 1 {
                lastTick = now
                onTick()
                if isClosed { return }
            }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN) | (pending ? Int16(POLLOUT) : 0), revents: 0)
            let ready = poll(&poller, 1, 250)
            if ready < 0 && errno != EINTR { return }
            guard ready > 0, poller.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 else { continue }
            let n = recv(descriptor, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                writeLock.withLock { finished = true }
                return
            }
            input = Array(buffer[0..<n])
        }
    }

    /// Handles one frame; false when the connection is finished.
    private func handle(_ frame: WebSocketFrame, onMessage: (WebSocketMessageAssembler.Message) -> Void) -> Bool {
        switch frame.opcode {
        case .ping:
            send(frame: WebSocketFrame(opcode: .pong, payload: frame.payload))
        case .pong:
            break
        case .close:
            // RFC 6455 §7.4: echo the code; a 1-byte body or an invalid code is itself an error.
            let payload = frame.payload
            if payload.isEmpty {
                close(code: 1000)
            } else if payload.count == 1 {
                close(code: 1002, reason: "invalid close frame")
            } else {
                let code = UInt16(payload[0]) << 8 | UInt16(payload[1])
                let valid = (1000...1003).contains(code) || (1007...1011).contains(code) || (3000...4999).contains(code)
                if !valid {
                    close(code: 1002, reason: "invalid close code")
                } else if String(validating: payload[2...], as: UTF8.self) == nil {
                    close(code: 1007, reason: "close reason is not UTF-8")
                } else {
                    close(code: code)
                }
            }
            return false
        case .text, .binary, .continuation:
            do {
                if let message = try assembler.add(frame) { onMessage(message) }
            } catch {
                close(code: error.code, reason: error.reason)
                return false
            }
        }
        return !isClosed
    }
}
