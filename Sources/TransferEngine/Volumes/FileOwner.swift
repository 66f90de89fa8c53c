#if canImport(Glibc)
import Glibc
#endif

/// The user and group that own what the daemon writes into volumes (Wings' `system.user.uid`
/// and `gid`, typically the `pterodactyl` user, 988): a game server runs as that user in its
/// container and must be able to write its own files. Wings changes ownership of every file it
/// extracts; so do we, once per transfer, after the tree is written and before it is committed.
public struct FileOwner: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32

    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }

    /// `UID:GID`, both numbers.
    public static func parse(_ text: String) -> FileOwner? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let uid = UInt32(parts[0]), let gid = UInt32(parts[1]), uid != .max, gid != .max else { return nil }
        return FileOwner(uid: uid, gid: gid)
    }

    /// Gives the directory `path` and everything below it to this owner. Symlinks are changed
    /// themselves, never followed; the walk never leaves the tree.
    public func apply(toTree path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw TransferError.system("open", path: path) }
        guard fchown(fd, uid, gid) == 0 else {
            close(fd)
            throw TransferError.system("fchown", path: path)
        }
        try applyBelow(fd, display: path)
    }

    /// Walks the directory open at `fd` (closed when done), without recursion (`DirectoryStack`).
    private func applyBelow(_ fd: Int32, display: String) throws {
        var stack = DirectoryStack<String>()
        defer { stack.closeAll() }
        try stack.push(fd, label: display, display: display)
        while let step = stack.next() {
            guard case .entry(let parent, let directory, let bytes, let type) = step else { continue }
            let name = CString.terminated(bytes)
            let path = directory + "/" + String(decoding: bytes, as: UTF8.self)
            guard fchownat(parent, name, uid, gid, AT_SYMLINK_NOFOLLOW) == 0 else { throw TransferError.system("fchownat", path: path) }
            guard type == UInt8(DT_DIR) || type == UInt8(DT_UNKNOWN) else { continue }
            let child = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if child < 0 {
                // DT_UNKNOWN that is not a directory (or a symlink): nothing below it.
                if errno == ENOTDIR || errno == ELOOP { continue }
                throw TransferError.system("openat", path: path)
            }
            try stack.push(child, label: path, display: path)
        }
    }
}
