#if canImport(Glibc)
import Glibc
#endif
import Synchronization
private import CTransferShims

/// The node's server volumes: `<data>/<server-uuid>`, with staging directories beside them on the
/// same file system so that a commit is one atomic rename.
///
/// ```
///  makeStaging(uuid) ─▶ <data>/.staging/<uuid>.<random>   (extract here)
///  commit            ─▶ syncfs · renameat2(EXCHANGE) with <data>/<uuid> · remove the old tree
///  discard           ─▶ remove the staging tree; the volume was never touched
/// ```
/// At most one transfer per server at a time (`reserve`). Other writes into a volume (uploads)
/// land only while no transfer holds it (`beginWrite`/`VolumeWrite.land`). Staging leftovers from
/// a crash are removed when the store opens.
public final class VolumeStore: Sendable {
    public let dataDirectory: String
    public let stagingDirectory: String
    /// Who owns what arrives (nil: whoever runs the daemon).
    public let owner: FileOwner?
    /// Servers held by a transfer, and those of them whose transfer failed and is cleaning up.
    private struct Holds {
        var busy: Set<String> = []
        var ending: Set<String> = []
        /// How many times each server has been reserved: a write that began before a transfer
        /// and lands after it ended would land in a tree that is gone (or was sent without it).
        var reservations: [String: Int] = [:]

        /// Marks `server` (canonical) as held; false if it already is.
        mutating func reserve(_ server: String) -> Bool {
            guard busy.insert(server).inserted else { return false }
            reservations[server, default: 0] += 1
            return true
        }
    }
    private let holds = Mutex(Holds())
    /// The data directory, open and `flock`ed for the store's life: one daemon per directory.
    private let lockDescriptor: Int32

    /// Device and inode of the data directory at start: the path may later name another
    /// directory (the disk unmounted under it) or nothing (removed).
    private let rootIdentity: (device: UInt64, inode: UInt64)

    public init(dataDirectory: String, owner: FileOwner? = nil) throws {
        self.dataDirectory = dataDirectory
        self.owner = owner
        self.stagingDirectory = dataDirectory + "/.staging"
        try FileTree.makeDirectories(dataDirectory)
        // A second daemon on the same directory would remove the first one's staging trees (its
        // transfers in flight) as leftovers, and both would commit into the same volumes.
        lockDescriptor = open(dataDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard lockDescriptor >= 0 else { throw TransferError.system("open", path: dataDirectory) }
        guard flock(lockDescriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(lockDescriptor)
            throw TransferError(.conflict, .volumes, "another transferd is already using \(dataDirectory) (one daemon per volumes directory)")
        }
        var st = stat()
        fstat(lockDescriptor, &st)
        rootIdentity = (UInt64(st.st_dev), UInt64(st.st_ino))
        if FileTree.exists(stagingDirectory) {
            let leftovers = FileTree.entryCount(stagingDirectory)
            try FileTree.remove(stagingDirectory)
            if leftovers > 0 { Log.info("volumes: removed \(leftovers) unfinished transfer(s) or upload file(s) left in \(stagingDirectory)") }
        }
        guard mkdir(stagingDirectory, 0o700) == 0 else { throw TransferError.system("mkdir", path: stagingDirectory) }
        // Every volume is its own tree: let the file system spread them (a hint; ignored where unknown).
        if !DirectoryAllocation.markSubdirectoriesUnrelated(stagingDirectory) {
            Log.debug("volumes: \(stagingDirectory) takes no allocation hint (not ext2/3/4)")
        }
        DirectoryAllocation.markSubdirectoriesUnrelated(dataDirectory)
        if let owner { try Self.probeChown(to: owner, in: stagingDirectory) }
    }

    /// Refuses to start when files cannot be given to `owner`: otherwise every transfer would be
    /// received in full and then fail at its `fchown` (EPERM).
    ///
    /// We try it on a scratch file where volumes are written rather than reason about uid, groups
    /// and capabilities: the kernel's answer covers CAP_CHOWN without root, user namespaces,
    /// supplementary groups and file systems that refuse or ignore ownership (root-squashed NFS).
    static func probeChown(to owner: FileOwner, in directory: String) throws {
        let path = directory + "/.owner-probe-" + SecureRandom.alphanumeric(8)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TransferError.system("open", path: path) }
        let changed = fchown(fd, owner.uid, owner.gid) == 0
        let code = errno
        close(fd)
        unlink(path)
        guard changed else {
            throw TransferError(
                .forbidden, .config,
                "cannot give files to the volume owner \(owner.uid):\(owner.gid) (--volume-owner / system.user): "
                    + "chown in \(directory) failed: \(String(cString: strerror(code))); this daemon runs as uid \(geteuid()) gid \(getegid()) "
                    + "(run it as root or with CAP_CHOWN, or set the owner to its own uid and one of its groups)")
        }
    }

