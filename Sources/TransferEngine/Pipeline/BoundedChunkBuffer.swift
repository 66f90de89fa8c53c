#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// A blocking, bounded queue of byte chunks between two threads: the bridge between a stage
/// that pushes (an HTTP body callback, libarchive's write callback) and one that pulls
/// (libarchive's read callback, libcurl's read callback).
///
/// ```
///  producer thread ──send()──▶ [ chunk | chunk | … ≤ capacity bytes ] ──receive()──▶ consumer thread
/// ```
///
/// `send` blocks while the queued bytes exceed `capacity`: that is the backpressure, and it bounds
/// memory to `capacity` plus one chunk. Either side can `fail` the buffer; the other side then
/// sees the error on its next call, so neither thread is left waiting forever. Threads (not tasks)
/// are the right tool here because the C libraries on both ends call back synchronously.
public final class BoundedChunkBuffer: @unchecked Sendable {
    private let condition = Condition()
    private var chunks: [[UInt8]] = []
    private var head = 0
    private var queuedBytes = 0
    private var finished = false
    private var failure: (any Error)?
    /// The most bytes queued before `send` blocks.
    public let capacity: Int

    public init(capacity: Int = 4 << 20) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    /// Queues a chunk, blocking while the buffer is full. Throws the failure if either side failed.
    public func send(_ chunk: [UInt8]) throws {
        guard !chunk.isEmpty else { return }
        condition.lock()
        defer { condition.unlock() }
        while queuedBytes >= capacity && failure == nil {
            condition.wait()
        }
        if let failure { throw failure }
        precondition(!finished, "send after finish")
        chunks.append(chunk)
        queuedBytes += chunk.count
        condition.broadcast()
    }

    /// Marks the end of the stream: `receive` returns nil once the queue drains.
    public func finish() {
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }

    /// Fails the stream from either side. The first failure wins; queued chunks are dropped.
    public func fail(_ error: any Error) {
        condition.lock()
        if failure == nil { failure = error }
        chunks.removeAll()
        head = 0
        queuedBytes = 0
        condition.broadcast()
        condition.unlock()
    }

    /// The next chunk, blocking until one is queued; nil at the end of the stream.
    public func receive() throws -> [UInt8]? {
        condition.lock()
        defer { condition.unlock() }
        while head == chunks.count && !finished && failure == nil {
            condition.wait()
        }
        if let failure { throw failure }
        if head == chunks.count { return nil }
        let chunk = chunks[head]
        chunks[head] = []  // drop our reference now, or consumed chunks stay alive until compaction
        head += 1
        queuedBytes -= chunk.count
        if head > 64 && head * 2 > chunks.count {
            chunks.removeFirst(head)
            head = 0
        }
        condition.broadcast()
        return chunk
    }
}
