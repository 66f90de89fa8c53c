#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Routes SIGINT and SIGTERM to one thread, so they arrive as ordinary calls instead of
/// interrupting C libraries mid-call. Call `install` first thing in `main`, before any thread
/// starts (threads inherit the blocked mask).
public enum SignalWaiter {
    /// - Parameter hangup: block SIGHUP too (a daemon: it would otherwise end the process
    ///   silently; `wait(onHangup:)` reports it instead).
    public static func blockTerminationSignals(hangup: Bool = false) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        if hangup { sigaddset(&set, SIGHUP) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        // A peer closing a socket must be an error return, not a process kill.
        signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks the calling thread until SIGINT or SIGTERM; returns the signal's name. With
    /// `onHangup`, each SIGHUP calls it and the wait goes on.
    public static func wait(onHangup: (() -> Void)? = nil) -> String {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        if onHangup != nil { sigaddset(&set, SIGHUP) }
        while true {
            var received: Int32 = 0
            sigwait(&set, &received)
            if received == SIGHUP {
                onHangup?()
                continue
            }
            return received == SIGINT ? "SIGINT" : "SIGTERM"
        }
    }

    /// Calls `handler` on a background thread when SIGINT or SIGTERM arrives. A second signal
    /// ends the process at once, in case what the first one asked for is stuck.
    /// `again` may say what the second signal leaves behind (default: the cleanup not waited for).
    public static func onSignal(
        program: String, again: (@Sendable () -> String?)? = nil, _ handler: @escaping @Sendable (String) -> Void
    ) {
        spawnThread(name: "signals") {
            handler(wait())
            exitOnNextSignal(program: program, note: again)
        }
    }

    /// Waits (on the calling thread) for one more SIGINT or SIGTERM, then exits 130 or 143 without
    /// cleaning up: the operator asked twice.
    public static func exitOnNextSignal(program: String, note: (@Sendable () -> String?)? = nil) {
        let name = wait()
        let what = note?() ?? "exiting without waiting for the cleanup"
        StandardError.write("\(program): \(name) again: \(what)\n")
        _exit(name == "SIGINT" ? 130 : 143)
    }
}
