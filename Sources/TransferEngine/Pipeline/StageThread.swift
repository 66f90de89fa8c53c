#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Dispatch

/// Runs one pipeline stage on its own thread and hands its outcome back on `join()`.
///
/// Stages that block on a `BoundedChunkBuffer` (or are called back synchronously by a C library)
/// each get a thread; the buffers between them bound memory and carry errors both ways.
public final class StageThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var failure: (any Error)?

    /// Starts `body` at once on a thread named `name`.
    public init(name: String, _ body: @escaping @Sendable () throws -> Void) {
        spawnThread(name: name) { [self] in
            do {
                try body()
            } catch {
                failure = error
            }
            done.signal()
        }
    }

    /// Waits for the stage to end; returns its error, if any. May be called more than once.
    @discardableResult
    public func join() -> (any Error)? {
        done.wait()
        done.signal()
        return failure
    }
}

/// Moves chunks from one buffer to another through a codec (compressor or decompressor).
///
/// ```
///  input.receive() ─inputTap▶ codec.process ─emit▶ tap ▶ output(bytes)      end: codec.finish ─emit▶ output
/// ```
/// `inputTap` sees every input byte and `tap` every output byte, on this thread (a hasher there
/// takes work off the threads on either side). A codec that passes its input through (plain tar)
/// has its chunks handed on without a copy; other output is gathered into 256 KiB chunks. Any failure fails both buffers, so the stages on
/// either side stop instead of waiting.
public enum CodecStage {
    public static func start(
        name: String, input: BoundedChunkBuffer, codec: any StreamCodec, output: BoundedChunkBuffer,
        inputTap: (@Sendable (UnsafeRawBufferPointer) -> Void)? = nil,
        tap: (@Sendable (UnsafeRawBufferPointer) -> Void)? = nil
    ) -> StageThread {
        nonisolated(unsafe) let codec = codec
        return StageThread(name: name) {
            do {
                // Output in chunks of one size (a codec emits pieces of any size): a flat heap.
                var assembler = ChunkAssembler()
                let emit: (UnsafeRawBufferPointer) throws -> Void = { bytes in
                    tap?(bytes)
                    try assembler.append(bytes) { try output.send($0) }
                }
                while let chunk = try input.receive() {
                    if let inputTap { chunk.withUnsafeBytes { inputTap($0) } }
                    if codec.passesInputThrough {
                        if let tap { chunk.withUnsafeBytes { tap($0) } }
                        try assembler.flush { try output.send($0) }
                        try output.send(chunk)
                        continue
                    }
                    try chunk.withUnsafeBytes { try codec.process($0, emit: emit) }
                }
                try codec.finish(emit: emit)
                try assembler.flush { try output.send($0) }
                output.finish()
            } catch {
                input.fail(error)
                output.fail(error)
                throw error
            }
        }
    }
}
