#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Tells whether a directory sits on ext4 *without a journal*, where creating many files right
/// after many were deleted is an order of magnitude slower: ext4 then refuses to reuse inodes
/// freed in the last minute (six, while the deletion is not yet written back) and scans past each
/// of them on every create (measured here: 50,000 files at ~1,000 instead of ~22,000 files/s).
/// The daemon and the bench say so once, with the remedy, instead of leaving an operator to
/// wonder why one transfer in five crawls.
///
/// ```
///  statfs(path).f_type == EXT4 ─▶ st_dev → /sys/dev/block/MAJ:MIN → "vda" ─▶ /proc/fs/jbd2/vda-* ?
/// ```
public enum JournalCheck {
    static let ext4Magic = 0xEF53

    /// True on ext2/3/4 with no jbd2 journal; false with one or on any other file system; nil
    /// when it cannot tell (no /sys or /proc, an unnamed device).
    public static func isExt4WithoutJournal(
        _ path: String, sysDevBlock: String = "/sys/dev/block", jbd2Directory: String = "/proc/fs/jbd2"
    ) -> Bool? {
        unjournaledExt4Device(path, sysDevBlock: sysDevBlock, jbd2Directory: jbd2Directory).map { $0 != nil }
    }

    /// The device's name when `path` is on ext4 without a journal; `.some(nil)` when it is not;
    /// nil when it cannot tell.
    static func unjournaledExt4Device(_ path: String, sysDevBlock: String, jbd2Directory: String) -> String?? {
        var st = stat()
        let type = tx_filesystem_type(path)
        guard type >= 0, stat(path, &st) == 0 else { return nil }
        guard type == ext4Magic else { return .some(nil) }
        guard let device = deviceName(major: major(st.st_dev), minor: minor(st.st_dev), sysDevBlock: sysDevBlock),
            let journaled = journaled(device: device, jbd2Directory: jbd2Directory)
        else { return nil }
        return .some(journaled ? nil : device)
    }

    /// The block device's kernel name ("vda", "nvme0n1p2", "dm-0") from its sysfs link.
    static func deviceName(major: UInt32, minor: UInt32, sysDevBlock: String) -> String? {
        guard let target = FileTree.symlinkTarget("\(sysDevBlock)/\(major):\(minor)") else { return nil }
        let name = target.split(separator: "/").last.map(String.init) ?? ""
        return name.isEmpty ? nil : name
    }

    /// jbd2 lists each journal as "<device>-<journal inode>" (e.g. "vda-8"); nil if unreadable.
    static func journaled(device: String, jbd2Directory: String) -> Bool? {
        let fd = open(jbd2Directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard let entries = try? FileTree.entries(ofDirectory: fd, display: jbd2Directory) else { return nil }
        let prefix = Array((device + "-").utf8)
        return entries.contains { $0.name.starts(with: prefix) }
    }

    /// The warning for `path`, naming its device, or nil when there is nothing to say.
    public static func warning(for path: String) -> String? {
        guard case .some(.some(let device)) = unjournaledExt4Device(path, sysDevBlock: "/sys/dev/block", jbd2Directory: "/proc/fs/jbd2")
        else { return nil }
        return "\(path) is on ext4 without a journal (/dev/\(device)): creating files soon after many were"
            + " deleted there is up to 20x slower for minutes (ext4 scans past recently freed inodes);"
            + " `tune2fs -O has_journal /dev/\(device)` while it is unmounted avoids it"
    }

    private static func major(_ dev: dev_t) -> UInt32 { UInt32((dev >> 8) & 0xfff) | UInt32((dev >> 32) & ~0xfff) }
    private static func minor(_ dev: dev_t) -> UInt32 { UInt32(dev & 0xff) | UInt32((dev >> 12) & ~0xff) }
}
