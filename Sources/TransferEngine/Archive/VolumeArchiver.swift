#if canImport(Glibc)
import Glibc
#endif

/// The source half of the pipeline: walks a volume and writes it as a (compressed) tar stream.
///
/// ```
///  VolumeWalker ─▶ read(file, 256 KiB) ─▶ ArchiveWriter (plain tar) ─▶ StreamCodec (gzip/zstd/none) ─▶ sink
/// ```
/// Compression is the same `StreamCodec` a transfer's compress stage uses (there, on its own
/// thread; here, inline). Memory is one read buffer plus the codec's state, whatever the volume's size.
public struct VolumeArchiver: Sendable {
    public var root: String
    public var compression: StreamCompression
    /// Called after every block of file data with the volume bytes archived so far.
    public var progress: (@Sendable (Int64) -> Void)?
    /// Chunk size for reading files.
    public var readSize = 256 * 1024
    /// Log a warning for each entry left out (socket, FIFO, device, a link out of the volume, a
    /// file replaced while being read) and for libarchive's warnings.
    public var reportsSkipped = true
    /// How its log lines name the archive: `archive of server <uuid>` for a push, so that each
    /// line says which server it is about when several run at once.
    public var logLabel = "archive"
    /// Leave out symlinks that point out of the volume (a transfer: the destination refuses
    /// them). A backup keeps every link as it is.
    public var skipsLinksOutOfVolume = false
    /// Send a file linked more than once as one copy plus tar hardlinks to it (a destination
    /// that keeps them: ours). At most `hardlinkMemory` files are remembered (bounded memory);
    /// links beyond that are sent as copies, which is only larger.
    public var preservesHardlinks = false
    public var hardlinkMemory = 10_000

    public init(root: String, compression: StreamCompression = .gzip) {
        self.root = root
        self.compression = compression
    }

    /// How many left-out entries a `Summary` lists by name.
    public static let skippedListLimit = 20

    /// An entry left out of the archive: its path in the volume and why.
    public struct Skipped: Sendable, Equatable {
        public var path: String
        public var reason: String
    }

    /// Summary of what went into the archive.
    public struct Summary: Sendable {
        public var files = 0
        public var directories = 0
        public var symlinks = 0
        /// Files sent as hardlinks to one sent before (counted in `files` too).
        public var hardlinks = 0
        public var skipped = 0
        /// The first `skippedListLimit` entries left out, with why (for reports; `skipped` counts all).
        public var skippedEntries: [Skipped] = []

        mutating func skip(_ path: String, _ reason: String) {
            skipped += 1
            if skippedEntries.count < VolumeArchiver.skippedListLimit { skippedEntries.append(Skipped(path: path, reason: reason)) }
        }
        /// File data read and sent (holes in sparse files are not read).
        public var volumeBytes: Int64 = 0
        /// The files' sizes as `ls -l` shows them, holes included.
        public var apparentBytes: Int64 = 0
        public var archiveBytes: Int64 = 0
    }

    /// Writes the whole archive to `sink` and returns what it contained.
    public func run(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Summary {
        var summary = Summary()
        var archiveBytes: Int64 = 0
        let writer: ArchiveWriter
        let codec: (any StreamCodec)?
        if compression == .none {
            codec = nil
            writer = try ArchiveWriter { bytes in
                archiveBytes += Int64(bytes.count)
                try sink(bytes)
            }
        } else {
            let encoder = try compression.makeEncoder()
            codec = encoder
            writer = try ArchiveWriter { bytes in
                try encoder.process(bytes) { out in
                    archiveBytes += Int64(out.count)
                    try sink(out)
                }
            }
        }
        writer.reportsWarnings = reportsSkipped
        writer.logLabel = logLabel
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readSize, alignment: 64)
        defer { buffer.deallocate() }
        // The root's own entry ("./", as GNU tar writes it) carries the volume root's mode and time.
        var rootStatus = stat()
        guard stat(root, &rootStatus) == 0 else { throw TransferError.system("stat", path: root) }
        try writer.appendHeader(path: PathBytes("."), status: FileStatus(rootStatus))
        var linked = LinkedFiles(capacity: preservesHardlinks ? hardlinkMemory : 0)
        var walker = VolumeWalker(root: root)
        walker.statsRegularFiles = false  // archiveFile fstats the descriptor it reads
        try walker.walk(
            visit: { entry in
                switch entry.kind {
                case .directory:
                    try writer.appendHeader(path: entry.path, status: FileStatus(entry.status))
                    summary.directories += 1
                case .symlink:
                    let target = try entry.symlinkTarget()
                    // A link out of the volume (absolute, or up past its root) is refused by the
                    // destination, which would fail the whole transfer at that entry: leave it out.
                    guard !skipsLinksOutOfVolume || Self.staysInside(link: entry.path, target: target) else {
                        summary.skip("\(entry.path)", "symlink pointing outside the volume (-> \(PathBytes(target)))")
                        if reportsSkipped {
                            Log.warning(
                                "\(logLabel): skipping symlink \(entry.path) -> \(PathBytes(target)): "
                                    + "it points outside the volume")
                        }
                        return
                    }
                    try writer.appendHeader(path: entry.path, status: FileStatus(entry.status), symlinkTarget: target)
                    summary.symlinks += 1
                case .file:
                    if try archiveFile(entry, writer: writer, buffer: buffer, linked: &linked, summary: &summary) {
                        summary.files += 1
                    } else {
                        summary.skip("\(entry.path)", "no longer a regular file")
                        if reportsSkipped {
                            Log.warning("\(logLabel): skipping \(entry.path): no longer a regular file")
                        }
                    }
                }
            },
            skipped: { path, kind in
                summary.skip("\(path)", "\(kind) (not archived)")
                if reportsSkipped { Log.warning("\(logLabel): skipping \(kind) \(path)") }
            })
        try writer.finish()
        try codec?.finish { out in
            archiveBytes += Int64(out.count)
            try sink(out)
        }
        summary.archiveBytes = archiveBytes
        return summary
    }

