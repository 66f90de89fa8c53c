import Foundation
import Testing
@testable import TransferEngine

/// Threads (not tasks), as in production: the buffer blocks. Every wait has a timeout so a bug
/// fails the test instead of hanging the suite.
struct BoundedChunkBufferTests {
    struct Cancelled: Error, Equatable {}

    /// A producer moves 10 MB in uneven chunks through a 64 KiB buffer; the consumer gets every byte
    /// in order, and the producer never runs more than capacity + one chunk ahead.
    @Test func tenMegabytesThroughSixtyFourKiB() throws {
        let capacity = 64 * 1024
        let buffer = BoundedChunkBuffer(capacity: capacity)
        var rng = SplitMix64(seed: 10)
        let input = rng.bytes(10_000_000)
        let sent = Locked(0)
        let producerError = Locked<(any Error)?>(nil)
        let producerDone = DispatchSemaphore(value: 0)
        let largestChunk = 100_000
        Thread.detachNewThread {
            var rng = SplitMix64(seed: 11)
            var offset = 0
            do {
                while offset < input.count {
                    let size = Int(rng.next() % UInt64(largestChunk)) + 1
                    let end = min(input.count, offset + size)
                    try buffer.send(Array(input[offset..<end]))
                    offset = end
                    sent.set(offset)
                }
                buffer.finish()
            } catch {
                producerError.set(error)
            }
            producerDone.signal()
        }
        var received: [UInt8] = []
        received.reserveCapacity(input.count)
        var maxAhead = 0
        while let chunk = try buffer.receive() {
            #expect(!chunk.isEmpty)
            received += chunk
            maxAhead = max(maxAhead, sent.get() - received.count)
        }
        #expect(producerDone.wait(timeout: .now() + 10) == .success)
        #expect(producerError.get() == nil)
        #expect(received.count == input.count)
        #expect(received == input)
        // Queued bytes stay below capacity + one chunk; the chunk being handed over adds one more.
        #expect(maxAhead <= capacity + 2 * largestChunk, "producer ran \(maxAhead) bytes ahead")
    }

    /// `send` blocks while the buffer is at capacity and returns once the consumer takes a chunk.
    @Test func sendBlocksWhenFull() throws {
        let buffer = BoundedChunkBuffer(capacity: 1024)
        try buffer.send([UInt8](repeating: 1, count: 1024))
        let secondSent = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? buffer.send([2])
            secondSent.signal()
        }
        #expect(secondSent.wait(timeout: .now() + 0.2) == .timedOut, "send returned while the buffer was full")
        #expect(try buffer.receive()?.count == 1024)
        #expect(secondSent.wait(timeout: .now() + 10) == .success, "send stayed blocked after a receive")
        #expect(try buffer.receive() == [2])
    }

    /// `fail` from the consumer wakes a producer blocked in `send`, which then throws that error.
    @Test func failFromConsumerUnblocksProducer() throws {
        let buffer = BoundedChunkBuffer(capacity: 16)
        try buffer.send([UInt8](repeating: 0, count: 16))
        let outcome = Locked<Result<Void, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let entered = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            entered.signal()
            outcome.set(Result { try buffer.send([1, 2, 3]) })
            done.signal()
        }
        entered.wait()
        #expect(done.wait(timeout: .now() + 0.1) == .timedOut, "send should block on a full buffer")
        buffer.fail(Cancelled())
        try #require(done.wait(timeout: .now() + 10) == .success, "producer still blocked after fail()")
        guard case .failure(let error) = try #require(outcome.get()) else {
            Issue.record("send succeeded after fail()")
            return
        }
        #expect(error is Cancelled)
        // Both sides now see the failure; queued chunks are dropped.
        #expect(throws: Cancelled.self) { _ = try buffer.receive() }
        #expect(throws: Cancelled.self) { try buffer.send([9]) }
    }

    /// `fail` from the producer wakes a consumer blocked in `receive`.
    @Test func failFromProducerUnblocksConsumer() throws {
        let buffer = BoundedChunkBuffer(capacity: 16)
        let outcome = Locked<Result<[UInt8]?, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            outcome.set(Result { try buffer.receive() })
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 0.1) == .timedOut, "receive should block on an empty buffer")
        buffer.fail(Cancelled())
        try #require(done.wait(timeout: .now() + 10) == .success, "consumer still blocked after fail()")
        guard case .failure(let error) = try #require(outcome.get()) else {
            Issue.record("receive succeeded after fail()")
            return
        }
        #expect(error is Cancelled)
    }

    /// After `finish`, `receive` drains what is queued, in order, then returns nil (and keeps doing so).
    @Test func finishDrainsThenEnds() throws {
        let buffer = BoundedChunkBuffer(capacity: 1 << 20)
        try buffer.send([1])
        try buffer.send([2, 2])
        try buffer.send([])  // empty chunks are not queued
        try buffer.send([3, 3, 3])
        buffer.finish()
        #expect(try buffer.receive() == [1])
        #expect(try buffer.receive() == [2, 2])
        #expect(try buffer.receive() == [3, 3, 3])
        #expect(try buffer.receive() == nil)
        #expect(try buffer.receive() == nil)
    }

    /// `finish` wakes a consumer blocked on an empty buffer.
    @Test func finishUnblocksWaitingConsumer() throws {
        let buffer = BoundedChunkBuffer(capacity: 16)
        let outcome = Locked<Result<[UInt8]?, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            outcome.set(Result { try buffer.receive() })
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 0.1) == .timedOut)
        buffer.finish()
        try #require(done.wait(timeout: .now() + 10) == .success, "consumer still blocked after finish()")
        let result = try #require(outcome.get())
        #expect(try result.get() == nil)
    }

    /// The first failure wins.
    @Test func firstFailureWins() {
        struct Other: Error {}
        let buffer = BoundedChunkBuffer(capacity: 16)
        buffer.fail(Cancelled())
        buffer.fail(Other())
        #expect(throws: Cancelled.self) { _ = try buffer.receive() }
    }
}
