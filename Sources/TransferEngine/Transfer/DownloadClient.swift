#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Fetches a signed download URL (`/download/file` or `/download/backup`) into a local file,
/// resuming a previous partial download when asked, and only when it is still the same file.
///
/// ```
///  GET url ─▶ <output>.part (+ <output>.part.etag: the response's validator) ─complete─▶ rename to <output>
///  --resume: GET url, Range: bytes=<have>-, If-Range: <stored validator>
///      206 ─▶ append to <output>.part       200 (the file changed) ─▶ rewrite <output>.part from byte 0
/// ```
/// The final name appears only when the whole file has arrived. A partial file is never
/// continued blindly: without a stored validator, or when the server says it is longer than the
/// file, `run` refuses and leaves it as it is. One request per run, so a one-time token is spent once.
///
/// Local files are never reached through symlinks: the partial file and its validator are created
/// fresh (`O_EXCL | O_NOFOLLOW`) or, to resume, must be regular files, so a link planted in a
/// shared directory (`FILE.part -> /etc/passwd`) is neither written nor read. An output that is a
/// device or a pipe (`/dev/null`, `/dev/stdout`) is written directly, never renamed over; an
/// output that is a symlink or a directory is refused.
public final class DownloadClient: @unchecked Sendable {
    public struct Result: Sendable {
        public var bytes: Int64
        public var resumedFrom: Int64
        public var seconds: Double
        /// Resuming was asked for, but the remote file had changed: it was fetched again from byte 0.
        public var restarted = false
    }

    public let url: String
    public let output: String
    public var resume = false
    public var insecureTLS = false
    public var onProgress: (@Sendable (Int64, Int64, Double) -> Void)?
    private let cancelLock = Condition()
    private var cancelled = false

    public init(url: String, output: String) {
        self.url = url
        self.output = output
    }

    public func cancel() { cancelLock.withLock { cancelled = true } }

    public var partialPath: String { output + ".part" }

    /// Holds the validator (the `ETag`, or `Last-Modified` when there is no strong ETag) of the
    /// response the partial file came from, so a resume never splices a changed file.
    public var validatorPath: String { output + ".part.etag" }

    /// What `output` is before the download.
    enum OutputKind: Equatable {
        /// Nothing there yet, or a regular file: `.part`, then rename.
        case file
        /// A character device, pipe or socket (`/dev/null`, `/dev/stdout`): written directly.
        case stream
    }

    static func outputKind(_ output: String) throws -> OutputKind {
        var link = stat()
        guard lstat(output, &link) == 0 else { return .file }
        var target = stat()
        let resolves = stat(output, &target) == 0
        let type = (resolves ? target : link).st_mode & S_IFMT
        if type == S_IFDIR { throw TransferError(.invalidInput, .transfer, "\(output) is a directory") }
        if type == S_IFCHR || type == S_IFIFO || type == S_IFSOCK { return .stream }
        if link.st_mode & S_IFMT == S_IFLNK {
            // Renaming onto it would replace the link, not write where it points.
            throw TransferError(
                .invalidInput, .transfer, "\(output) is a symlink: give the path of the file itself (or a new name)")
        }
        guard type == S_IFREG else { throw TransferError(.invalidInput, .transfer, "\(output) is not a regular file") }
        return .file
    }

    public func run() throws -> Result {
        if try Self.outputKind(output) == .stream {
            guard !resume else {
                throw TransferError(.invalidInput, .transfer, "\(output) is a device or pipe: it cannot be resumed into")
            }
            return try attempt(have: 0, validator: nil, streamingTo: output)
        }
        var have: Int64 = 0
        var validator: String?
        var st = stat()
        if resume, lstat(partialPath, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFREG else {
                throw TransferError(
                    .invalidInput, .transfer, "\(partialPath) is not a regular file (a symlink?); it was left as it is")
            }
        }
        if resume, st.st_mode & S_IFMT == S_IFREG, st.st_size > 0 {
            have = Int64(st.st_size)
            validator = Self.storedValidator(at: validatorPath)
            guard validator != nil else {
                throw TransferError(
                    .invalidInput, .transfer,
                    "\(partialPath) has no stored validator (\(validatorPath)), so it cannot be checked against the "
                        + "remote file; it was left as it is: remove it or download without --resume")
            }
        }
        return try attempt(have: have, validator: validator)
    }

