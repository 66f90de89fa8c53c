#if canImport(Glibc)
import Glibc
#endif
private import CLibArchive

/// Writes a tar stream (pax where needed, plain ustar otherwise, as GNU tar and Go's
/// archive/tar read), pushing the bytes to `sink`; compression is a `StreamCodec` downstream.
///
/// ```
///  entries ──▶ libarchive (plain tar, unblocked) ──write callback──▶ headers, padding: gathered ─▶ sink(bytes)
///                                                                  file data ≥ 64 KiB: as it is ─▶ sink(bytes)
/// ```
/// libarchive's own blocking would copy nearly every data byte once more (a 512-byte header
/// shifts the data off its block boundary); gathering only the small writes keeps the sink's
/// calls few and large without that copy.
/// `sink` is called on the writing thread with buffers valid only for the call.
/// Call order: `append…`/`writeData` any number of times, then `finish()` once.
public final class ArchiveWriter {
    private let handle: OpaquePointer
    private let entry: OpaquePointer
    private let sink: (UnsafeRawBufferPointer) throws -> Void
    /// The first error the sink threw; libarchive sees only "-1".
    private var sinkError: (any Error)?
    private var finished = false
    /// Tar bytes written to the sink.
    public private(set) var bytesOut: Int64 = 0
    /// Entries whose names are not UTF-8 (kept as raw bytes).
    private(set) var rawNames = 0
    /// Whether entry warnings are logged, and `finish` logs how many names were not UTF-8 (off
    /// for the negotiation's sample: the push itself reports them).
    var reportsWarnings = true
    /// How log lines name this archive: `archive of server <uuid>` in a push, so that lines of
    /// pushes running side by side (an evacuation, a node's transfers) say which server they are about.
    var logLabel = "archive"
    /// Small writes (headers, padding, small files' data) gathered into one sink call.
    private let gathered: UnsafeMutableRawBufferPointer
    private var gatheredCount = 0
    /// Writes at least this large go to the sink as they are.
    static let directWriteMinimum = 64 * 1024

    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        _ = LibArchiveLocale.configured
        guard let handle = archive_write_new(), let entry = archive_entry_new() else {
            throw TransferError(.internal, .archive, "libarchive: out of memory")
        }
        self.handle = handle
        self.entry = entry
        self.sink = sink
        gathered = .allocate(byteCount: 256 * 1024, alignment: 64)
        try check(archive_write_set_format_pax_restricted(handle))
        try check(archive_write_add_filter_none(handle))
        // Unblocked: every write reaches `deliver` at once (no padding of the last block either).
        try check(archive_write_set_bytes_per_block(handle, 0))
        try check(archive_write_set_bytes_in_last_block(handle, 1))
        let opaqueSelf = Unmanaged.passUnretained(self).toOpaque()
        try check(
            archive_write_open(
                handle, opaqueSelf, nil,
                { _, context, buffer, length in
                    let writer = Unmanaged<ArchiveWriter>.fromOpaque(context!).takeUnretainedValue()
                    return writer.deliver(UnsafeRawBufferPointer(start: buffer, count: length))
                }, nil))
    }

    deinit {
        archive_entry_free(entry)
        archive_write_free(handle)
        gathered.deallocate()
    }

    private func deliver(_ buffer: UnsafeRawBufferPointer) -> Int {
        do {
            if buffer.count >= Self.directWriteMinimum {
                try flushGathered()
                try sink(buffer)
            } else {
                if gatheredCount + buffer.count > gathered.count { try flushGathered() }
                (gathered.baseAddress! + gatheredCount).copyMemory(from: buffer.baseAddress!, byteCount: buffer.count)
                gatheredCount += buffer.count
            }
            bytesOut += Int64(buffer.count)
            return buffer.count
        } catch {
            if sinkError == nil { sinkError = error }
            return -1
        }
    }

    private func flushGathered() throws {
        guard gatheredCount > 0 else { return }
        let count = gatheredCount
        gatheredCount = 0
        try sink(UnsafeRawBufferPointer(rebasing: gathered[0..<count]))
    }

    /// Adds a header for a directory, regular file (data follows via `writeData`), symlink, or a
    /// hardlink to a file already in the archive (no data).
    /// - Parameter dataRegions: a sparse file's data; `writeData` is then given the whole file,
    ///   holes included (`writeZeros`), and libarchive stores only the data.
    func appendHeader(
        path: PathBytes, status: FileStatus, symlinkTarget: [UInt8]? = nil, hardlinkTarget: PathBytes? = nil,
        dataRegions: [SparseRegions.Region]? = nil
    ) throws {
        precondition(!finished, "append after finish")
        archive_entry_clear(entry)
        archive_entry_set_filetype(entry, status.fileType)
        archive_entry_set_perm(entry, status.permissions)
        archive_entry_set_size(entry, status.size)
        archive_entry_set_mtime(entry, time_t(status.mtime.seconds), Int(status.mtime.nanoseconds))
        archive_entry_set_uid(entry, status.uid)
        archive_entry_set_gid(entry, status.gid)
        archive_entry_copy_pathname(entry, path.cString)
        // Names for owners are not portable between nodes; numeric ids are kept.
        archive_entry_set_uname(entry, nil)
        archive_entry_set_gname(entry, nil)
        if let target = symlinkTarget {
            archive_entry_copy_symlink(entry, CString.terminated(target))
            archive_entry_set_size(entry, 0)
        }
        if let target = hardlinkTarget {
            archive_entry_copy_hardlink(entry, target.cString)
            archive_entry_set_size(entry, 0)
        }
        for region in dataRegions ?? [] {
            archive_entry_sparse_add_entry(entry, region.offset, region.length)
        }
        // Directories and links carry no data; pax_restricted adds records only when ustar can't hold a field.
        let status = archive_write_header(handle, entry)
        if status == ARCHIVE_WARN {
            let warning = LibArchiveError.from(handle, status: status)
            if warning.message.contains("translate") {
                // A name that is not UTF-8: stored as its raw bytes (hdrcharset=BINARY) and
                // restored byte for byte; one summary line at the end instead of one per file.
                rawNames += 1
                Log.debug("\(logLabel): \(path): \(warning)")
            } else if reportsWarnings {
                Log.warning("\(logLabel): \(path): \(warning)")
            }
        } else {
            try check(status, path: path)
        }
    }

    /// Appends file data for the current entry.
    public func writeData(_ buffer: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < buffer.count {
            let n = archive_write_data(handle, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 { try check(Int32(n)) }
            offset += n
        }
    }

    /// Appends `count` zero bytes to the current entry: a sparse entry's hole, which libarchive
    /// skips without storing it.
    func writeZeros(_ count: Int64) throws {
        var left = count
        while left > 0 {
            let n = Int(min(left, Int64(Self.zeros.count)))
            try Self.zeros.withUnsafeBytes { try writeData(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            left -= Int64(n)
        }
    }

    private static let zeros = [UInt8](repeating: 0, count: 64 << 10)

    /// Closes the stream: tar end blocks and compressor trailer reach the sink before this returns.
    public func finish() throws {
        precondition(!finished, "finish called twice")
        finished = true
        if rawNames > 0 && reportsWarnings {
            Log.info("\(logLabel): \(rawNames) name(s) are not UTF-8; sent as their raw bytes (they arrive unchanged)")
        }
        try check(archive_write_close(handle))
        do {
            try flushGathered()
        } catch {
            sinkError = sinkError ?? error
            throw error
        }
    }

    private func check(_ status: Int32, path: PathBytes? = nil) throws {
        guard status < ARCHIVE_WARN else { return }
        if let sinkError { throw sinkError }
        let cause = LibArchiveError.from(handle, status: status)
        let prefix = path.map { "\($0): " } ?? ""
        throw TransferError(.io, .archive, "archive: \(prefix)\(cause.message)", cause: cause)
    }
}
