private import CISAL
private import CTransferShims

/// gzip (RFC 1952) compression with Intel ISA-L's igzip: the same format zlib writes and every
/// gzip reader (GNU gzip, Go's compress/gzip in Wings, Python) accepts, several times faster.
public final class GzipEncoder: StreamCodec {
    private let stream: UnsafeMutablePointer<isal_zstream>
    private let levelBuffer: UnsafeMutableRawBufferPointer
    private let output: UnsafeMutableRawBufferPointer
    private var finished = false

    /// - Parameter level: ISA-L level 0…3 (1 is the fast default; 3 compresses best).
    public init(level: Int = 1, outputSize: Int = 256 * 1024) throws {
        let level = max(0, min(3, level))
        stream = .allocate(capacity: 1)
        isal_deflate_init(stream)
        levelBuffer = .allocate(byteCount: tx_isal_level_buffer_size(Int32(level)), alignment: 64)
        output = .allocate(byteCount: outputSize, alignment: 64)
        stream.pointee.level = UInt32(level)
        stream.pointee.level_buf = levelBuffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.pointee.level_buf_size = UInt32(levelBuffer.count)
        stream.pointee.gzip_flag = UInt16(IGZIP_GZIP)
    }

    deinit {
        stream.deallocate()
        levelBuffer.deallocate()
        output.deallocate()
    }

    public func process(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!finished, "process after finish")
        guard !input.isEmpty else { return }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: UInt8.self))
        stream.pointee.avail_in = UInt32(input.count)
        stream.pointee.end_of_stream = 0
        try run(emit: emit, until: { $0.pointee.avail_in == 0 })
    }

    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!finished, "finish called twice")
        finished = true
        stream.pointee.avail_in = 0
        stream.pointee.end_of_stream = 1
        try run(emit: emit, until: { $0.pointee.internal_state.state == ZSTATE_END })
    }

    private func run(emit: (UnsafeRawBufferPointer) throws -> Void, until done: (UnsafeMutablePointer<isal_zstream>) -> Bool) throws {
        repeat {
            stream.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
            stream.pointee.avail_out = UInt32(output.count)
            let status = isal_deflate(stream)
            guard status == COMP_OK else {
                throw TransferError(.internal, .archive, "gzip compression failed (ISA-L status \(status))")
            }
            let produced = output.count - Int(stream.pointee.avail_out)
            if produced > 0 { try emit(UnsafeRawBufferPointer(rebasing: output[0..<produced])) }
        } while !done(stream) || stream.pointee.avail_out == 0
    }
}

/// gzip decompression with ISA-L, verifying each member's CRC-32 and length (which libarchive's
/// reader does not), and accepting concatenated members as gzip(1) does.
public final class GzipDecoder: StreamCodec {
    private let state: UnsafeMutablePointer<inflate_state>
    private let output: UnsafeMutableRawBufferPointer
    private var memberOpen = false
    private var sawMember = false

    public init(outputSize: Int = 256 * 1024) throws {
        state = .allocate(capacity: 1)
        output = .allocate(byteCount: outputSize, alignment: 64)
        reset()
    }

    deinit {
        state.deallocate()
        output.deallocate()
    }

    private func reset() {
        isal_inflate_init(state)
        state.pointee.crc_flag = UInt32(ISAL_GZIP)
    }

    public func process(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard !input.isEmpty else { return }
        state.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: UInt8.self))
        state.pointee.avail_in = UInt32(input.count)
        while state.pointee.avail_in > 0 || memberOpen {
            if !memberOpen {
                // A new member starts here (the first, or one concatenated after a finished one).
                if sawMember { reset() }
                memberOpen = true
                sawMember = true
            }
            state.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
            state.pointee.avail_out = UInt32(output.count)
            let status = isal_inflate(state)
            guard status == ISAL_DECOMP_OK else { throw Self.error(status) }
            let produced = output.count - Int(state.pointee.avail_out)
            if produced > 0 { try emit(UnsafeRawBufferPointer(rebasing: output[0..<produced])) }
            if state.pointee.block_state == ISAL_BLOCK_FINISH {
                memberOpen = false
                continue
            }
            if produced == 0 && state.pointee.avail_in == 0 { break }
        }
    }

    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard sawMember, !memberOpen else {
            throw TransferError(.invalidInput, .archive, sawMember ? "gzip stream is truncated" : "archive is empty")
        }
    }

    static func error(_ status: Int32) -> TransferError {
        let reason =
            switch status {
            case ISAL_INCORRECT_CHECKSUM: "gzip CRC mismatch (data damaged in transit or at the source)"
            case ISAL_INVALID_WRAPPER: "not a gzip stream"
            default: "invalid deflate data (ISA-L status \(status))"
            }
        return TransferError(.invalidInput, .archive, "archive is damaged or not a tar.gz: \(reason)")
    }
}
