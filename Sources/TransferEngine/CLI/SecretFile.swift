#if canImport(Glibc)
import Glibc
#endif

/// Reads a secret (a node token) named by a `--secret-file` option.
///
/// Any file that can be read works: a regular file, `/dev/stdin`, a pipe from process
/// substitution (`<(pass show node)`), a FIFO (opening it waits for its writer, as `cat` does),
/// a character device. It is read to its end, at most `limit` bytes: more is not a token, and a
/// stream that never ends must not be read without bound. Leading and trailing whitespace (the
/// newline `echo` adds) is dropped; nothing left is an error.
///
/// Read once: a pipe cannot be read again, so whatever needs the secret twice keeps the bytes.
public enum SecretFile {
    /// The most a secret file may hold (a node token is 32–64 characters).
    public static let limit = 64 * 1024

    /// The secret in `path`, trimmed. `option` names the option in error messages.
    /// - Throws: `.notFound` when it cannot be opened (missing, or not readable: EX_NOINPUT), `.io`
    ///   when reading fails, `.invalidInput` when it is a directory, empty, or over `limit`.
    public static func read(_ path: String, option: String = "--secret-file") throws -> [UInt8] {
        let shown = path.escapingControlCharacters
        var fd: Int32
        repeat { fd = open(path, O_RDONLY | O_CLOEXEC) } while fd < 0 && errno == EINTR
        guard fd >= 0 else {
            throw TransferError(.notFound, .cli, "\(option): cannot read \(shown): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFDIR {
            throw TransferError(.invalidInput, .cli, "\(option): \(shown) is a directory, not a file with the secret")
        }
        let bytes: [UInt8]
        do {
            bytes = try FileIO.read(fd, upTo: limit, path: path)
        } catch let error as TransferError {
            let reason = (error.cause as? SystemCallError).map { String(cString: strerror($0.errno)) } ?? error.message
            throw TransferError(.io, .cli, "\(option): cannot read \(shown): \(reason)")
        }
        guard bytes.count <= limit else {
            throw TransferError(
                .invalidInput, .cli,
                "\(option): \(shown) holds more than \(limit / 1024) KiB, which is no node token: "
                    + "is it the right file?")
        }
        let text = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        guard !text.isEmpty else { throw TransferError(.invalidInput, .cli, "\(option): \(shown) is empty") }
        return Array(text.utf8)
    }
}
