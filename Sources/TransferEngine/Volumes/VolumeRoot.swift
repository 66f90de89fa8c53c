#if canImport(Glibc)
import Glibc
#endif

/// An open volume (or staging) directory and the one safe way to reach paths inside it.
///
/// ```
///  "/logs/latest.log" ─▶ components (no "..", no NUL) ─▶ resolve symlinks *inside* the root
///                     ─▶ openat each component with O_NOFOLLOW ─▶ descriptor
/// ```
/// Every consumer of volume paths (extractor, downloads, uploads) goes through here, so a path
/// that would leave the volume, directly or through a symlink, is refused in one place. Opening
/// with `O_NOFOLLOW` after resolving means a symlink swapped in between fails instead of escaping.
public final class VolumeRoot: @unchecked Sendable {
    public let descriptor: Int32
    public let path: String

    public init(path: String) throws {
        descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw TransferError.system("open", path: path) }
        self.path = path
    }

    deinit { close(descriptor) }

    /// Splits a request path ("/a/b", "a//b/./c") into components. Leading slashes mean the volume
    /// root; `..` and NUL are refused.
    public static func components(ofRequestPath path: String) throws -> [[UInt8]] {
        var bytes = Array(path.utf8)[...]
        while bytes.first == 0x2f { bytes.removeFirst() }
        return try components(of: Array(bytes), what: "path")
    }

    /// Splits an archive-style relative path; absolute paths, `..` and NUL are refused.
    static func components(of path: [UInt8], what: String) throws -> [[UInt8]] {
        let display = String(decoding: path, as: UTF8.self)
        if path.first == 0x2f { throw refuse(display, "\(what) is absolute") }
        if path.contains(0) { throw refuse(display, "\(what) contains a NUL byte") }
        var out: [[UInt8]] = []
        for part in path.split(separator: 0x2f, omittingEmptySubsequences: true) {
            if part.elementsEqual([0x2e]) { continue }
            if part.elementsEqual([0x2e, 0x2e]) { throw refuse(display, "\(what) contains '..'") }
            if part.count > 255 { throw refuse(display, "\(what) has a name component over 255 bytes") }
            out.append(Array(part))
        }
        return out
    }

    static func refuse(_ path: String, _ reason: String) -> TransferError {
        TransferError(.invalidInput, .volumes, "unsafe path '\(shown(path))': \(reason)")
    }

    /// `path` for a message: over 200 bytes it is cut there (names may be up to 3,840 bytes long).
    static func shown(_ path: String) -> String {
        path.utf8.count > 200 ? String(decoding: path.utf8.prefix(200), as: UTF8.self) + "…" : path
    }

    /// Where a path leads when its symlinks are followed as the kernel would.
    public enum Resolution: Equatable, Sendable {
        /// The symlink-free components inside the root (missing ones kept as they are).
        case inside([[UInt8]])
        /// Above the root, or through an absolute or unreadable link.
        case outside
        /// More than 40 links to follow (MAXSYMLINKS: a cycle such as `loop -> loop`, or too
        /// long a chain); the kernel fails such a path with ELOOP, so it leads nowhere.
        case unresolvable
    }

    /// The kernel's limit of symlinks followed in one path lookup (MAXSYMLINKS, Linux ≥ 4.2).
    static let maxSymlinkHops = 40

    /// Resolves `components` as the kernel would, but following only symlinks whose targets stay
    /// inside the root (at most 40 hops). Returns the symlink-free components, or nil if the path
    /// leads outside or nowhere. Missing components are kept as they are (they name nothing yet).
    public func resolveInside(_ components: [[UInt8]]) -> [[UInt8]]? {
        guard case .inside(let resolved) = resolution(of: components) else { return nil }
        return resolved
    }

    /// Follows `components` component by component as the kernel's path walk does: each symlink met
    /// (the last component's too) is replaced by its target, `..` goes to the parent of what was
    /// reached, and every link followed counts one hop against the kernel's limit of 40.
    public func resolution(of components: [[UInt8]]) -> Resolution {
        var resolved: [[UInt8]] = []
        var pending: [[UInt8]] = components.reversed()
        var hops = 0
        while let part = pending.popLast() {
            if part == [0x2e] { continue }
            if part == [0x2e, 0x2e] {
                if resolved.isEmpty { return .outside }
                resolved.removeLast()
                continue
            }
            resolved.append(part)
            let cPath = CString.terminated(Array(resolved.joined(separator: [0x2f])))
            var st = stat()
            guard fstatat(descriptor, cPath, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFLNK else { continue }
            hops += 1
            if hops > Self.maxSymlinkHops { return .unresolvable }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlinkat(descriptor, cPath, &buffer, buffer.count - 1)
            guard n > 0, buffer[0] != 0x2f else { return .outside }
            resolved.removeLast()
            let target = buffer[0..<n].map { UInt8(bitPattern: $0) }
            for piece in target.split(separator: 0x2f, omittingEmptySubsequences: true).reversed() {
                pending.append(Array(piece))
            }
        }
        return .inside(resolved)
    }

    /// Opens the directory at `components` (symlink-free) with O_NOFOLLOW at every step.
    /// With `create`, missing directories are made (mode 0755). The caller closes the result.
    public func openDirectory(_ components: [[UInt8]], create: Bool, display: String) throws -> Int32 {
        var created: Int?
        return try openDirectory(components, create: create, display: display, createdFrom: &created)
    }

    /// `openDirectory`, telling in `createdFrom` the index of the first component this call made
    /// (nil: it made none), so that a caller that fails can take them away again
    /// (`removeCreatedDirectories`). Set as soon as one is made, even if a later step throws.
    public func openDirectory(_ components: [[UInt8]], create: Bool, display: String, createdFrom: inout Int?) throws -> Int32 {
        var fd = dup(descriptor)
        for (index, part) in components.enumerated() {
            let cPart = CString.terminated(part)
            var next = openat(fd, cPart, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT && create {
                if mkdirat(fd, cPart, 0o755) == 0 {
                    if createdFrom == nil { createdFrom = index }
                } else if errno != EEXIST {
                    let code = errno
                    close(fd)
                    throw TransferError.system("mkdirat", path: display, errno: code)
                }
                next = openat(fd, cPart, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            let code = errno
            close(fd)
            guard next >= 0 else {
                if code == ELOOP || code == ENOTDIR { throw Self.refuse(display, "passes through a symlink or a non-directory") }
                throw TransferError.system("openat", path: display, errno: code)
            }
            fd = next
        }
        return fd
    }

    /// Removes the directories `components[from...]`, deepest first, each only while it is empty
    /// (a file that landed meanwhile keeps it and the ones above it). Best effort: stops at the
    /// first that cannot go.
    public func removeCreatedDirectories(_ components: [[UInt8]], from: Int) {
        guard from >= 0 else { return }
        for index in stride(from: components.count - 1, through: from, by: -1) {
            guard let parent = try? openDirectory(Array(components[..<index]), create: false, display: "") else { return }
            let removed = unlinkat(parent, CString.terminated(components[index]), AT_REMOVEDIR) == 0
            close(parent)
            guard removed else { return }
        }
    }

    /// Opens a regular file for reading, following in-volume symlinks only. Throws `.notFound`
    /// for anything missing, outside, or not a regular file (a directory, a device).
    public func openRegularFile(requestPath: String) throws -> (descriptor: Int32, status: stat) {
        let components = try Self.components(ofRequestPath: requestPath)
        let notFound = TransferError(.notFound, .volumes, "file not found: \(requestPath)")
        guard let resolved = resolveInside(components), let name = resolved.last else { throw notFound }
        let parent: Int32
        do {
            parent = try openDirectory(Array(resolved.dropLast()), create: false, display: requestPath)
        } catch {
            throw notFound
        }
        defer { close(parent) }
        let fd = openat(parent, CString.terminated(name), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw notFound }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            if st.st_mode & S_IFMT == S_IFDIR { throw TransferError(.notFound, .volumes, "\(requestPath) is a directory") }
            throw notFound
        }
        return (fd, st)
    }
}
