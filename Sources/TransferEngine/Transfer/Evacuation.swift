#if canImport(Glibc)
import Glibc
#endif

/// Moves every server volume of a node's data directory to one destination, several at once,
/// unattended: what an operator runs to empty a node for maintenance or retirement.
///
/// ```
///  <data>/<uuid>/ … ─▶ plan (UUID-named directories, sizes; largest first; the rest skipped, with why)
///     ─▶ N workers, each: mint a transfer token ─▶ CompressionNegotiator ─▶ OutgoingTransfer ─▶ Outcome
/// ```
/// Each server is its own verified push: one failing does not stop the others, and the
/// destination commits each only after its checksum matched. The source volumes are never
/// touched; the panel (or the operator) removes them once the destination has them.
public final class Evacuation: @unchecked Sendable {
    public struct Options: Sendable {
        public var dataDirectory: String
        public var url: String
        /// The destination's node token: a transfer token is minted for each server.
        public var secret: [UInt8]
        /// Only these servers, in any case (nil: every volume in the data directory).
        public var servers: [String]?
        /// Pushes at once.
        public var parallel = 2
        public var mode: CompressionNegotiator.Mode = .auto
        public var insecureTLS = false
        public var caCertificate: String?

        public init(dataDirectory: String, url: String, secret: [UInt8]) {
            self.dataDirectory = dataDirectory
            self.url = url
            self.secret = secret
        }
    }

    /// One volume to move.
    public struct Volume: Sendable {
        /// The volume directory's name as it is spelt here: what the transfer token names and
        /// what the output shows.
        public var server: String
        public var path: String
        public var files: Int
        public var bytes: Int64
    }

    /// How one server's push ended.
    public struct Outcome: Sendable {
        public var volume: Volume
        public var result: OutgoingTransfer.Result?
        public var compression: StreamCompression?
        /// Nil on success.
        public var error: TransferError?
    }

    public let options: Options
    /// Called once per server as its push ends (from a worker thread, one call at a time).
    public var onFinished: (@Sendable (Outcome) -> Void)?
    /// Volume bytes sent so far over all servers (from worker threads, at most a few times a second each).
    public var onProgress: (@Sendable (Int64) -> Void)?

    private let lock = Condition()
    /// Serialises `onFinished`, so lines printed there never interleave.
    private let reporting = Condition()
    private var cancelled = false
    private var running: [String: OutgoingTransfer] = [:]
    private var bytesDone: [String: Int64] = [:]

    public init(options: Options) {
        self.options = options
    }

    /// An entry of the data directory that is not a server volume, and why.
    public struct Skipped: Sendable, Equatable {
        public var name: String
        public var reason: String
    }

    /// What is in the data directory: the volumes to move and what is left alone.
    public struct Plan: Sendable {
        /// Largest first.
        public var volumes: [Volume]
        /// Entries that are not server volumes, by name.
        public var skipped: [Skipped]
        /// The directory holds nothing at all (not even `.staging` or `lost+found`): what the
        /// mount point of a disk that is not mounted looks like.
        public var directoryIsEmpty: Bool

        public var bytes: Int64 { volumes.reduce(0) { $0 + $1.bytes } }
    }

    /// The volumes to move, largest first (so the longest pushes start early and the last ones
    /// to finish are short), and the entries left alone with why: names that are not server
    /// UUIDs (`.staging`, `lost+found`) and anything that is not a directory. A server asked for
    /// by name must have a volume here.
    ///
    /// Server UUIDs are compared without regard to case (`ABC…` and `abc…` are one server, as for
    /// every node): `servers` may spell them either way. Each volume keeps its directory's own
    /// name (`Volume.server`), which is also what its transfer token names: nodes compare UUIDs
    /// case-insensitively too (ours lowercases, Wings parses it as a UUID). Two directories naming
    /// the same server in different cases cannot both be its volume: that throws
    /// (`.invalidInput`) before anything is sent, as does a data directory that cannot be read.
    public static func plan(dataDirectory: String, only servers: [String]?) throws -> Plan {
        let fd = open(dataDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw TransferError.system("open", path: dataDirectory) }
        defer { close(fd) }
        let names = try FileTree.entries(ofDirectory: fd, display: dataDirectory)
            .map { String(decoding: $0.name, as: UTF8.self) }.sorted()
        // Canonical (lowercase) UUID -> the directories' own names (two only if spelt differently).
        var present: [String: [String]] = [:]
        var skipped: [Skipped] = []
        for name in names {
            var st = stat()
            // stat, not lstat: a symlink to a volume directory is a volume, as the push reads it.
            if stat("\(dataDirectory)/\(name)", &st) != 0 {
                skipped.append(Skipped(name: name, reason: "cannot be read: \(String(cString: strerror(errno)))"))
            } else if st.st_mode & S_IFMT != S_IFDIR {
                skipped.append(Skipped(name: name, reason: "not a directory"))
            } else if !VolumeStore.isValidServerID(name) {
                skipped.append(Skipped(name: name, reason: "not named by a server UUID"))
            } else {
                present[name.lowercased(), default: []].append(name)
            }
        }
        if let servers {
            let wanted = Set(servers.map { $0.lowercased() })
            let missing = wanted.filter { present[$0] == nil }.sorted()
            guard missing.isEmpty else {
                throw TransferError(.notFound, .cli, "no volume for server \(missing.joined(separator: ", ")) in \(dataDirectory)")
            }
            present = present.filter { wanted.contains($0.key) }
        }
        if let (server, names) = present.sorted(by: { $0.key < $1.key }).first(where: { $0.value.count > 1 }) {
            throw TransferError(
                .invalidInput, .cli,
                "\(dataDirectory) holds two volume directories for server \(server): "
                    + "\(names.joined(separator: " and ")) (a server UUID is the same in any case); "
                    + "keep the one that is its volume and move the other away")
        }
        var volumes: [Volume] = []
        for server in present.values.map({ $0[0] }) {
            let path = "\(dataDirectory)/\(server)"
            let totals = try VolumeWalker(root: path).totals()
            volumes.append(Volume(server: server, path: path, files: totals.files, bytes: totals.bytes))
        }
        return Plan(
            volumes: volumes.sorted { ($0.bytes, $1.server) > ($1.bytes, $0.server) }, skipped: skipped,
            directoryIsEmpty: names.isEmpty)
    }

