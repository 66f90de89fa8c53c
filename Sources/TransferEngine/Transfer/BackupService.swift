#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Dispatch
import Synchronization

/// Local backups: `<backup_directory>/<backup-uuid>.tar.gz` plus a `.sha256` sidecar, made by
/// the same archive producer and hasher as a transfer.
///
/// ```
///  VolumeArchiver ─▶ SHA256Hasher ─▶ .<uuid>.tar.gz.partial ─fsync, rename─▶ <uuid>.tar.gz  (+ <uuid>.tar.gz.sha256)
/// ```
/// A backup appears under its final name only when complete; partial files are removed at start.
public final class BackupService: Sendable {
    public enum State: Sendable, Equatable {
        case running
        case completed(size: Int64, checksum: String)
        case failed(String)
    }

    private let store: VolumeStore
    public let directory: String
    /// True when the directory is made by the first backup (Wings' default path, not configured);
    /// false when it was made at start, so its absence later is a node fault (disk unmounted).
    public let createdOnUse: Bool
    private let states = Mutex<[String: State]>([:])
    /// Device and inode of the directory once it exists (at start, or made by the first backup
    /// or backup part): its path may later name another directory (the disk unmounted under it)
    /// or nothing (removed). Nil while Wings' implicit default has not been made yet.
    private let identity: Mutex<FileIdentity?>

    public init(store: VolumeStore, directory: String, createdOnUse: Bool = true) {
        self.store = store
        self.directory = directory
        self.createdOnUse = createdOnUse
        self.identity = Mutex(FileIdentity(path: directory))
        removePartials()
    }

    /// A `.internal` error (500) naming the directory, logged, when the backup directory this
    /// daemon knew (made at start, there at start, or made since) has gone or been replaced; nil
    /// otherwise (a missing backup is then really not there).
    public func directoryFault() -> TransferError? {
        guard let known = identity.withLock({ $0 }) else { return nil }
        let problem: String
        if let now = FileIdentity(path: directory) {
            guard now != known else { return nil }
            problem = "the node's backup directory \(directory) is not the one transferd opened "
                + "(was its disk unmounted or the directory replaced?): restart transferd once it is back"
        } else {
            problem = "the node's backup directory \(directory) is missing: "
                + "was its disk unmounted or the directory removed?"
        }
        Log.error("backups: \(problem)")
        return TransferError(.internal, .volumes, problem)
    }

    /// Makes sure a backup can be written into the directory: the `directoryFault` error when the
    /// directory it knew is gone (it is not made again: that would put backups on the disk under a
    /// lost mount); Wings' implicit default is made by its first use.
    func prepareDirectory() throws {
        if let fault = directoryFault() { throw fault }
        try identity.withLock { known in
            guard known == nil else { return }
            try FileTree.makeDirectories(directory, mode: 0o700)
            known = FileIdentity(path: directory)
        }
    }

    private func removePartials() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix(".") && name.hasSuffix(".partial") {
            unlink(directory + "/" + name)
        }
    }

    func archivePath(_ backup: String) -> String { "\(directory)/\(backup).tar.gz" }

    /// Starts a backup of `server` named `backup` on a background thread. Throws `.conflict` if a
    /// backup of that name exists or is running.
    public func start(server: String, backup: String) throws -> DispatchSemaphore {
        let accepted = states.withLock { table -> Bool in
            if table[backup] == .running || FileTree.exists(archivePath(backup)) { return false }
            table[backup] = .running
            return true
        }
        guard accepted else { throw TransferError(.conflict, .transfer, "backup \(backup) already exists") }
        let done = DispatchSemaphore(value: 0)
        spawnThread(name: "backup") { [self] in
            let outcome: State
            do {
                let (size, checksum) = try write(server: server, backup: backup)
                outcome = .completed(size: size, checksum: checksum)
                Log.info("backup \(backup) of \(server): \(ByteCount.format(size)), sha256 \(checksum)")
            } catch {
                outcome = .failed("\(error)")
                Log.error("backup \(backup) of \(server) failed: \(error)")
            }
            states.withLock { $0[backup] = outcome }
            done.signal()
        }
        return done
    }

    private func write(server: String, backup: String) throws -> (Int64, String) {
        // Created on first use, so a node that never makes backups leaves no directory behind. One
        // made at start is not made again: that would put backups on the disk under a lost mount.
        try prepareDirectory()
        let partial = "\(directory)/.\(backup).tar.gz.partial"
        let fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TransferError.system("open", path: partial) }
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        do {
            let hasher = SHA256Hasher()
            var archiver = VolumeArchiver(root: store.volumePath(server))
            archiver.logLabel = "archive for backup \(backup) of server \(server)"
            let summary = try archiver.run { bytes in
                hasher.update(bytes)
                try FileIO.writeAll(fd, bytes, path: partial)
            }
            guard fsync(fd) == 0 else { throw TransferError.system("fsync", path: partial) }
            close(fd)
            closed = true
            let checksum = hasher.finalizeHex()
            try Data("\(checksum)  \(backup).tar.gz\n".utf8).write(to: URL(fileURLWithPath: archivePath(backup) + ".sha256"))
            guard rename(partial, archivePath(backup)) == 0 else { throw TransferError.system("rename", path: partial) }
            return (summary.archiveBytes, checksum)
        } catch {
            unlink(partial)
            throw error
        }
    }

    /// The state of a backup: from memory while this daemon made it, else from disk.
    public func state(_ backup: String) -> State? {
        if let known = states.withLock({ $0[backup] }) { return known }
        var st = stat()
        guard stat(archivePath(backup), &st) == 0 else { return nil }
        let sidecar = (try? String(contentsOfFile: archivePath(backup) + ".sha256", encoding: .utf8)) ?? ""
        return .completed(size: Int64(st.st_size), checksum: String(sidecar.prefix(64)))
    }

    /// Deletes a finished backup. Throws `.notFound` or `.conflict` (still running).
    public func delete(_ backup: String) throws {
        if states.withLock({ $0[backup] }) == .running {
            throw TransferError(.conflict, .transfer, "backup \(backup) is still running")
        }
        guard unlink(archivePath(backup)) == 0 else { throw TransferError(.notFound, .volumes, "backup \(backup) not found") }
        unlink(archivePath(backup) + ".sha256")
        _ = states.withLock { $0.removeValue(forKey: backup) }
    }
}

/// A directory's device and inode: the same path naming another directory (a disk unmounted
/// under it, a directory replaced) has another identity.
struct FileIdentity: Sendable, Equatable {
    let device: UInt64
    let inode: UInt64

    /// The identity of the directory at `path`, or nil when there is none (missing, not a directory).
    init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { return nil }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
    }
}
