#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import TransferEngine

/// A connected pair of local stream sockets with small buffers: [server side, peer side].
private func socketPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
    var size: Int32 = 4096
    for fd in fds {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    return (fds[0], fds[1])
}

/// Reads what the peer has (non-blocking) until `seconds` pass without more.
private func drain(_ fd: Int32, quiet seconds: Int32 = 200) -> [UInt8] {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, seconds) > 0 else { return out }
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 0 else { return out }
        out += buffer[0..<n]
    }
}

struct WebSocketConnectionTests {
    /// A peer that never reads: any number of sends returns at once, and once the queue would pass
    /// its bound the client is dropped (send false, socket shut down), so memory stays bounded.
    @Test(arguments: [1, 100, 10_000, 60_000])
    func sendNeverBlocksOnAPeerThatDoesNotRead(messageSize: Int) {
        let (server, peer) = socketPair()
        defer {
            close(server)
            close(peer)
        }
        let connection = WebSocketConnection(UpgradedConnection(descriptor: server, initialBytes: []), maxOutbound: 256 * 1024)
        let text = String(repeating: "x", count: messageSize)
        let started = MonotonicClock.now()
        var accepted = 0
        for _ in 0..<(4 * 1024 * 1024 / messageSize + 10) {
            if !connection.send(text: text) { break }
            accepted += 1
        }
        #expect(MonotonicClock.now() - started < 5)
        #expect(connection.isFinished)
        #expect(!connection.send(text: "more"))
        // At most the bound (plus what the kernel took) was accepted.
        #expect(accepted * (messageSize + 2) <= 256 * 1024 + 64 * 1024)
    }

    /// A peer that reads slowly gets every message, in order, with nothing dropped.
    @Test func queuedMessagesArriveInOrderWhenThePeerReads() {
        let (server, peer) = socketPair()
        defer {
            close(server)
            close(peer)
        }
        let connection = WebSocketConnection(UpgradedConnection(descriptor: server, initialBytes: []))
        let reader = Thread {
            connection.run(onMessage: { _ in }, onTick: {})
        }
        reader.start()
        var expected: [UInt8] = []
        for i in 0..<2000 {
            let text = "message \(i) " + String(repeating: "y", count: i % 300)
            #expect(connection.send(text: text))
            expected += WebSocketFrame(opcode: .text, payload: Array(text.utf8)).encoded()
        }
        let received = drain(peer, quiet: 1000)
        #expect(received == expected)
        connection.close()
        #expect(Array(drain(peer).prefix(2)) == [0x88, 0x02])
    }

    /// Frames that fill the peer's socket buffers (4 KiB each way), so later ones wait in the
    /// connection's queue; returns the bytes the peer must see.
    private func fillBuffers(_ connection: WebSocketConnection) -> [UInt8] {
        var expected: [UInt8] = []
        for i in 0..<40 {
            let text = "event \(i) " + String(repeating: "z", count: 1000)
            #expect(connection.send(text: text))
            expected += WebSocketFrame(opcode: .text, payload: Array(text.utf8)).encoded()
        }
        return expected
    }

    /// A close queued behind output the peer has not read yet is written after it once the peer
    /// reads (within `closeFlushLimit`), before the read loop hands the socket back.
    @Test func closeBehindAFullSendBufferArrivesWhenThePeerReads() {
        let (server, peer) = socketPair()
        defer {
            close(server)
            close(peer)
        }
        let connection = WebSocketConnection(UpgradedConnection(descriptor: server, initialBytes: []))
        var expected = fillBuffers(connection)
        connection.close(code: 1008, reason: "not authenticated")
        expected += WebSocketFrame.close(1008, "not authenticated").encoded()
        let done = Condition()
        nonisolated(unsafe) var returned = false
        let reader = Thread {
            connection.run(onMessage: { _ in }, onTick: {})
            done.withLock { returned = true }
        }
        reader.start()
        usleep(300_000)  // the peer reads late, but within the limit
        #expect(!done.withLock { returned }, "the read loop handed the socket back before the close frame was written")
        #expect(drain(peer, quiet: 1000) == expected)
        #expect(!connection.isFinished)
    }

    /// The same for a connection closed before its read loop runs (the node is shutting down).
    @Test func closeAndFlushDeliversTheFrameWithoutTheReadLoop() {
        let (server, peer) = socketPair()
        defer {
            close(server)
            close(peer)
        }
        let connection = WebSocketConnection(UpgradedConnection(descriptor: server, initialBytes: []))
        var expected = fillBuffers(connection)
        expected += WebSocketFrame.close(1001, "node shutting down").encoded()
        let closer = Thread { connection.closeAndFlush(code: 1001, reason: "node shutting down") }
        closer.start()
        usleep(300_000)
        #expect(drain(peer, quiet: 1000) == expected)
    }
}

struct WingsEventSessionTests {
    /// A socket that never authenticates (or only sends junk) is closed with 1008 after the deadline.
    @Test(arguments: [[], ["{\"event\":\"send logs\",\"args\":[]}"], ["{\"event\":\"auth\",\"args\":[\"bad\"]}"]])
    func unauthenticatedSocketIsClosedAfterTheDeadline(messages: [String]) throws {
        let (server, peer) = socketPair()
        defer {
            close(server)
            close(peer)
        }
        let connection = WebSocketConnection(UpgradedConnection(descriptor: server, initialBytes: []))
        let session = WingsEventSession(
            server: TestTokens.serverUUID, connection: connection, verifier: TokenVerifier(secret: TestTokens.secret),
            denyList: WebsocketDenyList(), events: TransferEvents(), authenticationDeadline: 1)
        for message in messages {
            var frame = WebSocketFrame(opcode: .text, payload: Array(message.utf8)).encoded()
            frame[1] |= 0x80  // client frames are masked; a zero mask key keeps the payload
            frame.insert(contentsOf: [0, 0, 0, 0], at: frame[1] & 0x7F == 126 ? 4 : 2)
            _ = frame.withUnsafeBytes { send(peer, $0.baseAddress!, frame.count, 0) }
        }
        let started = MonotonicClock.now()
        session.run()
        let elapsed = MonotonicClock.now() - started
        #expect(elapsed >= 0.9 && elapsed < 8)
        let bytes = drain(peer)
        // The last frame is a close with code 1008.
        let close = try #require(bytes.lastIndex(of: 0x88))
        #expect(Array(bytes[(close + 2)..<(close + 4)]) == [0x03, 0xF0])
    }
}
