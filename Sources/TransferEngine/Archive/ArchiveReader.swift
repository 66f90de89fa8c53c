#if canImport(Glibc)
import Glibc
#endif
private import CLibArchive

/// Reads a tar stream (gzip, zstd or uncompressed; ustar, pax or GNU tar) by pulling chunks from
/// `source`, and hands each entry to the caller.
///
/// ```
///  source() ──read callback──▶ libarchive (decompress + tar) ──▶ Entry ──▶ readData(into:)
/// ```
/// libarchive pulls synchronously, so this runs on its own thread when the bytes are pushed by
/// another stage (see `BoundedChunkBuffer`); `source` may block.
public final class ArchiveReader {
    /// One archive member's header.
    public struct Entry {
        public enum Kind: Sendable, Equatable { case file, directory, symlink, hardlink, special(String) }
        public var path: [UInt8]
        public var kind: Kind
        public var mode: UInt32
        public var size: Int64
        public var mtime: FileTime
        /// Symlink or hardlink target.
        public var linkTarget: [UInt8]?
    }

    private let handle: OpaquePointer
    private let source: () throws -> [UInt8]?
    private var current: [UInt8] = []
    private var sourceError: (any Error)?
    private var opened = false
    /// How log lines name the archive (`transfer <uuid>: archive` on a node receiving several).
    var logLabel = "archive"

    public init(source: @escaping () throws -> [UInt8]?) throws {
        _ = LibArchiveLocale.configured
        guard let handle = archive_read_new() else { throw TransferError(.internal, .archive, "libarchive: out of memory") }
        self.handle = handle
        self.source = source
        archive_read_support_filter_gzip(handle)
        archive_read_support_filter_zstd(handle)
        archive_read_support_filter_none(handle)
        archive_read_support_format_tar(handle)
        archive_read_support_format_gnutar(handle)
    }

    deinit { archive_read_free(handle) }

    private func open() throws {
        opened = true
        let opaqueSelf = Unmanaged.passUnretained(self).toOpaque()
        let status = archive_read_open(
            handle, opaqueSelf, nil,
            { _, context, buffer in
                let reader = Unmanaged<ArchiveReader>.fromOpaque(context!).takeUnretainedValue()
                return reader.pull(buffer!)
            }, nil)
        try check(status)
    }

    private func pull(_ buffer: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        do {
            guard let chunk = try source() else { return 0 }
            current = chunk  // kept alive until the next pull, as libarchive requires
            return current.withUnsafeBytes { bytes in
                buffer.pointee = bytes.baseAddress
                return bytes.count
            }
        } catch {
            if sourceError == nil { sourceError = error }
            return -1
        }
    }

    /// The next entry's header, or nil at the end of the archive.
    public func nextEntry() throws -> Entry? {
        if !opened { try open() }
        var raw: OpaquePointer?
        let status = archive_read_next_header(handle, &raw)
        if status == ARCHIVE_EOF { return nil }
        if status == ARCHIVE_WARN {
            Log.warning("\(logLabel): \(LibArchiveError.from(handle, status: status))")
        } else {
            try check(status)
        }
        guard let raw, let pathPointer = archive_entry_pathname(raw) else {
            throw TransferError(.invalidInput, .archive, "archive entry without a name")
        }
        let path = CString.bytes(pathPointer)
        var entry = Entry(
            path: path, kind: .file, mode: UInt32(archive_entry_perm(raw)), size: archive_entry_size(raw),
            mtime: FileTime(seconds: Int64(archive_entry_mtime(raw)), nanoseconds: Int(archive_entry_mtime_nsec(raw))), linkTarget: nil)
        if let hardlink = archive_entry_hardlink(raw) {
            entry.kind = .hardlink
            entry.linkTarget = CString.bytes(hardlink)
            return entry
        }
        switch archive_entry_filetype(raw) {
        case 0o100000: entry.kind = .file  // S_IFREG
        case 0o040000: entry.kind = .directory  // S_IFDIR
        case 0o120000:  // S_IFLNK
            entry.kind = .symlink
            entry.linkTarget = archive_entry_symlink(raw).map { CString.bytes($0) } ?? []
        case 0o020000: entry.kind = .special("character device")  // S_IFCHR
        case 0o060000: entry.kind = .special("block device")  // S_IFBLK
        case 0o010000: entry.kind = .special("FIFO")  // S_IFIFO
        case 0o140000: entry.kind = .special("socket")  // S_IFSOCK
        default: entry.kind = .special("unknown entry type")
        }
        return entry
    }

    /// Streams the current entry's data: `write(offset, bytes)` per block (offsets jump over holes
    /// in sparse entries). Returns the number of bytes delivered.
    @discardableResult
    public func readData(_ write: (Int64, UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        var total: Int64 = 0
        while true {
            var block: UnsafeRawPointer?
            var size = 0
            var offset: Int64 = 0
            let status = archive_read_data_block(handle, &block, &size, &offset)
            if status == ARCHIVE_EOF { return total }
            if status == ARCHIVE_WARN {
                Log.warning("\(logLabel): \(LibArchiveError.from(handle, status: status))")
            } else {
                try check(status)
            }
            if size > 0 {
                try write(offset, UnsafeRawBufferPointer(start: block, count: size))
                total += Int64(size)
            }
        }
    }

    /// Reads whatever follows the tar end marker, so a stream that ends early is detected.
    public func drain() throws {
        while try source() != nil {}
    }

    private func check(_ status: Int32) throws {
        guard status < ARCHIVE_WARN else { return }
        if let sourceError { throw sourceError }
        let cause = LibArchiveError.from(handle, status: status)
        throw TransferError(.invalidInput, .archive, "archive is damaged or not a tar.gz: \(cause.message)", cause: cause)
    }
}
