#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// One server-side websocket after the handshake: reads frames on the calling thread, answers
/// pings, reassembles messages, and runs the close handshake. `send` may be called from any thread.
///
/// ```
///  socket ─poll(1 s)─▶ WebSocketFrameParser ─▶ control? ping→pong, close→echo+stop
///                                           └▶ WebSocketMessageAssembler ─▶ onMessage(text)
///  every ~1 s ─▶ onTick()                       send(text) ─lock─▶ socket
/// ```
public final class WebSocketConnection: @unchecked Sendable {
    private let descriptor: Int32
    private var pendingInput: [UInt8]
    private var parser: WebSocketFrameParser
    private var assembler: WebSocketMessageAssembler
    private let writeLock = Condition()
    private var closed = false

    public init(_ connection: UpgradedConnection, maxMessage: Int = 64 * 1024) {
        descriptor = connection.descriptor
        pendingInput = connection.initialBytes
        parser = WebSocketFrameParser(maxPayload: maxMessage)
        assembler = WebSocketMessageAssembler(maxMessage: maxMessage)
        // A client that stops reading must not block event delivery forever.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    public var isClosed: Bool { writeLock.withLock { closed } }

    /// Sends a text message; false if the connection is closed or the write failed.
    @discardableResult
    public func send(text: String) -> Bool {
        send(frame: WebSocketFrame(opcode: .text, payload: Array(text.utf8)))
    }

    @discardableResult
    func send(frame: WebSocketFrame) -> Bool {
        writeLock.withLock {
            guard !closed else { return false }
            if frame.opcode == .close { closed = true }
            let bytes = frame.encoded()
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress! + offset, bytes.count - offset, sendWithoutSignal) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    closed = true
                    return false
                }
                offset += n
            }
            return true
        }
    }

    /// Sends a close frame (if not closed yet); the read loop ends soon after.
    public func close(code: UInt16 = 1000, reason: String = "") {
        send(frame: .close(code, reason))
    }

    /// Runs until the peer closes, a protocol error, or `close()`. Blocks the calling thread.
    public func run(onMessage: (WebSocketMessageAssembler.Message) -> Void, onTick: () -> Void) {
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
            if isClosed { return }
            let now = MonotonicClock.now()
            if now - lastTick >= 1 {
                lastTick = now
                onTick()
            }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 250)
            if ready < 0 && errno != EINTR { return }
            guard ready > 0 else { continue }
            let n = recv(descriptor, &buffer, buffer.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                writeLock.withLock { closed = true }
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