    /// Whether a symlink's target, read from the link's directory, stays inside the volume by its
    /// text (the destination's first check; it also resolves every link once all have arrived).
    static func staysInside(link: PathBytes, target: [UInt8]) -> Bool {
        !target.isEmpty && target.first != 0x2f
            && SafeExtractor.lexicallyInside(base: Array(link.components.dropLast()), target: target)
    }

    /// Archives one regular file; false if it was replaced by something else since the walk saw it.
    /// Throws if it shrinks while being read. One that grows is archived at the size it had when
    /// opened (a consistent prefix, as a log being appended to).
    private func archiveFile(
        _ entry: VolumeWalker.Entry, writer: ArchiveWriter, buffer: UnsafeMutableRawBufferPointer,
        linked: inout LinkedFiles, summary: inout Summary
    ) throws -> Bool {
        let fd = try entry.openForReading()
        defer { close(fd) }
        // Size and times come from the open descriptor, so they match the bytes we read.
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw TransferError.system("fstat", path: entry.path.description) }
        guard st.st_mode & S_IFMT == S_IFREG else { return false }
        if st.st_nlink > 1, let first = linked.firstPath(device: st.st_dev, inode: st.st_ino, path: entry.path) {
            try writer.appendHeader(path: entry.path, status: FileStatus(st), hardlinkTarget: first)
            summary.hardlinks += 1
            return true
        }
        // A file read in one call gains nothing from a readahead hint; skip the syscall.
        if Int(st.st_size) > buffer.count { posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) }
        let size = Int64(st.st_size)
        summary.apparentBytes += size
        let regions = SparseRegions.of(fd, size: size, allocatedBytes: Int64(st.st_blocks) * 512)
        try writer.appendHeader(path: entry.path, status: FileStatus(st), dataRegions: regions)
        var position: Int64 = 0
        for region in regions ?? [SparseRegions.Region(offset: 0, length: size)] {
            if region.offset > position { try writer.writeZeros(region.offset - position) }
            let read = try copy(fd, from: region.offset, count: region.length, to: writer, buffer: buffer, summary: &summary, path: entry.path)
            if read < region.length {
                // The file shrank while we read it. The header already promised its old size, so
                // the entry could only be padded with zeros, bytes the file never held (GNU tar
                // does that and exits 1): fail instead, so nothing built on them is committed.
                throw TransferError(
                    .io, .archive,
                    "\(entry.path) shrank from \(size) to \(region.offset + read) bytes while being read"
                        + " (is the server still running? stop it, then try again)")
            }
            position = region.offset + region.length
        }
        if position < size { try writer.writeZeros(size - position) }
        return true
    }

    /// Copies `count` bytes at `offset` of `fd` into the archive; returns how many there were.
    private func copy(
        _ fd: Int32, from offset: Int64, count: Int64, to writer: ArchiveWriter, buffer: UnsafeMutableRawBufferPointer,
        summary: inout Summary, path: PathBytes
    ) throws -> Int64 {
        var done: Int64 = 0
        while done < count {
            let n = pread(fd, buffer.baseAddress, min(buffer.count, Int(clamping: count - done)), off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw TransferError.system("read", path: path.description)
            }
            if n == 0 { break }
            try writer.writeData(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            done += Int64(n)
            summary.volumeBytes += Int64(n)
            progress?(summary.volumeBytes)
        }
        return done
    }
}

/// Files linked more than once that are already in the archive, by device and inode.
struct LinkedFiles {
    private struct Key: Hashable {
        let device: UInt64
        let inode: UInt64
    }
    private var seen: [Key: PathBytes] = [:]
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// The path this file was archived under before, or nil: then it is archived now (as `path`,
    /// remembered while there is room).
    mutating func firstPath(device: dev_t, inode: ino_t, path: PathBytes) -> PathBytes? {
        let key = Key(device: UInt64(device), inode: UInt64(inode))
        if let first = seen[key] { return first }
        if seen.count < capacity { seen[key] = path }
        return nil
    }
}
