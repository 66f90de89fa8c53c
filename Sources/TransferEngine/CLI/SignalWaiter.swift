#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Routes SIGINT and SIGTERM to one thread, so they arrive as ordinary calls instead of
/// interrupting C libraries mid-call. Call `install` first thing in `main`, before any thread
/// starts (threads inherit the blocked mask).
public enum SignalWaiter {
    public static func blockTerminationSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        // A peer closing a socket must be an error return, not a process kill.
        signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks the calling thread until SIGINT or SIGTERM; returns the signal's name.
    public static func wait() -> String {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        var received: Int32 = 0
        sigwait(&set, &received)
        return received == SIGINT ? "SIGINT" : "SIGTERM"
    }

    /// Calls `handler` on a background thread when SIGINT or SIGTERM arrives.
    public static func onSignal(_ handler: @escaping @Sendable (String) -> Void) {
        spawnThread(name: "signals") { handler(wait()) }
    }
}
