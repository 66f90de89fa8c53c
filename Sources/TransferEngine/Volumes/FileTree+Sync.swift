#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

extension FileTree {
    /// Writes back everything dirty on the file system holding `path` (`syncfs`); false on failure.
    @discardableResult
    public static func syncFileSystem(containing path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return tx_syncfs(fd) == 0
    }
}
