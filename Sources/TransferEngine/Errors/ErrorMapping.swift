#if canImport(Glibc)
import Glibc
#endif

/// Maps error codes to what the edges speak: HTTP statuses for the daemon, sysexits for the CLI.
/// One place for each, so call sites never pick numbers themselves.
public enum ErrorMapping {
    /// The HTTP status for an error code.
    public static func httpStatus(for code: TransferError.Code) -> Int {
        switch code {
        case .invalidInput: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict, .exists: 409
        case .tooLarge: 413
        case .integrity: 422
        case .unsupported: 415
        case .timeout: 408
        case .cancelled: 409
        default: 500
        }
    }

    /// The process exit status for an error code (sysexits.h values).
    public static func exitStatus(for code: TransferError.Code) -> Int32 {
        switch code {
        case .invalidInput, .integrity, .tooLarge, .unsupported: 65  // EX_DATAERR
        case .unauthorized, .forbidden: 77  // EX_NOPERM
        case .network, .timeout: 69  // EX_UNAVAILABLE
        case .notFound: 66  // EX_NOINPUT: the file, backup, server or volume asked for is not there
        case .exists: 73  // EX_CANTCREAT: the destination is already there; trying again cannot help
        case .io: 74  // EX_IOERR
        case .cancelled: 130
        case .conflict: 75  // EX_TEMPFAIL: busy now, try again later
        default: 1
        }
    }

    /// Why a failed system call on an archive entry is the entry's fault, or nil when it is the
    /// node's (ENOSPC, EDQUOT, EIO, EROFS, EACCES on staging, ...: those stay I/O errors, 5xx).
    ///
    /// The errnos here are answers about the arguments the archive chose (a name, a link target,
    /// a size or an offset beyond what the file system takes), so the same archive fails the same
    /// way on any healthy node: it is invalid input. `EINVAL` only counts for data writes and
    /// `ftruncate`, where the offset or size is the only argument the archive controls.
    static func entryFault(_ failure: SystemCallError) -> String? {
        switch failure.errno {
        case ENAMETOOLONG: "its name or link target is too long for the file system"
        case EFBIG, EOVERFLOW: "its size or data offsets exceed what the file system allows"
        case EINVAL where failure.call == "write" || failure.call == "ftruncate":
            "its size or data offsets exceed what the file system allows"
        case EMLINK: "it has more links or subdirectories than the file system allows"
        case ELOOP: "passes through a symlink"
        default: nil
        }
    }
}
