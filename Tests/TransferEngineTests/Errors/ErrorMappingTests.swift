import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

struct ErrorMappingTests {
    /// Errnos that answer the arguments an archive chose (names, targets, sizes, offsets) make the
    /// entry invalid input, whatever the call.
    @Test(arguments: [ENAMETOOLONG, EFBIG, EOVERFLOW, EMLINK, ELOOP])
    func entryCausedErrnosBlameTheEntry(code: Int32) {
        for call in ["openat", "mkdirat", "symlinkat", "linkat", "write", "ftruncate"] {
            #expect(ErrorMapping.entryFault(SystemCallError(call: call, errno: code)) != nil, "\(call): \(code)")
        }
    }

    /// `EINVAL` blames the entry only where its offset or size is the argument in question.
    @Test func invalidArgumentBlamesTheEntryOnlyForDataWritesAndTruncation() {
        #expect(ErrorMapping.entryFault(SystemCallError(call: "write", errno: EINVAL)) != nil)
        #expect(ErrorMapping.entryFault(SystemCallError(call: "ftruncate", errno: EINVAL)) != nil)
        for call in ["openat", "mkdirat", "symlinkat", "fchmod", "fcntl", "syncfs"] {
            #expect(ErrorMapping.entryFault(SystemCallError(call: call, errno: EINVAL)) == nil, "\(call)")
        }
    }

    /// Failures of the node (full disk, quota, bad disk, read-only, permissions on staging, out of
    /// descriptors or memory) stay I/O errors (5xx), whatever the call.
    @Test(arguments: [ENOSPC, EDQUOT, EIO, EROFS, EACCES, EPERM, EMFILE, ENFILE, ENOMEM, EEXIST, ENOENT])
    func nodeFailuresStayIOErrors(code: Int32) {
        for call in ["openat", "mkdirat", "symlinkat", "linkat", "write", "ftruncate", "fchmod", "futimens"] {
            #expect(ErrorMapping.entryFault(SystemCallError(call: call, errno: code)) == nil, "\(call): \(code)")
            #expect(ErrorMapping.httpStatus(for: TransferError.system(call, path: "p", errno: code).code) >= 404)
        }
        #expect(ErrorMapping.httpStatus(for: TransferError.system("write", path: "p", errno: code).code) != 400)
    }
}
