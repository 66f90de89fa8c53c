#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Writes archive entries below a root directory (a staging directory) and refuses anything that
/// could reach outside it.
///
/// ```
///  ArchiveReader.Entry ─▶ check name ─▶ openat-walk parents (O_NOFOLLOW) ─▶ create ─▶ finish(): dir modes/times, link check
/// ```
/// Rules (any violation fails the whole extraction; the caller discards the staging directory):
/// - names with `..` components or absolute names are refused; so are device nodes, FIFOs, sockets;
/// - paths and link targets over `maxPathBytes` are refused, and so is an entry whose creation fails
///   for what it asks (too long a name, a size or offset beyond the file system: `ErrorMapping.entryFault`);
/// - parents are opened with `O_NOFOLLOW`, so an entry never passes through a symlink;
/// - hardlinks must name an entry already inside the root;
/// - at `finish()`, every symlink's target is resolved inside the root (following other symlinks
///   the archive made); one that leads outside fails the extraction, whatever the entry order.
///   One that leads nowhere (a cycle, or more than the kernel's 40 hops) is kept: the kernel
///   cannot follow it either;
/// - setuid/setgid bits are stripped; directory modes and times are applied last, deepest first.
public final class SafeExtractor {
    private let root: VolumeRoot
    private var rootDescriptor: Int32 { root.descriptor }
    /// Open parent directories by path, so files spread over many directories (the `tiny` corpus)
    /// do not re-walk from the root for every entry. Bounded; cleared when full.
    private var parentCache: [[[UInt8]]: Int32] = [:]
    private let parentCacheLimit = 256
    /// Permission bits the process umask removes; modes it leaves alone need no fchmod.
    private let umaskBits: Glibc.mode_t = SafeExtractor.processUmask()

    private var deferredDirectories: [(components: [[UInt8]], mode: Glibc.mode_t, mtime: FileTime)] = []
    private var symlinks: [[[UInt8]]] = []
    /// Writes the data back to disk while extraction goes on, so the commit's syncfs has little left.
    private let flusher: BackgroundFlusher
    /// Files of at least this many bytes are written with direct I/O.
    let directWriteThreshold: Int64
    private let direct = DirectFileWriter()

    /// Counts of what was written.
    public private(set) var files = 0
    public private(set) var directories = 0
    public private(set) var links = 0
    public private(set) var bytes: Int64 = 0

    /// Opens `root`, which must exist and be a directory the caller owns.
    /// - Parameter directWriteThreshold: files this large or larger bypass the page cache
    ///   (`Int64.max` turns that off).
    public init(root: String, directWriteThreshold: Int64 = 1 << 20) throws {
        self.root = try VolumeRoot(path: root)
        self.directWriteThreshold = directWriteThreshold
        flusher = BackgroundFlusher(descriptor: self.root.descriptor)
    }

    deinit {
        flusher.stop()
        for fd in parentCache.values { close(fd) }
    }

    /// Extracts every entry `reader` yields, then finishes. Returns the volume bytes written.
    public func extractAll(from reader: ArchiveReader) throws {
        while let entry = try reader.nextEntry() {
            try extract(entry, reader: reader)
        }
        try finish()
    }

    /// Extracts one entry; file data is pulled from `reader`.
    ///
    /// A system call that fails because of what the entry asks for (a name or target the file
    /// system finds too long, a size or offset beyond its maximum file size) refuses the entry
    /// like any other unsafe one (`.invalidInput`); failures of the node itself stay I/O errors.
    public func extract(_ entry: ArchiveReader.Entry, reader: ArchiveReader) throws {
        do {
            try write(entry, reader: reader)
        } catch let error as TransferError {
            guard let failure = error.cause as? SystemCallError, let reason = ErrorMapping.entryFault(failure) else {
                throw error
            }
            throw refuse(String(decoding: entry.path, as: UTF8.self), "\(reason) (\(failure))")
        }
    }

