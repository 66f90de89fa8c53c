#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Flushes small files to disk while extraction goes on, on a helper thread, so the commit's final
/// `syncfs` finds little left to write.
///
/// ```
///  extract thread ─noteWritten(bytes)─▶ [pending ≥ threshold] ─signal─▶ flusher thread: syncfs(staging)
/// ```
/// Big files start their own writeback (`sync_file_range`) as they arrive; small ones are not
/// worth a syscall each, and without this their writeback all waited for the commit: about a
/// third of a 25,000-file transfer's time went to the final `syncfs`. One `syncfs` per few MiB,
/// off the extract thread, turns that wait into work done while the data still arrives.
final class BackgroundFlusher: @unchecked Sendable {
    private let condition = Condition()
    private let descriptor: Int32
    private let thresholdBytes: Int
    private var pendingBytes = 0
    private var requested = false
    private var stopping = false
    private var stopped = false
    private var thread: StageThread?
    private var completedFlushes = 0
    /// Flushes run so far.
    var flushes: Int { condition.withLock { completedFlushes } }

    /// Each file costs at least a block and an inode write, whatever its size.
    static let perFileCost = 4096

    /// - Parameters:
    ///   - descriptor: an open directory on the file system to flush (duplicated; the caller keeps its own).
    ///   - thresholdBytes: unflushed bytes (counting `perFileCost` per file) that trigger a flush.
    init(descriptor: Int32, thresholdBytes: Int = 16 << 20) {
        self.descriptor = dup(descriptor)
        self.thresholdBytes = thresholdBytes
    }

    deinit {
        stop()
    }

    /// Records a file of `bytes` written and not yet flushed; may wake the flusher.
    func noteWritten(bytes: Int) {
        condition.lock()
        defer { condition.unlock() }
        pendingBytes += bytes + Self.perFileCost
        guard pendingBytes >= thresholdBytes, !requested, !stopping, descriptor >= 0 else { return }
        pendingBytes = 0
        requested = true
        if thread == nil {
            thread = StageThread(name: "flush") { [self] in run() }
        }
        condition.broadcast()
    }

    /// Ends the flusher, waiting for a flush in progress (the commit's own syncfs follows).
    func stop() {
        condition.lock()
        if stopped {
            condition.unlock()
            return
        }
        stopped = true
        stopping = true
        condition.broadcast()
        let running = thread
        condition.unlock()
        running?.join()
        if descriptor >= 0 { close(descriptor) }
    }

    private func run() {
        condition.lock()
        while true {
            while !requested && !stopping { condition.wait() }
            if stopping { break }
            requested = false
            condition.unlock()
            // Errors here are not fatal: the commit's own syncfs reports them.
            _ = tx_syncfs(descriptor)
            condition.lock()
            completedFlushes += 1
        }
        condition.unlock()
    }
}
