#if canImport(Glibc)
import Glibc
#endif

/// `POST /upload/file`: files from a multipart form's `files` field, written into one directory
/// of a volume.
///
/// ```
///  body ─▶ MultipartDecoder ─▶ "files" part ─▶ upload.<random>.part (O_EXCL, in the node's staging directory)
///  finish: every part complete ─▶ no transfer held the server meanwhile ─▶ rename each temp file over its final name
/// ```
/// All or nothing: until the whole body has arrived nothing visible changes, so a failed or cut
/// upload leaves no partial file and never touches an existing file of the same name; the
/// directories it had to make for the target (when its first file began) go again, if still
/// empty. The unfinished files wait outside the volume, so a push that starts meanwhile never
/// archives them and a daemon killed mid-upload leaves nothing in the volume (its next start
/// empties staging). Only when staging is on another file system (a volume mounted on its own)
/// do they wait in the target directory as `.upload-<random>.part`. An upload during which a
/// transfer held the server gets 409 and lands nothing (`VolumeWrite`).
public final class UploadReceiver: RequestBodyHandler, @unchecked Sendable {
    private struct Pending {
        let temporary: [CChar]
        let name: String
        var bytes: Int64
    }

    private let volume: VolumeRoot
    /// The server the files are for (named in the log line).
    private let server: String?
    private let directory: [[UInt8]]
    private let directoryDisplay: String
    private let limitBytes: Int64
    private var decoder: MultipartDecoder
    private var directoryDescriptor: Int32 = -1
    /// The index in `directory` of the first directory this upload made (nil: none): all or
    /// nothing covers them too, so a failed upload removes them again (those still empty).
    private var createdFrom: Int?
    /// Where unfinished files wait: `temporaryDirectory` when it is on the volume's file system
    /// (a rename must not cross file systems), else the target directory itself.
    private var waitingDescriptor: Int32 = -1
    private let temporaryDirectory: String?
    private var current: (fd: Int32, file: Pending)?
    private var completed: [Pending] = []
    private var sawSingularField = false
    private let owner: FileOwner?
    private let write: VolumeWrite?

    /// - Parameters:
    ///   - directory: symlink-free components of the target directory inside `volume`.
    ///   - owner: who gets each file (nil: the daemon's user).
    ///   - write: from `VolumeStore.beginWrite`: the files land only if no transfer held the server
    ///     since (nil: no such check).
    ///   - temporaryDirectory: where unfinished files wait (the node's staging directory; nil: the
    ///     target directory).
    public init(
        volume: VolumeRoot, directory: [[UInt8]], directoryDisplay: String, limitBytes: Int64, boundary: String,
        owner: FileOwner? = nil, server: String? = nil, write: VolumeWrite? = nil, temporaryDirectory: String? = nil
    ) {
        self.temporaryDirectory = temporaryDirectory
        self.owner = owner
        self.write = write
        self.server = server
        self.volume = volume
        self.directory = directory
        self.directoryDisplay = directoryDisplay
        self.limitBytes = limitBytes
        self.decoder = MultipartDecoder(boundary: boundary)
    }

    deinit {
        if waitingDescriptor >= 0, waitingDescriptor != directoryDescriptor { close(waitingDescriptor) }
        if directoryDescriptor >= 0 { close(directoryDescriptor) }
    }

    public func receive(_ bytes: UnsafeRawBufferPointer) throws {
        try decoder.feed(bytes) { event in
            switch event {
            case .partBegin(let headers):
                if headers.name == "files" {
                    try beginFile(headers)
                } else if headers.name == "file" {
                    sawSingularField = true
                }
            case .partData(let data):
                guard var open = current else { return }
                open.file.bytes += Int64(data.count)
                guard open.file.bytes <= limitBytes else {
                    throw TransferError(.invalidInput, .http, "file '\(open.file.name)' is over the upload limit of \(limitBytes >> 20) MiB")
                }
                current = open
                try FileIO.writeAll(open.fd, data, path: open.file.name)
            case .partEnd:
                guard let open = current else { return }
                current = nil
                let ok = fchmod(open.fd, 0o644) == 0
                let owned = owner.map { fchown(open.fd, $0.uid, $0.gid) == 0 } ?? true
                close(open.fd)
                guard ok else { throw TransferError.system("fchmod", path: open.file.name) }
                guard owned else { throw TransferError.system("fchown", path: open.file.name) }
                completed.append(open.file)
            }
        }
    }

