#if canImport(Glibc)
import Glibc
#endif

/// Small helpers for reading and writing descriptors.
enum FileIO {
    /// Writes all of `bytes` to `fd`, retrying short writes and EINTR; errors name `path`.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw TransferError.system("write", path: path)
            }
            offset += n
        }
    }

    /// Writes all of `bytes` to `fd` at `offset` (pwrite), retrying short writes and EINTR.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64, path: String) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw TransferError.system("write", path: path)
            }
            done += n
        }
    }

    /// The whole (small) file as text, or nil if it cannot be read (`/proc` files, logs).
    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return (try? read(fd, upTo: 16 << 20, path: path)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// What `fd` holds up to its end, but no more than `limit` + 1 bytes (so a caller sees that
    /// there was more); retries EINTR. Works on pipes and FIFOs, whose size is unknown.
    static func read(_ fd: Int32, upTo limit: Int, path: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= limit {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw TransferError.system("read", path: path)
            }
            bytes += buffer[0..<n]
        }
        return bytes
    }
}
