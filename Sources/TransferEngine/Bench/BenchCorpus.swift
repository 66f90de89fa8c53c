#if canImport(Glibc)
import Glibc
#endif

/// Deterministic benchmark volumes shaped like the standard ones (`../shared/bench/make-corpus`):
/// - `mixed`: a game server — configs and logs (text), jars (incompressible), region files
///   (half random, half zero-padded sectors), player data, empty files and dirs, a symlink;
/// - `large`: one big file of alternating random, sparse and text blocks;
/// - `tiny`: many files of 0–4 KiB in nested directories.
/// The same name, scale and seed always give the same bytes.
public struct BenchCorpus: Sendable {
    public enum Kind: String, Sendable, CaseIterable { case mixed, large, tiny }

    public let kind: Kind
    public let scale: Double
    public let seed: UInt64

    public init(kind: Kind, scale: Double, seed: UInt64 = 42) {
        self.kind = kind
        self.scale = scale
        self.seed = seed
    }

    /// What `generate` wrote.
    public struct Summary: Sendable {
        public var files = 0
        public var bytes: Int64 = 0
    }

    /// Writes the volume into `root` (created; must not exist).
    public func generate(into root: String) throws -> Summary {
        var writer = try CorpusWriter(root: root, seed: seed)
        switch kind {
        case .mixed: try mixed(&writer)
        case .large: try large(&writer)
        case .tiny: try tiny(&writer)
        }
        return writer.summary
    }

    private func scaled(_ bytes: Double, minimum: Int) -> Int { max(minimum, Int(bytes * scale)) }

    private func mixed(_ w: inout CorpusWriter) throws {
        let kib = 1024.0
        let mib = 1024.0 * 1024.0
        try w.text("server.properties", 1500)
        try w.text("eula.txt", 120)
        for name in ["bukkit.yml", "spigot.yml", "paper.yml", "commands.yml", "permissions.yml"] {
            try w.text(name, w.random.int(2048, 24576))
        }
        try w.file("start.sh", Array("#!/bin/sh\nexec java -Xmx2G -jar server.jar nogui\n".utf8), mode: 0o755)
        for name in ["banned-ips.json", "world/session.lock", "logs/.keep", "cache/.lock"] { try w.file(name, []) }
        try w.directory("plugins/Empty Plugin Dir")
        try w.directory("world/data/empty")
        try w.random("server.jar", scaled(40 * mib, minimum: 65536))
        for index in 0..<6 { try w.random("plugins/plugin-\(index).jar", scaled(Double(w.random.int(200 * 1024, 5 << 20)), minimum: 16384)) }
        for plugin in 0..<10 {
            for file in 0..<20 { try w.text("plugins/P\(plugin)/config-\(file).yml", w.random.int(300, 49152)) }
        }
        try w.text("logs/latest.log", scaled(24 * mib, minimum: 8192))
        for day in 1...16 { try w.text("logs/2024-01-\(day < 10 ? "0" : "")\(day)-1.log", scaled(Double(w.random.int(512 * 1024, 3 << 20)), minimum: 4096)) }
        for day in 20...27 { try w.random("logs/2023-12-\(day)-1.log.gz", scaled(Double(w.random.int(64 * 1024, 512 * 1024)), minimum: 2048)) }
        try w.symlink("latest.log", target: "logs/latest.log")
        for player in 0..<90 {
            try w.random("world/playerdata/player-\(player).dat", w.random.int(1024, 6144))
            try w.text("world/stats/player-\(player).json", w.random.int(1024, 4096))
        }
        try w.text("plugins/Essentials/userdata/Jürgen Ölmann.yml", 1500)
        try w.random("schematics/城堡 castle.schem", scaled(900 * kib, minimum: 4096))
        let regions = max(3, Int((200 * scale).rounded()))
        for index in 0..<regions {
            let dimension = index % 7 == 0 ? "world_nether/DIM-1/region" : (index % 7 == 1 ? "world_the_end/DIM1/region" : "world/region")
            try w.region("\(dimension)/r.\(index % 12 - 6).\(index / 12 - 3).mca", w.random.int(256, 2048) * 4096)
        }
    }

    private func large(_ w: inout CorpusWriter) throws {
        let total = max(65536, Int(2.0 * 1024 * 1024 * 1024 * scale) / 65536 * 65536)
        try w.blocks("world-backup.img", total)
    }

    private func tiny(_ w: inout CorpusWriter) throws {
        let files = max(10, Int((100_000 * scale).rounded()))
        let tops = max(1, Int((100 * scale).rounded()))
        for index in 0..<files {
            let top = w.random.int(0, tops - 1)
            var directory = "d\(top)/s\(w.random.int(0, 9))"
            if w.random.int(0, 9) == 0 { directory = "d\(top)" } else if w.random.int(0, 4) == 0 { directory += "/deep\(w.random.int(0, 2))" }
            let size = w.random.int(0, 4096)
            if w.random.int(0, 9) < 6 {
                try w.text("\(directory)/f\(index).txt", size)
            } else {
                try w.random("\(directory)/f\(index).dat", size)
            }
        }
    }
}

/// SplitMix64 (Vigna): fast, seedable, deterministic; good enough to make incompressible bytes.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(state: UInt64) { self.state = state }
    init(seed: UInt64) { state = seed }

    /// `count` pseudo-random bytes.
    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { fill($0) }
        return out
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in lower...upper.
    mutating func int(_ lower: Int, _ upper: Int) -> Int {
        guard upper > lower else { return lower }
        return lower + Int(next() % UInt64(upper - lower + 1))
    }
    mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var offset = 0
        while offset + 8 <= buffer.count {
            buffer.storeBytes(of: next(), toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < buffer.count {
            buffer[offset] = UInt8(truncatingIfNeeded: next())
            offset += 1
        }
    }
}