    private func beginFile(_ headers: PartHeaders) throws {
        guard let raw = headers.filename else {
            throw TransferError(.invalidInput, .http, "a 'files' part has no filename")
        }
        // Browsers may send a client-side path; only the base name is ever used.
        let name = String(raw.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last ?? "")
        guard !name.isEmpty, name != ".", name != "..", !name.contains("\0"), name.utf8.count <= 255 else {
            throw TransferError(.invalidInput, .http, "invalid file name '\(raw)'")
        }
        if directoryDescriptor < 0 {
            directoryDescriptor = try volume.openDirectory(
                directory, create: true, display: directoryDisplay, createdFrom: &createdFrom)
            waitingDescriptor = openWaitingDirectory()
        }
        let prefix = waitingDescriptor == directoryDescriptor ? ".upload-" : "upload."
        let temporary = CString.terminated(Array("\(prefix)\(SecureRandom.alphanumeric(12)).part".utf8))
        let fd = openat(waitingDescriptor, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TransferError.system("openat", path: "\(directoryDisplay)/\(name)") }
        current = (fd, Pending(temporary: temporary, name: name, bytes: 0))
    }

    /// The staging directory when a rename from it into the target directory cannot cross file
    /// systems; otherwise the target directory.
    private func openWaitingDirectory() -> Int32 {
        guard let temporaryDirectory else { return directoryDescriptor }
        let fd = open(temporaryDirectory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return directoryDescriptor }
        var staging = stat()
        var target = stat()
        guard fstat(fd, &staging) == 0, fstat(directoryDescriptor, &target) == 0, staging.st_dev == target.st_dev else {
            close(fd)
            return directoryDescriptor
        }
        return fd
    }

    public func finish(error: (any Error)?) -> HTTPResponse {
        do {
            if let error { throw error }
            try decoder.finish()
            guard !completed.isEmpty else {
                let hint = sawSingularField ? " (the field is named 'files', not 'file')" : ""
                throw TransferError(.invalidInput, .http, "no files in the form\(hint)")
            }
            for file in completed {
                let final = CString.terminated(Array(file.name.utf8))
                var st = stat()
                if fstatat(directoryDescriptor, final, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFDIR {
                    throw TransferError(.exists, .http, "'\(file.name)' already exists as a directory")
                }
            }
            let renameAll = { [self] in
                for file in completed {
                    guard renameat(waitingDescriptor, file.temporary, directoryDescriptor, CString.terminated(Array(file.name.utf8))) == 0 else {
                        throw TransferError.system("renameat", path: file.name)
                    }
                }
            }
            if let write { try write.land(renameAll) } else { try renameAll() }
            let total = completed.reduce(Int64(0)) { $0 + $1.bytes }
            Log.info("upload: \(server.map { "server \($0): " } ?? "")\(completed.count) files, \(ByteCount.format(total)) into /\(directoryDisplay)")
            let names = completed.map { JSONValue.string($0.name) }
            completed.removeAll()
            createdFrom = nil
            return .json(200, ["files": .array(names), "bytes": .number(Double(total))])
        } catch {
            cleanUp()
            return .error(error)
        }
    }

    public func abort() {
        cleanUp()
        Log.warning("upload: connection closed mid-upload; nothing was written")
    }

    private func cleanUp() {
        if let open = current {
            close(open.fd)
            unlinkat(waitingDescriptor, open.file.temporary, 0)
            current = nil
        }
        for file in completed { unlinkat(waitingDescriptor, file.temporary, 0) }
        completed.removeAll()
        if let createdFrom {
            volume.removeCreatedDirectories(directory, from: createdFrom)
            self.createdFrom = nil
        }
    }
}
