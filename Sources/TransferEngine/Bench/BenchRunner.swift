#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// `transfer-send bench`: pushes standard volumes through a local `transferd` (or a given node)
/// with the real binaries, N times after a warm-up, and measures the same volume's baselines in
/// the same run, so results are ratios on this machine rather than absolute claims.
///
/// ```
///  corpus (generated once) ─▶ [warm-up] ─▶ N × `transfer-send push --json` child (wait4: CPU, peak RSS)
///                                          daemon: /proc CPU delta, VmHWM (reset per run)
///  baselines: tar | sha256sum · tar | gzip -1 · tar | igzip -1 · tar | zstd -1 -T0 (those installed)
/// ```
public final class BenchRunner {
    public struct Options: Sendable {
        public var corpora: [BenchCorpus.Kind] = [.mixed]
        public var scale = 0.25
        public var runs = 3
        public var warmup = true
        public var modes: [CompressionNegotiator.Mode] = [.gzip, .auto]
        public var workDirectory = "transfer-bench"
        public var volume: String?
        public var url: String?
        public var secretFile: String?
        /// The destination's node token, when `secretFile` cannot be read again by each push (a
        /// pipe, `/dev/stdin`): written to a private (0600) file in the work directory for the
        /// pushes, and removed at the end.
        public var secret: [UInt8]?
        public var baselines = true
        public init() {}
    }

    /// One measured push.
    public struct Run: Sendable {
        public var seconds: Double
        public var volumeBytes: Int64
        public var archiveBytes: Int64
        public var files: Int
        public var compression: String
        public var senderCPU: Double
        public var senderRSSMiB: Double
        public var daemonCPU: Double?
        public var daemonRSSMiB: Double?
        public var mbPerSecond: Double { Double(volumeBytes) / seconds / 1e6 }
        public var filesPerSecond: Double { Double(files) / seconds }
        public var ratio: Double { volumeBytes > 0 ? Double(archiveBytes) / Double(volumeBytes) : 0 }
    }

    /// All runs of one corpus in one mode.
    public struct Series: Sendable {
        public var corpus: String
        public var mode: String
        public var runs: [Run]
        public func median(_ value: (Run) -> Double) -> Double {
            let sorted = runs.map(value).sorted()
            guard !sorted.isEmpty else { return 0 }
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
    }

    public struct Baseline: Sendable {
        public var corpus: String
        public var name: String
        public var command: String
        public var mbPerSecond: Double
    }

    public struct Report: Sendable {
        public var series: [Series] = []
        public var baselines: [Baseline] = []
        public var volumeBytes: [String: Int64] = [:]
        public var volumeFiles: [String: Int] = [:]
        /// Conditions the figures depend on, printed as they are found and kept in the JSON.
        public var notes: [String] = []
    }

    public let options: Options
    private let binDirectory: String
    /// Volumes received in the current corpus, removed when it is done (not between runs).
    private var pushedServers: [String] = []
    public var log: (String) -> Void = { StandardError.write($0.escapingControlCharacters + "\n") }

    public init(options: Options) {
        self.options = options
        binDirectory = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map {
            URL(fileURLWithPath: $0).deletingLastPathComponent().path
        } ?? "."
    }