/// Writes corpus files, with fixed times, from a text pool and a random stream.
struct CorpusWriter {
    let root: String
    var random: SplitMix64
    var summary = BenchCorpus.Summary()
    private let textPool: [UInt8]
    private var chunk = [UInt8](repeating: 0, count: 1 << 20)

    init(root: String, seed: UInt64) throws {
        self.root = root
        random = SplitMix64(state: seed)
        guard mkdir(root, 0o755) == 0 else { throw TransferError.system("mkdir", path: root) }
        var pool: [UInt8] = []
        let words = ["player", "joined", "the", "game", "left", "saving", "chunks", "for", "level", "world", "done",
                     "Server", "thread", "INFO", "WARN", "tick", "took", "ms", "entity", "spawned", "at", "x", "y", "z",
                     "plugin", "enabled", "version", "config", "loaded", "true", "false", "permission", "group", "default"]
        var rng = SplitMix64(state: seed ^ 0x5eed)
        while pool.count < 4 << 20 {
            let hour = rng.int(0, 23)
            pool += Array("[\(hour < 10 ? "0" : "")\(hour):\(rng.int(10, 59)):\(rng.int(10, 59))] [Server thread/INFO]: ".utf8)
            for _ in 0..<rng.int(4, 14) { pool += Array(words[rng.int(0, words.count - 1)].utf8) + [0x20] }
            pool += Array(String(rng.int(0, 99999)).utf8) + [0x0a]
        }
        textPool = pool
    }

    private func path(_ relative: String) throws -> String {
        let full = root + "/" + relative
        if let slash = relative.lastIndex(of: "/") { try FileTree.makeDirectories(root + "/" + relative[..<slash]) }
        return full
    }

    mutating func directory(_ relative: String) throws { try FileTree.makeDirectories(root + "/" + relative) }

    mutating func file(_ relative: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        try write(relative, size: bytes.count, mode: mode) { buffer, offset in
            bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + buffer.count)])) }
        }
    }

    mutating func text(_ relative: String, _ size: Int) throws {
        let start = random.int(0, textPool.count - 1)
        let pool = textPool
        try write(relative, size: size, mode: 0o644) { buffer, offset in
            for i in 0..<buffer.count { buffer[i] = pool[(start + offset + i) % pool.count] }
        }
    }

    mutating func random(_ relative: String, _ size: Int) throws {
        var rng = SplitMix64(state: random.next())
        try write(relative, size: size, mode: 0o644) { buffer, _ in rng.fill(buffer) }
    }

    /// Region-like: 4 KiB sectors, each chunk either random (already compressed) or mostly zeros.
    mutating func region(_ relative: String, _ size: Int) throws {
        var rng = SplitMix64(state: random.next())
        try write(relative, size: size, mode: 0o644) { buffer, _ in
            var offset = 0
            while offset < buffer.count {
                let sector = UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<min(offset + 4096, buffer.count)])
                if rng.int(0, 1) == 0 {
                    rng.fill(sector)
                } else {
                    sector.initializeMemory(as: UInt8.self, repeating: 0)
                    rng.fill(UnsafeMutableRawBufferPointer(rebasing: sector[0..<min(200, sector.count)]))
                }
                offset += 4096
            }
        }
    }

    /// 64 KiB blocks cycling random / sparse / random / text.
    mutating func blocks(_ relative: String, _ size: Int) throws {
        var rng = SplitMix64(state: random.next())
        let pool = textPool
        var block = 0
        try write(relative, size: size, mode: 0o644) { buffer, _ in
            var offset = 0
            while offset < buffer.count {
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<min(offset + 65536, buffer.count)])
                switch block % 4 {
                case 1:
                    piece.initializeMemory(as: UInt8.self, repeating: 0)
                    for i in stride(from: 0, to: piece.count, by: 97) { piece[i] = UInt8(truncatingIfNeeded: rng.next()) }
                case 3:
                    let start = rng.int(0, pool.count - piece.count - 1)
                    pool.withUnsafeBytes { piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[start..<(start + piece.count)])) }
                default:
                    rng.fill(piece)
                }
                block += 1
                offset += 65536
            }
        }
    }

    mutating func symlink(_ relative: String, target: String) throws {
        let full = try path(relative)
        guard Glibc.symlink(target, full) == 0 else { throw TransferError.system("symlink", path: full) }
    }

    private mutating func write(
        _ relative: String, size: Int, mode: mode_t, fill: (UnsafeMutableRawBufferPointer, Int) -> Void
    ) throws {
        let full = try path(relative)
        let fd = open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw TransferError.system("open", path: full) }
        defer { close(fd) }
        var offset = 0
        try chunk.withUnsafeMutableBytes { buffer in
            while offset < size {
                let n = min(buffer.count, size - offset)
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
                fill(piece, offset)
                guard Glibc.write(fd, piece.baseAddress, n) == n else { throw TransferError.system("write", path: full) }
                offset += n
            }
        }
        fchmod(fd, mode)
        var times = [timespec(tv_sec: 1_704_067_200 + summary.files, tv_nsec: 0), timespec(tv_sec: 1_704_067_200 + summary.files, tv_nsec: 0)]
        futimens(fd, &times)
        summary.files += 1
        summary.bytes += Int64(size)
    }
}