    /// One request. Nothing local is changed before the server has answered with a body to keep.
    private func attempt(have startingAt: Int64, validator: String?, streamingTo stream: String? = nil) throws -> Result {
        let started = MonotonicClock.now()
        var have = startingAt
        let easy = try CurlEasyHandle(url: url)
        if have > 0, let validator {
            easy.addHeader("Range: bytes=\(have)-")
            easy.addHeader("If-Range: \(validator)")  // changed on the server: it sends the whole file (200)
        }
        if insecureTLS { easy.allowInsecureTLS() }
        easy.shouldCancel = { [weak self] in self?.cancelLock.withLock { self?.cancelled ?? true } ?? true }
        var fd: Int32 = -1
        var received: Int64 = 0
        defer { if fd >= 0 { close(fd) } }
        easy.successSink = { [partialPath, validatorPath, unowned easy] bytes in
            if fd < 0, let stream {
                fd = open(stream, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw TransferError.system("open", path: stream) }
            }
            if fd < 0 {
                // 206 continues the partial file; 200 means the server sent everything again.
                let append = easy.statusSoFar == 206
                if append {
                    let start = Self.rangeStart(easy.responseHeaders["content-range"])
                    guard start == have else {
                        throw TransferError(
                            .integrity, .transfer,
                            "the node sent a range that does not continue \(partialPath) (Content-Range: "
                                + "\(easy.responseHeaders["content-range"] ?? "none"), have \(have) bytes); it was left as it is")
                    }
                } else {
                    have = 0
                    // The old validator goes first: a partial file must never sit beside another file's.
                    unlink(validatorPath)
                }
                fd = append ? try Self.openExisting(partialPath) : try Self.createFresh(partialPath)
                if !append, let validator = Self.validator(from: easy.responseHeaders) {
                    // Best effort: without it, the partial file is refused for --resume later, never spliced.
                    if let vfd = try? Self.createFresh(validatorPath) {
                        try? Array(validator.utf8).withUnsafeBytes { try FileIO.writeAll(vfd, $0, path: validatorPath) }
                        close(vfd)
                    }
                }
            }
            try FileIO.writeAll(fd, bytes, path: partialPath)
            received += Int64(bytes.count)
        }
        easy.onProgress = { [onProgress] now, total, _ in
            onProgress?(have + now, total > 0 ? have + total : 0, MonotonicClock.now() - started)
        }
        let status = try easy.perform()
        if status == 416 && have > 0 {
            // The validator matched (else the server would have sent the whole file): complete only if
            // the partial file is exactly as long as the file (`bytes */N`).
            let size = easy.responseHeaders["content-range"].flatMap { Int64($0.split(separator: "/").last ?? "") }
            guard size == have else {
                let remote = size.map { "\($0) bytes" } ?? "unknown size"
                throw TransferError(
                    .invalidInput, .transfer,
                    "\(partialPath) (\(have) bytes) does not match the remote file (\(remote)); it was left as it is: "
                        + "remove it or download without --resume")
            }
            try finishFile()
            return Result(bytes: have, resumedFrom: have, seconds: MonotonicClock.now() - started)
        }
        guard status == 200 || status == 206 else { throw OutgoingTransfer.remoteError(status: status, body: easy.responseBody) }
        if stream != nil {
            return Result(bytes: received, resumedFrom: 0, seconds: MonotonicClock.now() - started)
        }
        if fd < 0 {
            // An empty file: nothing was written, but it must exist.
            fd = try Self.createFresh(partialPath)
        }
        guard fsync(fd) == 0 else { throw TransferError.system("fsync", path: partialPath) }
        try finishFile()
        return Result(
            bytes: have + received, resumedFrom: status == 206 ? have : 0, seconds: MonotonicClock.now() - started,
            restarted: status == 200 && startingAt > 0)
    }

    private func finishFile() throws {
        guard rename(partialPath, output) == 0 else { throw TransferError.system("rename", path: output) }
        unlink(validatorPath)
    }

    /// A new file at `path`, replacing whatever was there (a stale partial file, or a symlink
    /// someone planted: the link is removed, never followed).
    static func createFresh(_ path: String) throws -> Int32 {
        if unlink(path) != 0 && errno != ENOENT { throw TransferError.system("unlink", path: path) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw TransferError.system("open", path: path) }
        return fd
    }

    /// The partial file to append to: it must be a regular file, not reached through a symlink.
    static func openExisting(_ path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw TransferError.system("open", path: path) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw TransferError(.invalidInput, .transfer, "\(path) is not a regular file; it was left as it is")
        }
        return fd
    }

    /// The validator to store for a response: a strong `ETag`, else `Last-Modified` (RFC 9110
    /// §13.1.5: If-Range takes no weak tags). Nil when there is none fit to send back in a header.
    static func validator(from headers: [String: String]) -> String? {
        if let etag = headers["etag"], !etag.hasPrefix("W/"), isHeaderSafe(etag) { return etag }
        if let date = headers["last-modified"], isHeaderSafe(date) { return date }
        return nil
    }

    /// The validator stored beside a partial file, if it is one that can go into a header as it is.
    static func storedValidator(at path: String) -> String? {
        // Never through a symlink: a planted link would send a local file's first bytes to the node.
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        var buffer = [UInt8](repeating: 0, count: 513)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0, n <= 512 else { return nil }
        let text = String(decoding: buffer[0..<n], as: UTF8.self)
        return isHeaderSafe(text) ? text : nil
    }

    /// Printable ASCII only, at most 256 bytes: a stored value must not add headers of its own.
    static func isHeaderSafe(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.count <= 256 && value.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
            && value.first != " " && value.last != " "
    }

    /// The first byte of a `Content-Range: bytes a-b/N` header.
    static func rangeStart(_ header: String?) -> Int64? {
        guard let header, header.lowercased().hasPrefix("bytes ") else { return nil }
        return Int64(header.dropFirst(6).prefix(while: { $0 != "-" }).trimmingSpaces())
    }
}