    public func run() throws -> Report {
        try FileTree.makeDirectories(options.workDirectory)
        // The baseline's scratch tree gets the same placement as the daemon's staging trees.
        DirectoryAllocation.markSubdirectoriesUnrelated(options.workDirectory)
        var report = Report()
        if let warning = JournalCheck.warning(for: options.workDirectory) {
            report.notes.append("\(warning); many-file figures then depend on what was deleted recently")
            log("bench: note: \(report.notes[report.notes.count - 1])")
        }
        var daemon: ChildProcess?
        var url = options.url
        var secretFile = options.secretFile
        var privateSecretFile: String?
        defer { if let privateSecretFile { unlink(privateSecretFile) } }
        if url != nil, let secret = options.secret {
            let path = options.workDirectory + "/destination-node-token"
            try Self.writePrivateFile(secret, to: path)
            privateSecretFile = path
            secretFile = path
        }
        let state = options.workDirectory + "/daemon-state"
        if url == nil {
            try FileTree.remove(state)
            let started = try startDaemon(state: state)
            daemon = started.process
            url = started.url
            secretFile = state + "/node-token"
        }
        defer {
            if let daemon {
                daemon.terminate()
                _ = daemon.wait()
            }
        }
        guard let url, let secretFile else { throw Arguments.usage("--url needs --secret-file (the destination's node token)") }
        // Each corpus is generated (and flushed) just before its own runs, so no run shares the
        // disk with another corpus being written back. Many-file corpora first: creating files
        // right after a big tree was deleted is slow on ext4 without a journal (its "recently
        // deleted" inode scan), and received volumes are deleted per corpus.
        var volumes: [(name: String, path: () throws -> String)] = []
        if let volume = options.volume {
            volumes = [("volume", { volume })]
        } else {
            let ordered = BenchCorpus.Kind.allCases.reversed().filter { options.corpora.contains($0) }
            for kind in ordered { volumes.append((kind.rawValue, { try self.corpus(kind) })) }
        }
        for (name, makePath) in volumes {
            let path = try makePath()
            let totals = try VolumeWalker(root: path).totals()
            report.volumeBytes[name] = totals.bytes
            report.volumeFiles[name] = totals.files
            log("bench: \(name): \(totals.files) files, \(ByteCount.format(totals.bytes))")
            for mode in options.modes {
                var series = Series(corpus: name, mode: mode.rawValue, runs: [])
                for index in 0..<(options.runs + (options.warmup ? 1 : 0)) {
                    let run = try push(volume: path, url: url, secretFile: secretFile, mode: mode, daemon: daemon, state: state)
                    let label = options.warmup && index == 0 ? "warm-up" : "run \(index + (options.warmup ? 0 : 1))"
                    log("bench: \(name) \(mode.rawValue) \(label): \(ByteCount.fixed(run.mbPerSecond, 1)) MB/s, "
                        + "\(run.compression), sender \(ByteCount.fixed(run.senderRSSMiB, 1)) MiB"
                        + (run.daemonRSSMiB.map { ", daemon \(ByteCount.fixed($0, 1)) MiB" } ?? ""))
                    if !(options.warmup && index == 0) { series.runs.append(run) }
                }
                report.series.append(series)
            }
            // Baselines before the received volumes are deleted: right after a big deletion, ext4
            // creates files far more slowly for a minute, which would skew the write-floor baseline.
            if options.baselines { report.baselines += baselines(corpus: name, volume: path, bytes: totals.bytes) }
            if daemon != nil {
                for server in pushedServers { try? FileTree.remove("\(state)/volumes/\(server)") }
                pushedServers.removeAll()
            }
        }
        return report
    }

    /// Writes `bytes` to a new file only its owner can read (a stale one, or a link planted
    /// there, is removed first, never followed).
    static func writePrivateFile(_ bytes: [UInt8], to path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw TransferError.system("unlink", path: path, stage: .cli) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TransferError.system("open", path: path, stage: .cli) }
        defer { close(fd) }
        try bytes.withUnsafeBytes { try FileIO.writeAll(fd, $0, path: path) }
    }

    /// The corpus directory, generated on first use (a marker records what it holds).
    func corpus(_ kind: BenchCorpus.Kind) throws -> String {
        let path = "\(options.workDirectory)/\(kind.rawValue)-\(options.scale)"
        let marker = path + ".ready"
        if FileTree.exists(marker) { return path }
        try FileTree.remove(path)
        log("bench: generating \(kind.rawValue) at scale \(options.scale) in \(path)")
        _ = try BenchCorpus(kind: kind, scale: options.scale).generate(into: path)
        try Data().write(to: URL(fileURLWithPath: marker))
        // Written back now, not during the runs that follow.
        FileTree.syncFileSystem(containing: path)
        return path
    }

    private func startDaemon(state: String) throws -> (process: ChildProcess, url: String) {
        try FileTree.makeDirectories(state)
        let process = try ChildProcess(
            path: binDirectory + "/transferd", arguments: ["--state", state, "--listen", "127.0.0.1:0", "--log-level", "warning"],
            outputPath: state + "/../transferd.log")
        for _ in 0..<100 {
            if let url = Self.listeningURL(in: process.output) { return (process, url) }
            usleep(50_000)
        }
        process.terminate()
        throw TransferError(.io, .cli, "transferd did not start: \(process.output)")
    }

    /// The `http://127.0.0.1:PORT` transferd prints once it listens.
    static func listeningURL(in output: String) -> String? {
        guard let start = output.firstRange(of: "http://127.0.0.1:") else { return nil }
        let digits = output[start.upperBound...].prefix { $0.isNumber }
        return digits.isEmpty ? nil : "http://127.0.0.1:" + digits
    }

