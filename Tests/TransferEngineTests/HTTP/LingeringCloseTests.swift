#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Testing
@testable import TransferEngine

/// A connected pair of local stream sockets: [our side, the client's side].
private func socketPair() -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}

/// The client's side, on its own thread: sends `total` bytes (or until a send fails), then, when
/// `thenClose`, waits for our end of stream and closes.
private final class Client: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    /// Whether the client saw our end of stream (valid after `wait`).
    private(set) var sawEnd = false

    init(_ fd: Int32, sending total: Int, thenClose: Bool) {
        spawnThread(name: "test-client") { [self] in
            let block = [UInt8](repeating: 7, count: 8192)
            var sent = 0
            while sent < total {
                let count = min(block.count, total - sent)
                let n = block.withUnsafeBytes { send(fd, $0.baseAddress, count, sendWithoutSignal) }
                if n <= 0 { break }
                sent += n
            }
            if thenClose {
                var byte: UInt8 = 0
                sawEnd = recv(fd, &byte, 1, 0) == 0
                close(fd)
            }
            done.signal()
        }
    }

    func wait() { done.wait() }
}

struct LingeringCloseTests {
    @Test func budgetEndsAtItsByteLimit() {
        var budget = LingeringClose.Budget(startedAt: 100, byteLimit: 10, seconds: 5)
        let first = budget.read(4, at: 101)
        #expect(first && !budget.isSpent)
        let second = budget.read(6, at: 102)
        #expect(!second && budget.isSpent)
    }

    @Test func budgetEndsAtItsDeadline() {
        var budget = LingeringClose.Budget(startedAt: 100, byteLimit: 1 << 20, seconds: 2)
        #expect(budget.secondsLeft(at: 101.5) == 0.5)
        let more = budget.read(1, at: 102)
        #expect(!more)
        #expect(budget.secondsLeft(at: 103) == 0)
        #expect(!budget.isSpent)  // bytes are left; the drain ends on the time
    }

    /// The usual case: the client, having read the answer, stops sending and closes; everything it
    /// sent is read (so the close sends FIN, not RST) and our side was shut for writing first.
    @Test func drainsUntilTheClientCloses() {
        let (ours, client) = socketPair()
        defer { close(ours) }
        let peer = Client(client, sending: 300_000, thenClose: true)
        var budget = LingeringClose.Budget(startedAt: MonotonicClock.now(), byteLimit: 1 << 20, seconds: 5)
        let outcome = LingeringClose.drain(descriptor: ours, shutWrite: true, budget: &budget)
        peer.wait()
        #expect(outcome == .clientClosed)
        #expect(peer.sawEnd)
        #expect(budget.bytesLeft == (1 << 20) - 300_000)
    }

    /// A client that keeps the connection open without sending is given up on at the deadline.
    @Test func givesUpOnASilentClientAtTheDeadline() {
        let (ours, client) = socketPair()
        defer {
            close(ours)
            close(client)
        }
        var budget = LingeringClose.Budget(startedAt: MonotonicClock.now(), byteLimit: 1 << 20, seconds: 0.2)
        let started = MonotonicClock.now()
        let outcome = LingeringClose.drain(descriptor: ours, shutWrite: false, budget: &budget)
        #expect(outcome == .budgetSpent)
        let elapsed = MonotonicClock.now() - started
        #expect(elapsed >= 0.19 && elapsed < 2)
    }

    /// A client that never stops sending is read for at most the byte limit (then closed on).
    @Test func readsAtMostTheByteLimit() {
        let (ours, client) = socketPair()
        var budget = LingeringClose.Budget(startedAt: MonotonicClock.now(), byteLimit: 256 << 10, seconds: 10)
        let peer = Client(client, sending: 64 << 20, thenClose: false)
        let outcome = LingeringClose.drain(descriptor: ours, shutWrite: false, budget: &budget)
        #expect(outcome == .budgetSpent)
        #expect(budget.isSpent && budget.bytesLeft > -(64 << 10))  // one recv past the limit at most
        close(ours)  // the client's next send fails
        peer.wait()
        close(client)
    }
}
