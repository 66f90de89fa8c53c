private import CISAL
private import CTransferShims

/// gzip (RFC 1952) compression with Intel ISA-L's igzip: the same format zlib writes and every
/// gzip reader (GNU gzip, Go's compress/gzip in Wings, Python) accepts, several times faster.
///
/// ```
///  input ─▶ 512 KiB segments ─▶ IncompressibleRuns ─┬─ deflate run: isal_deflate_stateless(FULL_FLUSH)
///                                                   └─ stored run:  stored blocks, copied as they are
///        ─▶ one gzip member (header · blocks · empty final block · CRC32, size)
/// ```
/// Each run is compressed on its own (byte-aligned, no shared history). Incompressible runs
/// (jars, region-file chunks, logs already gzipped) are stored, so they cost neither side a
/// Huffman pass: the receiver inflates them at memcpy speed.
public final class GzipEncoder: StreamCodec {
    private let stream: UnsafeMutablePointer<isal_zstream>
    private let levelBuffer: UnsafeMutableRawBufferPointer
    private let segment: UnsafeMutableRawBufferPointer
    private let output: UnsafeMutableRawBufferPointer
    private let level: UInt32
    private var filled = 0
    private var crc: UInt32 = 0
    private var total: UInt64 = 0
    private var started = false
    private var finished = false
    /// Input bytes sent as stored blocks so far (incompressible runs).
    public private(set) var storedBytes: UInt64 = 0

    /// - Parameter level: ISA-L level 0…3 (1 is the fast default; 3 compresses best).
    public init(level: Int = 1, segmentSize: Int = 512 * 1024) throws {
        let level = max(0, min(3, level))
        self.level = UInt32(level)
        stream = .allocate(capacity: 1)
        levelBuffer = .allocate(byteCount: tx_isal_level_buffer_size(Int32(level)), alignment: 64)
        segment = .allocate(byteCount: segmentSize, alignment: 64)
        // Stateless output never exceeds the input plus stored-block headers.
        output = .allocate(byteCount: segmentSize + segmentSize / 64 + 4096, alignment: 64)
    }

    deinit {
        stream.deallocate()
        levelBuffer.deallocate()
        segment.deallocate()
        output.deallocate()
    }

    public func process(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!finished, "process after finish")
        if !started { try start(emit: emit) }
        var offset = 0
        while offset < input.count {
            let n = min(segment.count - filled, input.count - offset)
            (segment.baseAddress! + filled).copyMemory(from: input.baseAddress! + offset, byteCount: n)
            filled += n
            offset += n
            if filled == segment.count { try compressSegment(final: false, emit: emit) }
        }
    }

    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(!finished, "finish called twice")
        if !started { try start(emit: emit) }
        finished = true
        try compressSegment(final: true, emit: emit)
        var trailer = [UInt8](repeating: 0, count: 8)
        for i in 0..<4 {
            trailer[i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i)))
            trailer[4 + i] = UInt8(truncatingIfNeeded: total >> (8 * UInt64(i)))
        }
        try trailer.withUnsafeBytes { try emit($0) }
    }

    /// The 10-byte gzip header: deflate, no name, no mtime, OS unix (as `gzip -n` writes it).
    private func start(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        started = true
        let header: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]
        try header.withUnsafeBytes { try emit($0) }
    }

    private func compressSegment(final: Bool, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        if filled > 0 {
            let data = UnsafeRawBufferPointer(rebasing: segment[0..<filled])
            crc = crc32_gzip_refl(crc, data.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(filled))
            total &+= UInt64(filled)
            try IncompressibleRuns.forEachRun(in: data) { range, stored in
                let run = UnsafeRawBufferPointer(rebasing: data[range])
                if stored {
                    try Self.storeBlocks(run, emit: emit)
                    storedBytes &+= UInt64(run.count)
                } else {
                    try deflate(run, emit: emit)
                }
            }
            filled = 0
        }
        // Every run ended byte-aligned and non-final: close the stream with an empty final
        // stored block (BFINAL=1, BTYPE=00, LEN 0, NLEN 0xFFFF).
        if final { try Self.finalBlock.withUnsafeBytes { try emit($0) } }
    }

    private static let finalBlock: [UInt8] = [0x01, 0x00, 0x00, 0xff, 0xff]

    /// Compresses one run into byte-aligned, non-final deflate blocks.
    private func deflate(_ run: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        isal_deflate_stateless_init(stream)
        stream.pointee.level = level
        stream.pointee.level_buf = levelBuffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.pointee.level_buf_size = UInt32(levelBuffer.count)
        stream.pointee.flush = UInt16(FULL_FLUSH)
        stream.pointee.end_of_stream = 0
        stream.pointee.gzip_flag = 0  // raw deflate: one gzip header and trailer wrap every run
        stream.pointee.next_in = UnsafeMutablePointer(mutating: run.baseAddress!.assumingMemoryBound(to: UInt8.self))
        stream.pointee.avail_in = UInt32(run.count)
        stream.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        stream.pointee.avail_out = UInt32(output.count)
        let status = isal_deflate_stateless(stream)
        guard status == COMP_OK else {
            throw TransferError(.internal, .archive, "gzip compression failed (ISA-L status \(status))")
        }
        let produced = output.count - Int(stream.pointee.avail_out)
        if produced > 0 { try emit(UnsafeRawBufferPointer(rebasing: output[0..<produced])) }
    }

    /// Writes a run as stored blocks (RFC 1951 §3.2.4: at most 65,535 bytes each, after a
    /// 5-byte header), handing the bytes on without copying them.
    private static func storeBlocks(_ run: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        var offset = 0
        while offset < run.count {
            let length = min(65535, run.count - offset)
            let header: (UInt8, UInt8, UInt8, UInt8, UInt8) = (
                0x00, UInt8(length & 0xff), UInt8(length >> 8),
                UInt8(~length & 0xff), UInt8((~length >> 8) & 0xff)
            )
            try withUnsafeBytes(of: header) { try emit($0) }
            try emit(UnsafeRawBufferPointer(rebasing: run[offset..<(offset + length)]))
            offset += length
        }
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
                // Re-initialising clears the input pointers: carry the unread input over.
                if sawMember {
                    let (next, available) = (state.pointee.next_in, state.pointee.avail_in)
                    reset()
                    state.pointee.next_in = next
                    state.pointee.avail_in = available
                }
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
