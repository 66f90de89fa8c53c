#if canImport(Glibc)
import Glibc
#endif

/// Small helpers for writing to descriptors.
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
}
