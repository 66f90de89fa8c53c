#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Tells the file system that a directory's subdirectories are unrelated trees (`chattr +T`,
/// ext4's "top of directory hierarchies" hint), as a volumes directory's are.
///
/// ext4's Orlov allocator then places each new volume in a block group of its own choosing (few
/// directories, free space above average) instead of next to the volume created before it. Each
/// volume's inodes and data stay together, and on ext4 without a journal a new volume does not
/// land among inodes just freed by a deleted one, which ext4 there refuses to reuse for hours and
/// scans past on every file it creates (the `tiny` corpus: ~1,500 instead of ~30,000 files/s; see
/// docs/DESIGN-NOTES.md). File systems without the flag (xfs, btrfs, tmpfs) are left as they are.
public enum DirectoryAllocation {
    /// Sets the hint on `path`; false where the file system has no such flag or it cannot be set.
    @discardableResult
    public static func markSubdirectoriesUnrelated(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return tx_add_inode_flags(fd, tx_topdir_flag()) == 0
    }

    /// Whether the hint is set on `path`; nil where the file system has no inode flags.
    public static func subdirectoriesAreMarkedUnrelated(_ path: String) -> Bool? {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var flags: Int32 = 0
        guard tx_get_inode_flags(fd, &flags) == 0 else { return nil }
        return flags & tx_topdir_flag() != 0
    }
}