    private func push(
        volume: String, url: String, secretFile: String, mode: CompressionNegotiator.Mode, daemon: ChildProcess?, state: String
    ) throws -> Run {
        let server = SecureRandom.uuid()
        pushedServers.append(server)
        if let daemon { ChildProcess.resetPeakRSS(of: daemon.pid) }
        let daemonCPU = daemon.map { ChildProcess.cpuSeconds(of: $0.pid) }
        let started = MonotonicClock.now()
        let child = try ChildProcess(
            path: binDirectory + "/transfer-send",
            arguments: ["push", "--volume", volume, "--url", url, "--secret-file", secretFile, "--server", server, "--json",
                        "--compression", mode.rawValue],
            outputPath: options.workDirectory + "/push.out")
        let exit = child.wait()
        let seconds = MonotonicClock.now() - started
        let output = child.output
        guard exit.status == 0, let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
            let json = try? JSONValue.parse(Array(line.utf8))
        else {
            let prefix = "transfer-send: error: "
            let reason = output.split(separator: "\n").last(where: { $0.hasPrefix(prefix) }).map { String($0.dropFirst(prefix.count)) }
                ?? "exit \(exit.status)"
            let code: TransferError.Code = exit.status == 69 ? .network : (exit.status == 77 ? .forbidden : .io)
            throw TransferError(code, .cli, "bench push failed: \(reason)")
        }
        var run = Run(
            seconds: seconds, volumeBytes: Int64(json["volume_bytes"]?.numberValue ?? 0),
            archiveBytes: Int64(json["archive_bytes"]?.numberValue ?? 0), files: Int(json["files"]?.numberValue ?? 0),
            compression: json["compression"]?.stringValue ?? mode.rawValue, senderCPU: exit.cpuSeconds,
            // The sender's own VmHWM: wait4's ru_maxrss of a posix_spawn'ed child also counts the
            // parent's peak from before the exec (the bench's, after generating a corpus).
            senderRSSMiB: Double(json["peak_rss_kib"]?.numberValue.map(Int.init) ?? exit.peakRSSKiB) / 1024)
        if let daemon, let before = daemonCPU {
            run.daemonCPU = ChildProcess.cpuSeconds(of: daemon.pid) - before
            run.daemonRSSMiB = Double(ChildProcess.peakRSSKiB(of: daemon.pid)) / 1024
        }
        return run
    }

    /// Shell pipelines over the same volume, timed once each (only the tools that are installed).
    private func baselines(corpus: String, volume: String, bytes: Int64) -> [Baseline] {
        let quoted = ShellWord.quoted(volume)
        let scratch = ShellWord.quoted(options.workDirectory + "/baseline-extract")
        let candidates: [(name: String, tool: String, command: String)] = [
            ("read + hash floor", "openssl", "tar -C \(quoted) -cf - . | openssl dgst -sha256"),
            ("tar | gzip -1 | sha256", "gzip", "tar -C \(quoted) -cf - . | gzip -1 | openssl dgst -sha256"),
            ("tar | igzip -1 | sha256", "igzip", "tar -C \(quoted) -cf - . | igzip -1 -c | openssl dgst -sha256"),
            ("tar | zstd -1 -T0 | sha256", "zstd", "tar -C \(quoted) -cf - . | zstd -q -1 -T0 -c | openssl dgst -sha256"),
            // Our times include the durable commit; this is what writing the same tree durably costs
            // here with nothing else to do (no network, no hashing, no compression).
            ("tar | tar -x + syncfs", "tar",
             "tar -C \(quoted) -cf - . | tar -C \(scratch) -xf - && sync -f \(scratch)"),
        ]
        var out: [Baseline] = []
        for (name, tool, command) in candidates {
            guard system("command -v \(tool) >/dev/null 2>&1") == 0 else { continue }
            // Untimed preparation: an empty scratch directory, nothing dirty left from before.
            _ = system("rm -rf \(scratch) && mkdir -p \(scratch) && sync -f \(scratch)")
            let started = MonotonicClock.now()
            let succeeded = system(command + " >/dev/null 2>&1") == 0
            let seconds = MonotonicClock.now() - started
            _ = system("rm -rf \(scratch)")
            guard succeeded else { continue }
            let rate = Double(bytes) / seconds / 1e6
            log("bench: baseline \(name) on \(corpus): \(ByteCount.fixed(rate, 1)) MB/s")
            out.append(Baseline(corpus: corpus, name: name, command: command, mbPerSecond: rate))
        }
        return out
    }
}