    /// Pushes every volume of `plan`; returns the outcomes in the plan's order. After `cancel()`,
    /// running pushes are aborted (nothing committed) and the rest are not started.
    public func run(_ plan: [Volume]) -> [Outcome] {
        let work = WorkQueue(plan)
        let workers = (0..<max(1, min(options.parallel, plan.count))).map { index in
            StageThread(name: "evacuate-\(index)") { [self] in
                while let (index, volume) = work.take() {
                    let outcome = push(volume)
                    work.finish(index, outcome)
                    reporting.withLock { onFinished?(outcome) }
                }
            }
        }
        for worker in workers { worker.join() }
        return work.outcomes
    }

    /// The plan handed out one volume at a time, and the outcomes in the plan's order.
    private final class WorkQueue: @unchecked Sendable {
        private let lock = Condition()
        private let plan: [Volume]
        private var next = 0
        private var results: [Outcome?]

        init(_ plan: [Volume]) {
            self.plan = plan
            results = Array(repeating: nil, count: plan.count)
        }

        func take() -> (Int, Volume)? {
            lock.withLock {
                guard next < plan.count else { return nil }
                next += 1
                return (next - 1, plan[next - 1])
            }
        }

        func finish(_ index: Int, _ outcome: Outcome) { lock.withLock { results[index] = outcome } }

        var outcomes: [Outcome] { lock.withLock { results.compactMap { $0 } } }
    }

    /// Aborts running pushes and starts no more.
    public func cancel() {
        let transfers: [OutgoingTransfer] = lock.withLock {
            cancelled = true
            return Array(running.values)
        }
        for transfer in transfers { transfer.cancel() }
    }

    private func push(_ volume: Volume) -> Outcome {
        var outcome = Outcome(volume: volume)
        let token = TokenMinter(secret: options.secret, audience: options.url)
            .mint(scope: .transfer, claims: ["sub": .string(volume.server)])
        var transferOptions = OutgoingTransfer.Options(volume: volume.path, url: options.url, token: token)
        transferOptions.server = volume.server
        transferOptions.insecureTLS = options.insecureTLS
        transferOptions.caCertificate = options.caCertificate
        do {
            let choice = try CompressionNegotiator.choose(
                mode: options.mode, url: options.url, token: token, volume: volume.path, insecureTLS: options.insecureTLS,
                caCertificate: options.caCertificate, cancelled: { [self] in lock.withLock { cancelled } })
            transferOptions.apply(choice)
            outcome.compression = choice.compression
            let transfer = OutgoingTransfer(options: transferOptions)
            transfer.onProgress = { [self] progress in
                let total = lock.withLock {
                    bytesDone[volume.server] = progress.volumeBytes
                    return bytesDone.values.reduce(0, +)
                }
                onProgress?(total)
            }
            let admitted = lock.withLock {
                if !cancelled { running[volume.server] = transfer }
                return !cancelled
            }
            guard admitted else { throw TransferError(.cancelled, .transfer, "cancelled before it started") }
            defer { _ = lock.withLock { running.removeValue(forKey: volume.server) } }
            outcome.result = try transfer.run()
            lock.withLock { bytesDone[volume.server] = volume.bytes }
        } catch let error as TransferError {
            outcome.error = error
        } catch {
            outcome.error = TransferError(.internal, .transfer, "\(error)")
        }
        return outcome
    }
}

extension Evacuation.Outcome {
    init(volume: Evacuation.Volume) {
        self.init(volume: volume, result: nil, compression: nil, error: nil)
    }
}
