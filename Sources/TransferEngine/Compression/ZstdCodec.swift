private import CZstd

/// zstd compression, multi-threaded (used between our own nodes when the link is slower than
/// compression).
public final class ZstdEncoder: StreamCodec {
    private let context: OpaquePointer
    private let output: UnsafeMutableRawBufferPointer
    private var finished = false

    public init(level: Int = 1, threads: Int = 1, outputSize: Int = 256 * 1024) throws {
        guard let context = ZSTD_createCCtx() else { throw TransferError(.internal, .archive, "zstd: out of memory") }
        self.context = context
        output = .allocate(byteCount: outputSize, alignment: 64)
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level))
        // Workers > 0 runs compression on zstd's own threads; 0 keeps it on the caller's.
        ZSTD_CCtx_setParameter(context, ZSTD_c_nbWorkers, Int32(threads > 1 ? threads : 0))
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)
    }

    deinit {
        ZSTD_freeCCtx(context)
        output.deallocate()
    }

    public func process(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!finished, "process after finish")
        guard !input.isEmpty else { return }
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        while inBuffer.pos < inBuffer.size {
            try step(&inBuffer, ZSTD_e_continue, emit: emit)
        }
    }

    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!finished, "finish called twice")
        finished = true
        var inBuffer = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while try step(&inBuffer, ZSTD_e_end, emit: emit) != 0 {}
    }

    @discardableResult
    private func step(_ inBuffer: inout ZSTD_inBuffer, _ mode: ZSTD_EndDirective, emit: (UnsafeRawBufferPointer) throws -> Void) throws -> Int {
        var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        let remaining = ZSTD_compressStream2(context, &outBuffer, &inBuffer, mode)
        if ZSTD_isError(remaining) != 0 {
            throw TransferError(.internal, .archive, "zstd compression failed: \(String(cString: ZSTD_getErrorName(remaining)))")
        }
        if outBuffer.pos > 0 { try emit(UnsafeRawBufferPointer(rebasing: output[0..<outBuffer.pos])) }
        return remaining
    }
}

/// zstd decompression (frames checked with their content checksum when present).
public final class ZstdDecoder: StreamCodec {
    private let context: OpaquePointer
    private let output: UnsafeMutableRawBufferPointer
    private var frameOpen = false

    public init(outputSize: Int = 256 * 1024) throws {
        guard let context = ZSTD_createDCtx() else { throw TransferError(.internal, .archive, "zstd: out of memory") }
        self.context = context
        output = .allocate(byteCount: outputSize, alignment: 64)
    }

    deinit {
        ZSTD_freeDCtx(context)
        output.deallocate()
    }

    public func process(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        while inBuffer.pos < inBuffer.size {
            var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
            let hint = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
            if ZSTD_isError(hint) != 0 {
                throw TransferError(.invalidInput, .archive, "archive is damaged: zstd: \(String(cString: ZSTD_getErrorName(hint)))")
            }
            frameOpen = hint != 0
            if outBuffer.pos > 0 { try emit(UnsafeRawBufferPointer(rebasing: output[0..<outBuffer.pos])) }
        }
    }

    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard !frameOpen else { throw TransferError(.invalidInput, .archive, "zstd stream is truncated") }
    }
}
