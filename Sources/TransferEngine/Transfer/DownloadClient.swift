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

    public func run() throws -> Result {
        var have: Int64 = 0
        var validator: String?
        var st = stat()
        if resume, stat(partialPath, &st) == 0, st.st_size > 0 {
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
    private func attempt(have startingAt: Int64, validator: String?) throws -> Result {
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
                fd = open(partialPath, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0o644)
                guard fd >= 0 else { throw TransferError.system("open", path: partialPath) }
                if !append, let validator = Self.validator(from: easy.responseHeaders) {
                    // Best effort: without it, the partial file is refused for --resume later, never spliced.
                    try? Data(validator.utf8).write(to: URL(fileURLWithPath: validatorPath))
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
        if fd < 0 {
            // An empty file: nothing was written, but it must exist.
            fd = open(partialPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw TransferError.system("open", path: partialPath) }
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

    /// The validator to store for a response: a strong `ETag`, else `Last-Modified` (RFC 9110
    /// §13.1.5: If-Range takes no weak tags). Nil when there is none fit to send back in a header.
    static func validator(from headers: [String: String]) -> String? {
        if let etag = headers["etag"], !etag.hasPrefix("W/"), isHeaderSafe(etag) { return etag }
        if let date = headers["last-modified"], isHeaderSafe(date) { return date }
        return nil
    }

    /// The validator stored beside a partial file, if it is one that can go into a header as it is.
    static func storedValidator(at path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path), data.count <= 512 else { return nil }
        let text = String(decoding: data, as: UTF8.self)
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
