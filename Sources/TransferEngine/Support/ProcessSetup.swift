#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Process-wide settings both executables apply first thing.
public enum ProcessSetup {
    /// Keeps peak memory bounded by what the pipeline holds, not by allocator caching.
    ///
    /// Pipeline chunks are 64–256 KiB arrays freed on another thread than the one that made them.
    /// glibc's default raises its mmap threshold after the first free and then serves such chunks
    /// from per-thread arenas that keep freed memory resident, which doubled peak RSS in
    /// `make bench-push`. A fixed threshold returns every chunk to the kernel on free, and two
    /// arenas are plenty for our few threads.
    public static func configureMemory() {
        tx_configure_malloc(64 * 1024, 2)
    }
}

/// `MSG_NOSIGNAL` for `send(2)`: a peer that went away is an error return, never SIGPIPE.
/// (Glibc's macro is not visible to every file in whole-module builds.)
let sendWithoutSignal: Int32 = 0x4000
