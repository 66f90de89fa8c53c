#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Writes the data of large files with `O_DIRECT`, from an aligned buffer straight to the disk,
/// instead of through the page cache.
///
/// ```
///  block(offset, bytes) ─▶ aligned 512 KiB buffer ─full─▶ pwrite(O_DIRECT)        finish: aligned part direct,
///                                                                              last partial 4 KiB buffered
/// ```
/// Why: on this machine type the kernel spends ~1 CPU-second per GB copying a written file into the
/// page cache and as much again writing it back, on the same two cores the transfer runs on; a
/// direct write costs a tenth of that and leaves nothing for the commit's `syncfs` but metadata.
/// The data still becomes durable only with that `syncfs` (it flushes the device's write cache).
///
/// Falls back to ordinary writes, for the rest of the file, when the file system refuses
/// `O_DIRECT` (tmpfs, some FUSE and network file systems) or the entry is sparse (offsets jump).
/// One writer serves one file at a time; the buffer is reused from file to file.
final class DirectFileWriter {
    /// Offsets, lengths and memory of direct writes are multiples of this (the largest logical
    /// block size in common use; smaller ones divide it).
    static let alignment = 4096

    private let buffer: UnsafeMutableRawBufferPointer
    private let isMapped: Bool
    private var fd: Int32 = -1
    private var path = ""
    private var direct = false
    /// File offset of `buffer[0]`: always a multiple of `alignment` while `direct`.
    private var bufferStart: Int64 = 0
    private var filled = 0
    /// Bytes of the current file written through the page cache (they still need writeback).
    private(set) var bufferedBytes = 0

    /// - Parameter capacity: bytes per direct write; rounded up to a multiple of `alignment`.
    ///   512 KiB keeps a write's device time short (~0.3 ms here) and the buffer small.
    init(capacity: Int = 512 << 10) {
        let size = max(Self.alignment, (capacity + Self.alignment - 1) / Self.alignment * Self.alignment)
        // Mapped, not from malloc: a large aligned block in the heap would leave a hole there after
        // the transfer; a mapping is page-aligned and its memory leaves with it.
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if let mapped, mapped != MAP_FAILED {
            buffer = UnsafeMutableRawBufferPointer(start: mapped, count: size)
            isMapped = true
        } else {
            buffer = .allocate(byteCount: size, alignment: Self.alignment)
            isMapped = false
        }
    }

    deinit {
        if isMapped { munmap(buffer.baseAddress, buffer.count) } else { buffer.deallocate() }
    }

    /// Starts a file: `fd` is open for writing and empty. Direct I/O is used if the file system allows it.
    func begin(fd: Int32, path: String) {
        precondition(self.fd < 0, "begin while another file is open")
        self.fd = fd
        self.path = path
        bufferStart = 0
        filled = 0
        bufferedBytes = 0
        direct = tx_set_direct_io(fd, 1) == 0
    }

    /// Whether files created in `directory` can be written with direct I/O (probes with a temp file).
    static func isSupported(in directory: String) -> Bool {
        let probe = directory + "/.direct-io-probe-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer {
            close(fd)
            unlink(probe)
        }
        return tx_set_direct_io(fd, 1) == 0
    }

    /// Whether the current file is still being written directly.
    var isDirect: Bool { direct }

    /// Writes `bytes` at `offset` of the current file.
    func write(at offset: Int64, _ bytes: UnsafeRawBufferPointer) throws {
        precondition(fd >= 0, "write without begin")
        if direct && offset != bufferStart + Int64(filled) {
            // A hole (sparse entry): the rest goes through the page cache, which takes any offset.
            try leaveDirectMode()
        }
        guard direct else { return try writeBuffered(at: offset, bytes) }
        var done = 0
        while done < bytes.count {
            let n = min(buffer.count - filled, bytes.count - done)
            (buffer.baseAddress! + filled).copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            filled += n
            done += n
            if filled == buffer.count {
                try writeOut(filled)
                // The file system refused the direct write: the rest goes through the page cache.
                if !direct { return try writeBuffered(at: offset + Int64(done), UnsafeRawBufferPointer(rebasing: bytes[done...])) }
            }
        }
    }

    /// Writes what is still buffered and ends the file. The caller still owns and closes `fd`.
    func finish() throws {
        precondition(fd >= 0, "finish without begin")
        defer { fd = -1 }
        if direct { try leaveDirectMode() }
    }

    /// Abandons the current file (its descriptor is about to be closed on an error path).
    func abandon() {
        fd = -1
        filled = 0
    }

    /// Writes the buffered part that is a multiple of `alignment` directly, the rest (the file's
    /// last partial block) through the page cache, and switches the file to ordinary writes.
    private func leaveDirectMode() throws {
        let aligned = filled / Self.alignment * Self.alignment
        if aligned > 0 { try writeOut(aligned) }
        try stopDirect()
        if filled > 0 { try writeOut(filled) }
    }

    /// Writes `buffer[0..<count]` at `bufferStart` (directly while `direct`; `count` is then a
    /// multiple of `alignment`) and moves the rest of the buffer to its front.
    private func writeOut(_ count: Int) throws {
        if direct {
            try writeDirect(count)
        } else {
            try writeBuffered(at: bufferStart, UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        let rest = filled - count
        if rest > 0 { (buffer.baseAddress!).copyMemory(from: buffer.baseAddress! + count, byteCount: rest) }
        bufferStart += Int64(count)
        filled = rest
    }

    /// If the file system refuses the direct write (EINVAL) or writes an unaligned part of it,
    /// what is left is written through the page cache and the file stays in that mode.
    private func writeDirect(_ count: Int) throws {
        var done = 0
        while done < count {
            let n = pwrite(fd, buffer.baseAddress! + done, count - done, off_t(bufferStart) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno != EINVAL { throw TransferError.system("write", path: path) }
            if n > 0 { done += n }
            if n < 0 || (done < count && done % Self.alignment != 0) {
                try stopDirect()
                return try writeBuffered(
                    at: bufferStart + Int64(done), UnsafeRawBufferPointer(rebasing: buffer[done..<count]))
            }
        }
    }

    private func stopDirect() throws {
        guard direct else { return }
        direct = false
        guard tx_set_direct_io(fd, 0) == 0 else { throw TransferError.system("fcntl", path: path) }
    }

    private func writeBuffered(at offset: Int64, _ bytes: UnsafeRawBufferPointer) throws {
        try FileIO.writeAll(fd, bytes, at: offset, path: path)
        bufferedBytes += bytes.count
    }
}
