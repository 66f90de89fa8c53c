#if canImport(Glibc)
import Glibc
#endif

/// Whole-tree operations that never follow symlinks.
public enum FileTree {
    /// The names (without "." and "..") and `d_type`s in the directory open at `fd`, which stays
    /// open for the caller's `*at` calls. The one place the project reads directories.
    static func entries(ofDirectory fd: Int32, display: String) throws -> [(name: [UInt8], type: UInt8)] {
        let own = dup(fd)
        guard own >= 0, let dir = fdopendir(own) else {
            if own >= 0 { close(own) }
            throw TransferError.system("fdopendir", path: display)
        }
        defer { closedir(dir) }
        var entries: [(name: [UInt8], type: UInt8)] = []
        while let item = readdir(dir) {
            let name = withUnsafePointer(to: item.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { CString.bytes($0) }
            }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            entries.append((name, item.pointee.d_type))
        }
        return entries
    }

    /// Entries in the directory `path` (without "." and ".."); 0 if it cannot be read.
    public static func entryCount(_ path: String) -> Int {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        return (try? entries(ofDirectory: fd, display: path).count) ?? 0
    }

    /// Removes `path` and everything below it. Symlinks are removed, never followed. Missing is fine.
    public static func remove(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw TransferError.system("lstat", path: path)
        }
        if st.st_mode & S_IFMT != S_IFDIR {
            guard unlink(path) == 0 || errno == ENOENT else { throw TransferError.system("unlink", path: path) }
            return
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw TransferError.system("open", path: path) }
        try removeContents(of: fd, display: path)
        guard rmdir(path) == 0 || errno == ENOENT else { throw TransferError.system("rmdir", path: path) }
    }

    /// Empties the directory open at `fd` and closes `fd`: each directory below is emptied,
    /// closed, then removed from its parent (without recursion: see `DirectoryStack`).
    private static func removeContents(of fd: Int32, display: String) throws {
        var stack = DirectoryStack<[CChar]>()
        defer { stack.closeAll() }
        try stack.push(fd, label: [], display: display)
        while let step = stack.next() {
            switch step {
            case .left(let name):
                guard let parent = stack.topDescriptor else { continue }  // the root: its caller removes it
                guard unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT else {
                    throw TransferError.system("rmdir", path: display)
                }
            case .entry(let parent, _, let bytes, _):
                let name = CString.terminated(bytes)
                if unlinkat(parent, name, 0) == 0 || errno == ENOENT { continue }
                guard errno == EISDIR else { throw TransferError.system("unlinkat", path: display) }
                let child = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw TransferError.system("openat", path: display) }
                // A directory without write/exec permission (an archive may set 0555) must be opened up first.
                fchmod(child, 0o700)
                try stack.push(child, label: name, display: display)
            }
        }
    }

    /// Creates `path` and missing parents with `mode`.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, mode) != 0 && errno != EEXIST { throw TransferError.system("mkdir", path: current) }
        }
        // EEXIST also covers a regular file of that name, which would only fail later, on use.
        guard isDirectory(path) else {
            errno = ENOTDIR
            throw TransferError.system("mkdir", path: path)
        }
    }

    /// Whether `path` exists (without following a final symlink).
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    /// Where `path` points when it is a symlink; nil for anything else.
    public static func symlinkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether `path` is a directory (following symlinks).
    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }
}
