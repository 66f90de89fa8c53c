#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, waited for with `wait4` so its CPU time and peak
/// RSS can be read (Foundation's `Process` does not report them).
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let outputPath: String

    /// What `wait()` reports.
    public struct Exit: Sendable {
        public var status: Int32
        public var cpuSeconds: Double
        public var peakRSSKiB: Int
    }

    /// Starts `path` with `arguments`; stdout and stderr go to `outputPath`.
    public init(path: String, arguments: [String], outputPath: String) throws {
        self.outputPath = outputPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // The child must not inherit our blocked SIGINT/SIGTERM mask.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawn(&child, path, &actions, &attributes, argv, environ)
        guard result == 0 else { throw TransferError.system("posix_spawn", path: path, errno: result, stage: .cli) }
        pid = child
    }

    /// Waits for the child to exit.
    public func wait() -> Exit {
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Exit(status: code, cpuSeconds: cpu, peakRSSKiB: usage.ru_maxrss)
    }

    public func terminate() { kill(pid, SIGTERM) }

    /// What the child printed so far.
    public var output: String { FileIO.readFile(outputPath) ?? "" }

    /// CPU seconds used so far by a running process (`/proc/<pid>/stat` utime + stime).
    public static func cpuSeconds(of pid: pid_t) -> Double {
        guard let stat = FileIO.readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Peak RSS (VmHWM) of a running process, in KiB.
    public static func peakRSSKiB(of pid: pid_t) -> Int {
        guard let status = FileIO.readFile("/proc/\(pid)/status"),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// Resets a process's peak RSS to its current RSS (`clear_refs` 5), so each run is measured alone.
    public static func resetPeakRSS(of pid: pid_t) {
        let fd = open("/proc/\(pid)/clear_refs", O_WRONLY)
        guard fd >= 0 else { return }
        _ = Glibc.write(fd, "5", 1)
        close(fd)
    }

}
