#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Pelican's extra transfer parts: `backup_<file>` carries one of the server's backups and
/// `checksum_backup_<file>` its SHA-256. Each backup is streamed to a hidden temp file in the
/// backup directory, hashed on the way, and renamed into place only when the whole transfer
/// commits and its checksum matched; otherwise the temp files are removed.
///
/// A backup never replaces another: the backup directory is shared by every server on the node,
/// and a transfer token for one server must not rewrite another's backup. A backup of that name
/// already there is accepted only if it is the same bytes (the same backup sent again).
///
/// The connection thread feeds it; `discard()` may come from a cancelling thread, so every entry
/// point holds `lock`, and nothing is written after a discard.
final class IncomingBackups: @unchecked Sendable {
    private let lock = Condition()
    private var discarded = false
    private struct Received {
        let temporary: String
        let digest: String
    }

    let directory: String
    private let service: BackupService
    private let server: String
    private var current: (name: String, fd: Int32, temporary: String, hasher: SHA256Hasher)?
    private var currentChecksum: (name: String, bytes: [UInt8])?
    private var received: [String: Received] = [:]
    private var checksums: [String: String] = [:]

    /// Backups arriving with `server`'s transfer, into `service`'s directory.
    init(service: BackupService, server: String) {
        self.service = service
        self.directory = service.directory
        self.server = server
    }

    /// Starts a part if it is one of ours; false for any other part name.
    func begin(_ partName: String) throws -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !discarded else { throw TransferError(.cancelled, .transfer, "the transfer was cancelled") }
        if partName.hasPrefix("checksum_backup_") {
            currentChecksum = (try Self.fileName(partName.dropFirst("checksum_backup_".count)), [])
            return true
        }
        guard partName.hasPrefix("backup_") else { return false }
        let name = try Self.fileName(partName.dropFirst("backup_".count))
        guard received[name] == nil else { throw Self.invalid("the body has two backup_\(name) parts") }
        // A backup directory that was there and is gone (a disk unmounted) is not made again: 500.
        try service.prepareDirectory()
        let temporary = "\(directory)/.incoming-\(SecureRandom.alphanumeric(12)).partial"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TransferError.system("open", path: temporary) }
        current = (name, fd, temporary, SHA256Hasher())
        return true
    }

    func data(_ bytes: UnsafeRawBufferPointer) throws {
        lock.lock()
        defer { lock.unlock() }
        guard !discarded else { throw TransferError(.cancelled, .transfer, "the transfer was cancelled") }
        if let open = current {
            open.hasher.update(bytes)
            try FileIO.writeAll(open.fd, bytes, path: open.temporary)
        } else if currentChecksum != nil {
            currentChecksum!.bytes.append(contentsOf: bytes)
            guard currentChecksum!.bytes.count <= 512 else { throw Self.invalid("a backup checksum part is too long") }
        }
    }

    func end() throws {
        lock.lock()
        defer { lock.unlock() }
        guard !discarded else { throw TransferError(.cancelled, .transfer, "the transfer was cancelled") }
        if let open = current {
            current = nil
            let ok = fsync(open.fd) == 0
            close(open.fd)
            guard ok else { throw TransferError.system("fsync", path: open.temporary) }
            received[open.name] = Received(temporary: open.temporary, digest: open.hasher.finalizeHex())
        } else if let checksum = currentChecksum {
            currentChecksum = nil
            checksums[checksum.name] = String(decoding: checksum.bytes, as: UTF8.self).trimmingWhitespace().lowercased()
        }
    }

    /// Every backup has a checksum part and it matches, and the backup directory is still the
    /// one they were written into (call before committing anything).
    func verify() throws {
        lock.lock()
        defer { lock.unlock() }
        guard !discarded else { throw TransferError(.cancelled, .transfer, "the transfer was cancelled") }
        if !received.isEmpty, let fault = service.directoryFault() { throw fault }
        for (name, backup) in received {
            guard let sent = checksums[name] else { throw Self.invalid("backup \(name) has no checksum_backup_\(name) part") }
            guard sent == backup.digest else {
                throw TransferError(.integrity, .transfer, "checksum mismatch for backup \(name): sent \(sent.prefix(64)), received \(backup.digest)")
            }
            let existing = "\(directory)/\(name)"
            if FileTree.exists(existing) && SHA256Hasher.hex(ofFile: existing) != backup.digest {
                throw TransferError(
                    .exists, .transfer, "backup \(name) already exists on this node with other content; refusing to replace it")
            }
        }
    }

    /// Moves the verified backups into place. Returns their names.
    func commit() -> [String] {
        lock.lock()
        defer { lock.unlock() }
        guard !discarded else { return [] }
        var stored: [String] = []
        for (name, backup) in received.sorted(by: { $0.key < $1.key }) {
            // Never over another file, even one that appeared since verify().
            if tx_rename_noreplace(AT_FDCWD, backup.temporary, AT_FDCWD, "\(directory)/\(name)") == 0 {
                stored.append(name)
            } else {
                // EEXIST: the same backup, checked by verify(), or one that raced in: kept either way.
                if errno != EEXIST {
                    Log.error("transfer \(server): could not store backup \(name): \(String(cString: strerror(errno)))")
                }
                unlink(backup.temporary)
            }
        }
        received.removeAll()
        return stored
    }

    /// Removes every temp file (a failed or cancelled transfer).
    func discard() {
        lock.lock()
        defer { lock.unlock() }
        discarded = true
        if let open = current {
            close(open.fd)
            unlink(open.temporary)
            current = nil
        }
        for backup in received.values { unlink(backup.temporary) }
        received.removeAll()
    }

    /// A plain file name of letters, digits, `.`, `_` and `-` (Pelican's are `<uuid>.tar.gz`), not
    /// hidden, not an option-like `-name`, at most 255 bytes: nothing a shell, a path or a log
    /// line could misread.
    static func fileName(_ text: Substring) throws -> String {
        let name = String(text)
        let plain = name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2e || b == 0x5f || b == 0x2d
        }
        guard !name.isEmpty, plain, !name.hasPrefix("."), !name.hasPrefix("-"), name.utf8.count <= 255 else {
            throw invalid("invalid backup part name '\(String(name.prefix(80)).escapingControlCharacters)' (letters, digits, '.', '_', '-')")
        }
        return name
    }

    static func invalid(_ message: String) -> TransferError { TransferError(.invalidInput, .transfer, message) }
}
