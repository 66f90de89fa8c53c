#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Process-wide settings both executables apply first thing.
public enum ProcessSetup {
    /// Keeps chunk allocation cheap and peak memory predictable.
    ///
    /// Pipeline chunks are 64–256 KiB arrays freed on another thread than the one that made them.
    /// Served by mmap (glibc's default for the first ones), every chunk costs page faults and
    /// zeroing on first touch and an munmap on free: `perf` showed that as the top cost of a push.
    /// A fixed 4 MiB threshold keeps chunks on the heap, where freed memory is reused (measured:
    /// ~30 % faster, same peak RSS since the buffers bound what is live), and two arenas are
    /// plenty for our few threads. Setting the threshold also freezes glibc's trim threshold at
    /// 128 KiB, so the heap top was handed back and faulted in again all the time (~25,000 page
    /// faults per 262 MiB pushed, each side). 2 MiB keeps most of it (3,000–7,000 faults) for
    /// ~0.3 MiB more peak RSS; 8 MiB saved a few faults more but cost ~1.5 MiB (measured).
    public static func configureMemory() {
        tx_configure_malloc(4 << 20, 2 << 20, 2)
    }

    /// Raises the soft limit on open descriptors to the hard one (as Go does for Wings). Each
    /// connection, each cached extraction directory and each level of a deep tree being walked
    /// holds a descriptor; systemd's default soft limit of 1,024 is less than 1,000 connections.
    public static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// Gives the heap's free pages back to the system. The daemon calls it when its last transfer
    /// ends: what one transfer left free in the middle of the heap (up to ~4 MiB after a `tiny`
    /// and a `large` push, measured) would otherwise count again in every later transfer's peak.
    public static func releaseFreeMemory() {
        tx_release_free_memory()
    }
}

/// `MSG_NOSIGNAL` for `send(2)`: a peer that went away is an error return, never SIGPIPE.
/// (Glibc's macro is not visible to every file in whole-module builds.)
let sendWithoutSignal: Int32 = 0x4000
