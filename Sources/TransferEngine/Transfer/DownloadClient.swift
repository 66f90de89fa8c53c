#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Fetches a signed download URL (`/download/file` or `/download/backup`) into a local file,
/// resuming a previous partial download when asked.
///
/// ```
///  GET url (Range: bytes=<have>- when resuming) ─▶ <output>.part ─complete─▶ rename to <output>
/// ```
/// The final name appears only when the whole file has arrived.
public final class DownloadClient: @unchecked Sendable {
    public struct Result: Sendable {
        public var bytes: Int64
        public var resumedFrom: Int64
        public var seconds: Double
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

    /// The validator of the partial file's source, so a resume never splices a changed file.
    var etagPath: String { output + ".part.etag" }

    public func run() throws -> Result {
        var have: Int64 = 0
        var st = stat()
        if resume, stat(partialPath, &st) == 0 { have = Int64(st.st_size) }
        if have == 0 { unlink(etagPath) }
        if let result = try attempt(have: have) { return result }
        // The partial file does not belong to this file (bigger than it, or the file changed): start over.
        unlink(partialPath)
        unlink(etagPath)
        return try attempt(have: 0)!
    }

    /// One request. Nil when the server says the partial file cannot be continued (416 with another size).
    private func attempt(have startingAt: Int64) throws -> Result? {
        let started = MonotonicClock.now()
        var have = startingAt
        let easy = try CurlEasyHandle(url: url)
        if have > 0 {
            easy.addHeader("Range: bytes=\(have)-")
            if let etag = try? String(contentsOfFile: etagPath, encoding: .utf8), !etag.isEmpty {
                easy.addHeader("If-Range: \(etag)")  // changed on the server: it sends the whole file (200)
            }
        }
        if insecureTLS { easy.allowInsecureTLS() }
        easy.shouldCancel = { [weak self] in self?.cancelLock.withLock { self?.cancelled ?? true } ?? true }
        var fd: Int32 = -1
        var received: Int64 = 0
        defer { if fd >= 0 { close(fd) } }
        easy.successSink = { [partialPath, etagPath, unowned easy] bytes in
            if fd < 0 {
                // 206 continues the partial file; 200 means the server sent everything again.
                let append = easy.statusSoFar == 206
                fd = open(partialPath, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0o644)
                guard fd >= 0 else { throw TransferError.system("open", path: partialPath) }
                if !append { have = 0 }
                if let etag = easy.responseHeaders["etag"] { try? Data(etag.utf8).write(to: URL(fileURLWithPath: etagPath)) }
            }
            try FileIO.writeAll(fd, bytes, path: partialPath)
            received += Int64(bytes.count)
        }
        easy.onProgress = { [onProgress] now, total, _ in
            onProgress?(have + now, total > 0 ? have + total : 0, MonotonicClock.now() - started)
        }
        let status = try easy.perform()
        if status == 416 && have > 0 {
            // Complete only if the partial file is exactly as long as the file (`bytes */N`).
            let size = easy.responseHeaders["content-range"].flatMap { Int64($0.split(separator: "/").last ?? "") }
            guard size == have else { return nil }
            try finishFile()
            return Result(bytes: have, resumedFrom: have, seconds: MonotonicClock.now() - started)
        }
        guard status == 200 || status == 206 else { throw OutgoingTransfer.remoteError(status: status, body: easy.responseBody) }
        if fd < 0 {
            // An empty file: nothing was written, but it must exist.
            fd = open(partialPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        }
        guard fsync(fd) == 0 else { throw TransferError.system("fsync", path: partialPath) }
        try finishFile()
        return Result(bytes: have + received, resumedFrom: status == 206 ? have : 0, seconds: MonotonicClock.now() - started)
    }

    private func finishFile() throws {
        guard rename(partialPath, output) == 0 else { throw TransferError.system("rename", path: output) }
        unlink(etagPath)
    }
}
