private import CLibArchive

/// A libarchive failure with its graded status: `FAILED` (-25) spoils one entry, `FATAL` (-30)
/// the whole handle.
struct LibArchiveError: Error, Sendable, CustomStringConvertible {
    let status: Int32
    let errno: Int32
    let message: String
    var description: String { message }

    /// Reads the handle's last error.
    static func from(_ archive: OpaquePointer?, status: Int32) -> LibArchiveError {
        let text = archive.flatMap { archive_error_string($0) }.map { String(cString: $0) } ?? "libarchive error"
        return LibArchiveError(status: status, errno: archive.map { archive_errno($0) } ?? 0, message: text)
    }
}

/// Sets the process locale's character type to UTF-8 once, so libarchive writes and reads names
/// (pax `path` records are UTF-8) without lossy conversion. Idempotent.
enum LibArchiveLocale {
    static let configured: Bool = {
        setlocale(LC_CTYPE, "C.UTF-8") != nil
    }()
}

#if canImport(Glibc)
import Glibc
#endif
