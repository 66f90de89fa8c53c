#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Sends local files to a signed `/upload/file` URL as one streaming multipart body (field
/// `files`, one part per file), as a panel's browser client does.
public final class UploadClient: @unchecked Sendable {
    public let url: String
    public let files: [String]
    public var insecureTLS = false
    public var onProgress: (@Sendable (Int64, Int64, Double) -> Void)?
    private let cancelLock = Condition()
    private var cancelled = false

    public init(url: String, files: [String]) {
        self.url = url
        self.files = files
    }

    public func cancel() { cancelLock.withLock { cancelled = true } }

    /// The files of an upload command line, each once: a file named twice (`a.txt a.txt`,
    /// `a.txt ./a.txt`, or overlapping globs), which would land twice under the same name, is
    /// kept at its first place and returned in `repeated` (for a note). Two different files that
    /// would land under the same name (`x/a.txt y/a.txt`) are a usage error: one would silently
    /// replace the other.
    ///
    /// "The same file" is the same real path (`realpath`) under the same name; a symlink named
    /// otherwise than its target lands under its own name, so it is not a repeat. A path that
    /// cannot be resolved is compared as written (it fails later, with its own error).
    public static func distinctFiles(_ paths: [String]) throws -> (files: [String], repeated: [String]) {
        var files: [String] = []
        var repeated: [String] = []
        var byName: [String: (path: String, real: String)] = [:]
        for path in paths {
            let name = URL(fileURLWithPath: path).lastPathComponent
            let real = resolvedPath(path)
            if let earlier = byName[name] {
                guard earlier.real == real else {
                    throw Arguments.usage(
                        "\(earlier.path.escapingControlCharacters) and \(path.escapingControlCharacters) would both be "
                            + "uploaded as '\(name.escapingControlCharacters)', one replacing the other: upload them "
                            + "into different --directory values, one command each")
                }
                repeated.append(path)
                continue
            }
            byName[name] = (path, real)
            files.append(path)
        }
        return (files, repeated)
    }

    private static func resolvedPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Uploads every file; returns the bytes sent and the server's JSON reply.
    public func run() throws -> (bytes: Int64, reply: JSONValue) {
        var total: Int64 = 0
        for file in files {
            var st = stat()
            guard stat(file, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                throw TransferError(.notFound, .cli, "\(file) is not a readable file")
            }
            total += Int64(st.st_size)
        }
        let started = MonotonicClock.now()
        var body = UploadBody(files: files)
        let easy = try CurlEasyHandle(url: url)
        easy.addHeader("Content-Type: \(body.encoder.contentType)")
        if insecureTLS { easy.allowInsecureTLS() }
        easy.shouldCancel = { [weak self] in self?.cancelLock.withLock { self?.cancelled ?? true } ?? true }
        easy.onProgress = { [onProgress] _, _, sent in onProgress?(min(sent, total), total, MonotonicClock.now() - started) }
        easy.setStreamingPOST { out in try body.read(into: out) }
        let status = try easy.perform()
        guard status == 200 else { throw OutgoingTransfer.remoteError(status: status, body: easy.responseBody) }
        return (total, (try? JSONValue.parse(easy.responseBody)) ?? .null)
    }
}

/// The multipart body of an upload, read file by file.
struct UploadBody {
    var encoder = MultipartEncoder()
    private let files: [String]
    private var index = 0
    private var fd: Int32 = -1
    private var pending: [UInt8] = []
    private var offset = 0
    private var closed = false

    init(files: [String]) { self.files = files }

    mutating func read(into out: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            if offset < pending.count {
                let n = min(out.count, pending.count - offset)
                pending.withUnsafeBytes { out.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
                offset += n
                return n
            }
            if fd >= 0 {
                let n = Glibc.read(fd, out.baseAddress, out.count)
                if n > 0 { return n }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw TransferError.system("read", path: files[index - 1], stage: .cli) }
                close(fd)
                fd = -1
                continue
            }
            if index < files.count {
                let path = files[index]
                index += 1
                fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw TransferError.system("open", path: path, stage: .cli) }
                let name = URL(fileURLWithPath: path).lastPathComponent
                pending = encoder.partHeader(name: "files", filename: name, contentType: "application/octet-stream")
                offset = 0
                continue
            }
            if !closed {
                closed = true
                pending = encoder.closing()
                offset = 0
                continue
            }
            return 0
        }
    }
}
