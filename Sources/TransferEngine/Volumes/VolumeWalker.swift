#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Walks a volume depth-first with `openat`, never following symlinks, in a stable (sorted) order.
///
/// ```
///  root fd ─▶ fdopendir ─▶ sorted names ─▶ fstatat(NOFOLLOW) ─▶ visit(entry) ─▶ recurse into dirs
/// ```
/// Directories are visited before their contents. Sockets, FIFOs and devices are reported to
/// `skipped` and not visited: they cannot be moved meaningfully and must never be recreated.
public struct VolumeWalker {
    /// One file system object inside the volume.
    public struct Entry {
        public enum Kind: Sendable { case file, directory, symlink }
        public let path: PathBytes
        public let kind: Kind
        public let status: stat
        /// The directory holding the entry, open while `visit` runs (for `openat`/`readlinkat`).
        public let parentDescriptor: Int32
        public let name: [UInt8]

        /// Opens a regular file for reading without following a symlink swapped in since the walk.
        /// Non-blocking, so a FIFO swapped in cannot hang the open; callers `fstat` and check the type.
        public func openForReading() throws -> Int32 {
            let fd = VolumeWalker.openWithoutAccessTime(parentDescriptor, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw TransferError.system("openat", path: path.description) }
            return fd
        }

        /// The target of a symlink, as bytes.
        public func symlinkTarget() throws -> [UInt8] {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlinkat(parentDescriptor, CString.terminated(name), &buffer, buffer.count - 1)
            guard n >= 0 else { throw TransferError.system("readlinkat", path: path.description) }
            return buffer[0..<n].map { UInt8(bitPattern: $0) }
        }
    }

    public let root: String
    /// When false, regular files (known from the directory entry's type) are not `fstatat`ed: their
    /// `status` holds only the file type, and the visitor `fstat`s the descriptor it opens. One
    /// syscall less per file, which is most of the walk on a volume of small files.
    public var statsRegularFiles = true

    public init(root: String) { self.root = root }

    /// Directories nested deeper than this are refused: no path to them fits in PATH_MAX (the
    /// destination, downloads and the game server could not open them), and each level holds a
    /// descriptor while it is walked. A game server's user can make such a tree in its volume.
    public static let maximumDepth = 2048

    /// Visits every entry below the root (not the root itself), depth first, names sorted.
    /// Iterative: a tree thousands of levels deep must not exhaust a thread's stack.
    public func walk(visit: (Entry) throws -> Void, skipped: (PathBytes, String) -> Void = { _, _ in }) throws {
        let fd = Self.openWithoutAccessTime(AT_FDCWD, Array(root.utf8), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw TransferError.system("open", path: root) }
        var stack = DirectoryStack<PathBytes>()
        defer { stack.closeAll() }
        try stack.push(fd, label: PathBytes([]), display: root, sorted: true)
        while let step = stack.next() {
            guard case .entry(let fd, let path, let name, let type) = step else { continue }
            let childPath = path.appending(name)
            var st = stat()
            if !statsRegularFiles && type == UInt8(DT_REG) {
                st.st_mode = S_IFREG
            } else if fstatat(fd, CString.terminated(name), &st, AT_SYMLINK_NOFOLLOW) != 0 {
                if errno == ENOENT { continue }  // removed while walking: nothing to send
                throw TransferError.system("fstatat", path: childPath.description)
            }
            let kind: Entry.Kind
            switch st.st_mode & S_IFMT {
            case S_IFREG: kind = .file
            case S_IFDIR: kind = .directory
            case S_IFLNK: kind = .symlink
            case S_IFIFO: skipped(childPath, "FIFO"); continue
            case S_IFSOCK: skipped(childPath, "socket"); continue
            default: skipped(childPath, "device node"); continue
            }
            try visit(Entry(path: childPath, kind: kind, status: st, parentDescriptor: fd, name: name))
            guard kind == .directory else { continue }
            guard stack.depth < Self.maximumDepth else {
                throw TransferError(
                    .invalidInput, .volumes,
                    "\(String(childPath.description.prefix(120)))…: directories nested deeper than \(Self.maximumDepth) levels")
            }
            let child = Self.openWithoutAccessTime(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0 else { throw TransferError.system("openat", path: childPath.description) }
            try stack.push(child, label: childPath, display: childPath.description, sorted: true)
        }
    }

    /// Opens `name` with `O_NOATIME`, so reading a volume leaves it as it was: without it, every
    /// file whose access time is a day old (most of a volume) has its inode dirtied and written
    /// back on the source node during a transfer or backup. Only the file's owner (or root) may
    /// ask for it; anyone else gets `EPERM` and the file is opened the ordinary way.
    static func openWithoutAccessTime(_ directory: Int32, _ name: [UInt8], _ flags: Int32) -> Int32 {
        let cName = CString.terminated(name)
        let fd = openat(directory, cName, flags | tx_no_access_time_flag())
        if fd < 0 && errno == EPERM { return openat(directory, cName, flags) }
        return fd
    }

    /// Totals for progress reporting (a stat-only pass, cheap next to reading the data).
    public func totals() throws -> (files: Int, bytes: Int64) {
        var files = 0
        var bytes: Int64 = 0
        try walk { entry in
            if entry.kind == .file {
                files += 1
                bytes += Int64(entry.status.st_size)
            }
        }
        return (files, bytes)
    }
}