    private func write(_ entry: ArchiveReader.Entry, reader: ArchiveReader) throws {
        let components = try Self.components(of: entry.path, what: "entry")
        let display = String(decoding: entry.path, as: UTF8.self)
        guard let name = components.last else {
            // The root itself ("./"): its mode and time are applied like any directory's, except
            // that the owner keeps rwx: a 000 root would lock the daemon and the server out.
            if entry.kind == .directory { deferredDirectories.append(([], Self.safeMode(entry.mode) | 0o700, entry.mtime)) }
            return
        }
        let parent = try openParent(Array(components.dropLast()), display: display)
        let cName = CString.terminated(name)
        switch entry.kind {
        case .directory:
            if mkdirat(parent, cName, 0o700) != 0 {
                guard errno == EEXIST, kindAt(parent, cName) == S_IFDIR else {
                    throw refuse(display, "conflicts with an existing non-directory entry")
                }
            }
            deferredDirectories.append((components, Self.safeMode(entry.mode), entry.mtime))
            directories += 1
        case .file:
            let mode = Self.safeMode(entry.mode)
            // Create with the final mode (the umask permitting), so most files need no fchmod.
            var fd = openat(parent, cName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            if fd < 0 && errno == EEXIST {
                // A later entry replaces an earlier file or link (tar semantics), never a directory.
                try removeExisting(parent, cName, display: display)
                fd = openat(parent, cName, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            }
            guard fd >= 0 else { throw TransferError.system("openat", path: display) }
            defer { close(fd) }
            var end: Int64 = 0
            let written: Int64
            if entry.size >= directWriteThreshold {
                // Large files skip the page cache (see DirectFileWriter): far less kernel CPU.
                direct.begin(fd: fd, path: display)
                do {
                    written = try reader.readData { offset, block in
                        try direct.write(at: offset, block)
                        end = offset + Int64(block.count)
                    }
                    try direct.finish()
                } catch {
                    direct.abandon()
                    throw error
                }
                flusher.noteWritten(bytes: direct.bufferedBytes)
            } else {
                written = try reader.readData { offset, block in
                    try FileIO.writeAll(fd, block, at: offset, path: display)
                    end = offset + Int64(block.count)
                    flusher.noteWritten(bytes: block.count)
                }
            }
            flusher.noteFile()
            // Sparse entries may end in a hole: the size in the header is the truth.
            if entry.size > end && ftruncate(fd, off_t(entry.size)) != 0 { throw TransferError.system("ftruncate", path: display) }
            if mode & umaskBits != 0 || mode & 0o1000 != 0 {
                guard fchmod(fd, mode) == 0 else { throw TransferError.system("fchmod", path: display) }
            }
            var times = [entry.mtime.timespec, entry.mtime.timespec]
            guard futimens(fd, &times) == 0 else { throw TransferError.system("futimens", path: display) }
            files += 1
            bytes += written
        case .symlink:
            try makeSymlink(target: entry.linkTarget ?? [], at: components, parent: parent, name: cName, mtime: entry.mtime, display: display)
        case .hardlink:
            let targetComponents = try Self.components(of: entry.linkTarget ?? [], what: "hardlink target")
            guard let targetName = targetComponents.last else { throw refuse(display, "is a hardlink to the volume root") }
            let targetParent = try openParent(Array(targetComponents.dropLast()), display: display, cache: false)
            defer { close(targetParent) }
            let cTarget = CString.terminated(targetName)
            let kind = kindAt(targetParent, cTarget)
            if kind == S_IFLNK {
                // A hardlink to a symlink would carry the link's target to a new directory, where it
                // may resolve elsewhere (`d/s -> ..` linked as `h` is `h -> ..`). Recreate it as a
                // symlink at the new place instead, with every symlink check applied there.
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlinkat(targetParent, cTarget, &buffer, buffer.count - 1)
                guard n > 0 else { throw TransferError.system("readlinkat", path: display) }
                let target = buffer[0..<n].map { UInt8(bitPattern: $0) }
                try makeSymlink(target: target, at: components, parent: parent, name: cName, mtime: entry.mtime, display: display)
                return
            }
            guard kind == S_IFREG else { throw refuse(display, "is a hardlink to a missing or non-file entry") }
            try removeExisting(parent, cName, display: display)
            guard linkat(targetParent, cTarget, parent, cName, 0) == 0 else { throw TransferError.system("linkat", path: display) }
            files += 1
        case .special(let what):
            throw refuse(display, "is a \(what); refusing to create it")
        }
    }

    /// Creates a symlink after checking its target by text; `finish()` checks it again by resolution.
    private func makeSymlink(
        target: [UInt8], at components: [[UInt8]], parent: Int32, name cName: [CChar], mtime: FileTime, display: String
    ) throws {
        guard !target.isEmpty else { throw refuse(display, "is a symlink with an empty target") }
        guard target.first != 0x2f else { throw refuse(display, "is a symlink to an absolute path") }
        guard target.count <= Self.maxPathBytes else {
            throw refuse(display, "is a symlink whose target is longer than \(Self.maxPathBytes) bytes")
        }
        guard Self.lexicallyInside(base: Array(components.dropLast()), target: target) else {
            throw refuse(display, "is a symlink leading outside the volume")
        }
        try removeExisting(parent, cName, display: display)
        guard symlinkat(CString.terminated(target), parent, cName) == 0 else {
            throw TransferError.system("symlinkat", path: display)
        }
        var times = [mtime.timespec, mtime.timespec]
        utimensat(parent, cName, &times, AT_SYMLINK_NOFOLLOW)
        symlinks.append(components)
        links += 1
    }

    /// Applies directory modes and times (deepest first, so setting a parent's time is last) and
    /// checks that no symlink resolves outside the root.
    public func finish() throws {
        flusher.stop()
        for link in symlinks {
            guard root.resolution(of: link) != .outside else {
                throw refuse(link.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/"),
                             "is a symlink leading outside the volume")
            }
        }
        for fd in parentCache.values { close(fd) }
        parentCache.removeAll()
        // An archive without a "./" entry (`tar -C vol file…`, Wings' own archives) says nothing
        // about the root: it becomes 0755 like a fresh directory, not the staging's private 0700.
        if !deferredDirectories.contains(where: { $0.components.isEmpty }) {
            guard fchmod(rootDescriptor, 0o755) == 0 else { throw TransferError.system("fchmod", path: "staging") }
        }
        for dir in deferredDirectories.sorted(by: { $0.components.count > $1.components.count }) {
            let display = dir.components.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
            let fd: Int32
            if dir.components.isEmpty {
                fd = dup(rootDescriptor)
            } else {
                let parent = try openParent(Array(dir.components.dropLast()), display: display, cache: false)
                fd = openat(parent, CString.terminated(dir.components.last!), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                close(parent)
            }
            guard fd >= 0 else { throw TransferError.system("openat", path: display) }
            defer { close(fd) }
            var times = [dir.mtime.timespec, dir.mtime.timespec]
            guard fchmod(fd, dir.mode) == 0, futimens(fd, &times) == 0 else { throw TransferError.system("fchmod", path: display) }
        }
        deferredDirectories.removeAll()
    }

    /// Flushes everything written below the root to disk (one `syncfs` instead of an fsync per file).
    public func sync() throws {
        guard tx_syncfs(rootDescriptor) == 0 else { throw TransferError.system("syncfs", path: "staging") }
    }

    // MARK: - Path checks

    /// The longest path below the volume an entry may have, and the longest symlink target, in
    /// bytes: PATH_MAX (4,096 with its NUL) less 256 for the volume directory's own absolute path
    /// (`/var/lib/pterodactyl/volumes/<uuid>/` is 66). A longer one could be written component by
    /// component but never opened by its full path again (downloads, the game server, `tar`).
    static let maxPathBytes = Int(PATH_MAX) - 256

    static func components(of path: [UInt8], what: String) throws -> [[UInt8]] {
        let components: [[UInt8]]
        do {
            components = try VolumeRoot.components(of: path, what: what)
        } catch let error as TransferError {
            throw TransferError(.invalidInput, .archive, "unsafe archive entry: \(error.message)")
        }
        // The path as it lands on disk ("./a//b" is "a/b"), so redundant spelling costs nothing.
        let length = components.reduce(max(components.count - 1, 0)) { $0 + $1.count }
        guard length <= maxPathBytes else {
            throw refuse(String(decoding: path, as: UTF8.self), "\(what) path is longer than \(maxPathBytes) bytes")
        }
        return components
    }

    /// Whether `target`, read relative to the directory `base`, stays inside the root by its text alone.
    static func lexicallyInside(base: [[UInt8]], target: [UInt8]) -> Bool {
        var stack = base
        for part in target.split(separator: 0x2f, omittingEmptySubsequences: true) {
            if part.elementsEqual([0x2e]) { continue }
            if part.elementsEqual([0x2e, 0x2e]) {
                if stack.isEmpty { return false }
                stack.removeLast()
            } else {
                stack.append(Array(part))
            }
        }
        return true
    }

    // MARK: - File system helpers

    /// Opens the directory `components` below the root, creating missing ones, never following
    /// symlinks. With `cache`, the descriptor is owned by the cache (do not close it).
    private func openParent(_ components: [[UInt8]], display: String, cache: Bool = true) throws -> Int32 {
        if cache, let cached = parentCache[components] { return cached }
        let fd: Int32
        do {
            fd = try root.openDirectory(components, create: true, display: display)
        } catch let error as TransferError where error.code == .invalidInput {
            throw refuse(display, "passes through a symlink or a non-directory")
        }
        if cache {
            if parentCache.count >= parentCacheLimit {
                for open in parentCache.values { close(open) }
                parentCache.removeAll()
            }
            parentCache[components] = fd
        }
        return fd
    }

    private func kindAt(_ parent: Int32, _ name: [CChar]) -> Glibc.mode_t? {
        var st = stat()
        guard fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        return st.st_mode & S_IFMT
    }

    /// A later entry replaces an earlier file or link of the same name (tar semantics), never a directory.
    private func removeExisting(_ parent: Int32, _ name: [CChar], display: String) throws {
        guard let kind = kindAt(parent, name) else { return }
        if kind == S_IFDIR { throw refuse(display, "conflicts with an existing directory") }
        guard unlinkat(parent, name, 0) == 0 else { throw TransferError.system("unlinkat", path: display) }
    }

    /// The process umask, read from /proc (calling umask(2) to read it would race other threads).
    static func processUmask() -> Glibc.mode_t {
        guard let status = FileIO.readFile("/proc/self/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }),
            let value = Glibc.mode_t(line.split(separator: "\t").last ?? "", radix: 8)
        else { return 0o777 }  // unknown: always fchmod
        return value
    }

    /// Permission bits plus sticky; never setuid/setgid from an archive.
    static func safeMode(_ mode: UInt32) -> Glibc.mode_t { Glibc.mode_t(mode & 0o1777) }

    private func refuse(_ path: String, _ reason: String) -> TransferError { Self.refuse(path, reason) }

    /// The refusal of an entry (long paths shortened in the message).
    static func refuse(_ path: String, _ reason: String) -> TransferError {
        TransferError(.invalidInput, .archive, "unsafe archive entry '\(VolumeRoot.shown(path))': \(reason)")
    }
}