    deinit { close(lockDescriptor) }

    /// Whether `text` is a server UUID (8-4-4-4-12 hex digits). Only such names become paths.
    public static func isValidServerID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (i, b) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(i) {
                if b != 0x2d { return false }
            } else if !((b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) || (b >= 0x41 && b <= 0x46)) {
                return false
            }
        }
        return true
    }

    /// The canonical (lowercase) form of a server UUID, or nil if `text` is not one. Paths and the
    /// busy set use only this form, so `ABC…` and `abc…` are the same server.
    public static func canonicalServerID(_ text: String) -> String? {
        isValidServerID(text) ? text.lowercased() : nil
    }

    public func volumePath(_ server: String) -> String {
        precondition(Self.isValidServerID(server), "unchecked server id")
        return dataDirectory + "/" + server.lowercased()
    }

    public func volumeExists(_ server: String) -> Bool { FileTree.isDirectory(volumePath(server)) }

    /// What is wrong with the data directory itself, or nil: removed, or another directory now at
    /// its path (the data disk unmounted under it). A node fault, never the client's.
    public var rootProblem: String? {
        var st = stat()
        guard stat(dataDirectory, &st) == 0 else {
            return "the node's volumes directory \(dataDirectory) is missing (\(String(cString: strerror(errno)))): was its disk unmounted or the directory removed?"
        }
        guard UInt64(st.st_dev) == rootIdentity.device, UInt64(st.st_ino) == rootIdentity.inode else {
            return "the node's volumes directory \(dataDirectory) is not the one transferd opened at start "
                + "(was its disk unmounted or the directory replaced?): restart transferd once it is back"
        }
        guard FileTree.isDirectory(stagingDirectory) else {
            return "the node's staging directory \(stagingDirectory) is missing: restart transferd to recreate it"
        }
        return nil
    }

    /// Throws a `.internal` error (500) naming the data directory when `rootProblem` finds one,
    /// and logs it: the operator has to act, the client cannot.
    public func requireRoot() throws {
        guard let problem = rootProblem else { return }
        Log.error("volumes: \(problem)")
        throw TransferError(.internal, .volumes, problem)
    }

    /// Checks that `server` has a volume here: `.notFound` if not, or the `requireRoot` error when
    /// the data directory itself is gone (then no server is "not found": the node is broken).
    public func requireVolume(_ server: String) throws {
        if Self.isValidServerID(server), volumeExists(server) { return }
        try requireRoot()
        throw TransferError(.notFound, .volumes, "server not found on this node")
    }

    /// Marks `server` as transferring; false if it already is.
    public func reserve(_ server: String) -> Bool {
        holds.withLock { $0.reserve(server.lowercased()) }
    }

    public func release(_ server: String) {
        holds.withLock {
            $0.busy.remove(server.lowercased())
            $0.ending.remove(server.lowercased())
        }
    }

    /// Says that the transfer holding `server` has failed and is only cleaning up (discarding
    /// staging): `reserve(_:waitingForCleanup:)` then waits for it instead of refusing.
    public func markEnding(_ server: String) {
        holds.withLock {
            if $0.busy.contains(server.lowercased()) { $0.ending.insert(server.lowercased()) }
        }
    }

    /// Like `reserve`, but when `server` is held by a transfer that is only cleaning up, waits up to
    /// `timeout` seconds for it: a source that was cancelled and starts again at once (the panel's
    /// retry) would otherwise be refused while the old staging is being removed.
    public func reserve(_ server: String, waitingForCleanup timeout: Double) -> Bool {
        let deadline = MonotonicClock.now() + timeout
        let id = server.lowercased()
        while true {
            let (reserved, ending) = holds.withLock { holds in
                holds.reserve(id) ? (true, false) : (false, holds.ending.contains(id))
            }
            if reserved { return true }
            guard ending, MonotonicClock.now() < deadline else { return false }
            usleep(10_000)
        }
    }

    public var busyServers: [String] { holds.withLock { Array($0.busy) } }

    /// Whether a transfer (either direction) holds `server`.
    public func isTransferring(_ server: String) -> Bool { holds.withLock { $0.busy.contains(server.lowercased()) } }

    /// Starts a write into `server`'s volume from outside a transfer (an upload). Throws
    /// `.conflict` while a transfer holds the server: on the destination the volume is about to
    /// be replaced (the write would be lost), on the source it is being sent (a file changing
    /// under the archiver fails the push, or is left behind).
    public func beginWrite(_ server: String) throws -> VolumeWrite {
        let id = server.lowercased()
        let generation = try holds.withLock { holds throws(TransferError) -> Int in
            guard !holds.busy.contains(id) else { throw Self.transferring(id) }
            return holds.reservations[id, default: 0]
        }
        return VolumeWrite(store: self, server: id, generation: generation)
    }

    fileprivate func land(_ write: VolumeWrite, _ body: () throws -> Void) throws {
        // Under the lock, so no transfer can reserve the server between the check and the renames.
        try holds.withLock { holds throws in
            guard !holds.busy.contains(write.server), holds.reservations[write.server, default: 0] == write.generation else {
                throw Self.transferring(write.server)
            }
            try body()
        }
    }

    static func transferring(_ server: String) -> TransferError {
        TransferError(.conflict, .transfer, "server \(server) is transferring: its files cannot be changed until the transfer ends")
    }

    /// A fresh, empty staging directory for `server`.
    /// Throws the `requireRoot` error (500, logged) when the data directory is gone, rather than
    /// the ENOENT of a staging path the client knows nothing about.
    public func makeStaging(for server: String) throws -> String {
        precondition(Self.isValidServerID(server), "unchecked server id")
        try requireRoot()
        let path = stagingDirectory + "/" + server + "." + SecureRandom.alphanumeric(8)
        guard mkdir(path, 0o700) == 0 else {
            let failure = TransferError.system("mkdir", path: path)
            try requireRoot()  // removed between the check and the mkdir
            throw failure
        }
        return path
    }

    /// Makes `staging` the volume of `server` atomically. The previous volume stays whole until the
    /// exchange and is removed afterwards.
    public func commit(staging: String, server: String) throws {
        let fd = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw TransferError.system("open", path: staging) }
        defer { close(fd) }
        // One syncfs flushes every file written into staging; cheaper than an fsync per file.
        let syncStarted = MonotonicClock.now()
        guard tx_syncfs(fd) == 0 else { throw TransferError.system("syncfs", path: staging) }
        Log.debug("volumes: syncfs took \(ByteCount.fixed((MonotonicClock.now() - syncStarted) * 1000, 1)) ms")
        let volume = volumePath(server)
        if tx_rename_noreplace(AT_FDCWD, staging, AT_FDCWD, volume) != 0 {
            guard errno == EEXIST || errno == ENOTEMPTY else { throw TransferError.system("rename", path: volume) }
            // The volume exists: swap both names in one step, then remove the old tree (now at `staging`).
            let linkedTo = FileTree.symlinkTarget(volume)
            guard tx_rename_exchange(AT_FDCWD, staging, AT_FDCWD, volume) == 0 else {
                throw TransferError.system("renameat2", path: volume)
            }
            try FileTree.remove(staging)
            if let linkedTo {
                // An operator's symlink to another disk: the new volume is a directory here now, and
                // what the link pointed at is neither followed nor removed.
                Log.warning("volumes: server \(server): its volume was a symlink to \(linkedTo.escapingControlCharacters); the new volume is a directory in \(dataDirectory.escapingControlCharacters), the old files at the link's target were left as they were")
            }
        }
        let dataFd = open(dataDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dataFd >= 0 {
            fsync(dataFd)
            close(dataFd)
        }
    }

    /// Removes a staging directory (after a failed or cancelled transfer). Never throws: a leftover
    /// is cleaned at the next start.
    public func discard(staging: String) {
        do {
            try FileTree.remove(staging)
        } catch {
            Log.warning("volumes: could not remove staging \(staging): \(error)")
        }
    }
}

/// A write into a volume that began while no transfer held its server (`VolumeStore.beginWrite`).
public struct VolumeWrite: Sendable {
    fileprivate let store: VolumeStore
    public let server: String
    fileprivate let generation: Int

    /// Runs `body` (the step that makes the write visible: renames; short, and never calling back
    /// into the store) unless a transfer has held the server since the write began. Throws
    /// `.conflict` (409) without running it otherwise.
    public func land(_ body: () throws -> Void) throws {
        try store.land(self, body)
    }
}
