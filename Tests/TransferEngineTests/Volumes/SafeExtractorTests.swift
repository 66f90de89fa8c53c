import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// The hostile archives of `fixtures/hostile` (copied to `Fixtures/hostile`; see its README.md for
/// each attack). Each is extracted into `T/outer/staging` of a fresh temp dir `T`, so an escape by
/// `..` or `../..` lands inside `T` where the test can see it.
struct SafeExtractorTests {
    /// README.md: "REFUSED" — the whole extraction fails and nothing is written outside the volume.
    static let refused = [
        "absolute", "device-node", "dir-then-file-conflict", "dotdot-nested", "dotdot", "fifo",
        "gnu-longname-dotdot", "hardlink-dotdot", "hardlink-outside", "huge-name", "not-gzip", "pax-path-dotdot",
        "symlink-chain", "symlink-escape-write", "symlink-outside-target", "symlink-relative-escape", "truncated",
    ]

    /// Names the attacks try to create outside the volume (absolute ones land in /tmp).
    static let escapeNames = ["escaped.txt", "escaped-absolute.txt", "escaped-pax.txt"]

    @Test(arguments: refused)
    func hostileArchiveRefused(name: String) throws {
        let bytes = try Fixtures.bytes("hostile/\(name).tar.gz")
        let tmpBefore = Self.escapeNames.map { FileManager.default.fileExists(atPath: "/tmp/" + $0) }
        try TempDirectory.with { temp in
            let staging = try temp.makeDirectory("outer/staging")
            let error = #expect(throws: TransferError.self, "\(name).tar.gz must be refused") {
                try ArchiveHarness.extract(bytes, into: staging)
            }
            #expect(error?.code == .invalidInput, "\(name): \(error?.code.description ?? "-"): \(error?.message ?? "-")")
            // Nothing next to or above the staging directory.
            #expect(try temp.listing(excludingSubtree: "outer/staging") == ["outer", "outer/staging"])
        }
        for (escape, existed) in zip(Self.escapeNames, tmpBefore) where !existed {
            #expect(!FileManager.default.fileExists(atPath: "/tmp/" + escape), "\(name) wrote /tmp/\(escape)")
        }
    }

    /// The same refusal whatever the order in which bytes arrive (7-byte pulls).
    @Test(arguments: ["pax-path-dotdot", "gnu-longname-dotdot", "symlink-chain", "symlink-relative-escape"])
    func hostileArchiveRefusedInSmallPulls(name: String) throws {
        let bytes = try Fixtures.bytes("hostile/\(name).tar.gz")
        try TempDirectory.with { temp in
            let staging = try temp.makeDirectory("outer/staging")
            #expect(throws: TransferError.self) { try ArchiveHarness.extract(bytes, into: staging, pieceSize: 7) }
            #expect(try temp.listing(excludingSubtree: "outer/staging") == ["outer", "outer/staging"])
        }
    }

    /// README.md: "ALLOWED: extracted, but setuid/setgid stripped -> 0775, 0755, 0644".
    @Test func setuidAndSetgidBitsStripped() throws {
        let bytes = try Fixtures.bytes("hostile/setuid.tar.gz")
        try TempDirectory.with { temp in
            let staging = try temp.makeDirectory("outer/staging")
            try ArchiveHarness.extract(bytes, into: staging)
            let expected: [(String, mode_t, mode_t)] = [
                ("shared", S_IFDIR, 0o775), ("shared/suid-tool", S_IFREG, 0o755), ("sgid-file", S_IFREG, 0o644),
            ]
            for (path, type, mode) in expected {
                let st = try #require(ArchiveHarness.status(staging + "/" + path), "\(path) missing")
                #expect(st.st_mode & S_IFMT == type, "\(path) type")
                #expect(st.st_mode & 0o7777 == mode, "\(path): mode \(String(st.st_mode & 0o7777, radix: 8))")
                #expect(st.st_mtim.tv_sec == 1_704_067_200, "\(path) mtime")
            }
            #expect(try Fixtures.bytes(atPath: staging + "/shared/suid-tool") == Array("#!/bin/sh\nid\n".utf8))
            #expect(try Fixtures.bytes(atPath: staging + "/sgid-file") == Array("x\n".utf8))
            #expect(try temp.listing() == ["outer", "outer/staging", "outer/staging/sgid-file", "outer/staging/shared",
                                           "outer/staging/shared/suid-tool"])
        }
    }

    /// Symlinks that stay inside the volume are kept, even when they point through other links.
    @Test func insideSymlinksKept() throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            try temp.makeDirectory("source/world/region")
            try ArchiveHarness.write(Array("r".utf8), to: source + "/world/region/r.0.0.mca")
            #expect(symlink("world", source + "/current") == 0)
            #expect(symlink("../current/region", source + "/world/regions") == 0)  // via another link
            #expect(symlink("missing-yet", source + "/dangling") == 0)  // dangling, but inside
            let bytes = try ArchiveHarness.archive(source).bytes
            let destination = try temp.makeDirectory("destination")
            try ArchiveHarness.extract(bytes, into: destination)
            try ArchiveHarness.expectSameTree(source, destination)
        }
    }

    /// A lone symlink that leaves the volume only through another link (`b -> a/..` with `a -> .`,
    /// lexically inside, really `..`) is refused when the extraction finishes, whatever the order.
    @Test(arguments: [
        [("a", "."), ("b", "a/..")],
        [("b", "a/.."), ("c", "."), ("a", "c")],
        [("up", "../..")],
        [("d", "sub/../.."), ("sub/keep", "x")],
        [("deep/link", "../../etc/passwd")],
    ])
    func loneEscapingSymlinkRefused(links: [(String, String)]) throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            for (path, target) in links {
                if let slash = path.lastIndex(of: "/") { try temp.makeDirectory("source/" + path[..<slash]) }
                #expect(symlink(target, source + "/" + path) == 0)
            }
            let bytes = try ArchiveHarness.archive(source).bytes
            let staging = try temp.makeDirectory("outer/staging")
            let error = #expect(throws: TransferError.self) { try ArchiveHarness.extract(bytes, into: staging) }
            #expect(error?.code == .invalidInput)
            #expect(error?.message.contains("outside") == true, "\(error?.message ?? "-")")
        }
    }

    /// Links that lead nowhere (cycles, or chains the kernel gives up on after 40 hops) cannot be
    /// followed by anyone, so they are kept as they are, in every shape and order.
    @Test(arguments: [
        [("loop", "loop")],
        [("a", "b"), ("b", "a")],
        [("b", "a"), ("a", "./b")],
        [("x", "y"), ("y", "z"), ("z", "x")],
        [("d/a", "../e/b"), ("e/b", "../d/a")],
        [("into", "loop/file"), ("loop", "loop")],
        [("self-dir", "self-dir/sub/../..")],
        chain(length: 45, end: "data"),
    ])
    func symlinksLeadingNowhereKept(links: [(String, String)]) throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            try ArchiveHarness.write(Array("d".utf8), to: source + "/data")
            for (path, target) in links {
                if let slash = path.lastIndex(of: "/") { try temp.makeDirectory("source/" + path[..<slash]) }
                #expect(symlink(target, source + "/" + path) == 0)
            }
            let bytes = try ArchiveHarness.archive(source).bytes
            let destination = try temp.makeDirectory("destination")
            try ArchiveHarness.extract(bytes, into: destination)
            try ArchiveHarness.expectSameTree(source, destination)
        }
    }

    /// `l0 -> l1 -> … -> l<length-1> -> end`.
    static func chain(length: Int, end: String) -> [(String, String)] {
        (0..<length).map { ("l\($0)", $0 == length - 1 ? end : "l\($0 + 1)") }
    }

    /// A link that resolves outside is refused however many hops it takes and whatever cycles sit
    /// beside it: every link is resolved from its own place, so a long chain's escaping tail is
    /// caught on its own. Up to 40 hops the whole chain leads outside too.
    @Test(arguments: [
        chain(length: 36, end: "esc") + [("esc", "dot/.."), ("dot", ".")],
        chain(length: 60, end: "esc") + [("esc", "dot/.."), ("dot", ".")],
        [("loop", "loop"), ("a", "b"), ("b", "a"), ("esc", "dot/.."), ("dot", ".")],
        [("d/in", "../cyc/x"), ("cyc", "cyc"), ("d/up", "../dot/.."), ("dot", ".")],
    ])
    func escapingSymlinkRefusedBesideCyclesAndLongChains(links: [(String, String)]) throws {
        try loneEscapingSymlinkRefused(links: links)
    }

    /// Symlink targets are refused by text for what they are: empty (its own reason, not "absolute"),
    /// absolute, or longer than `maxPathBytes`; up to that length they are fine.
    @Test(arguments: [
        ("", "empty target"), ("/etc", "absolute path"), ("//", "absolute path"),
        (String(repeating: "./", count: 1920) + "x", "longer than 3840 bytes"),
        (String(repeating: "a/", count: 3000), "longer than 3840 bytes"),
        (String(repeating: "./", count: 1918) + "data", nil),
    ] as [(String, String?)])
    func symlinkTargetCheckedByText(target: String, refusal: String?) throws {
        try TempDirectory.with { temp in
            let staging = try temp.makeDirectory("staging")
            let extractor = try SafeExtractor(root: staging)
            let reader = try ArchiveReader(source: { nil })
            let entry = ArchiveReader.Entry(
                path: Array("s".utf8), kind: .symlink, mode: 0o777, size: 0, mtime: FileTime(seconds: 0),
                linkTarget: Array(target.utf8))
            guard let refusal else {
                try extractor.extract(entry, reader: reader)
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
                let n = readlink(staging + "/s", &buffer, buffer.count)
                #expect(n == target.utf8.count)
                #expect(String(decoding: buffer.prefix(max(n, 0)).map { UInt8(bitPattern: $0) }, as: UTF8.self) == target)
                return
            }
            let error = #expect(throws: TransferError.self) { try extractor.extract(entry, reader: reader) }
            #expect(error?.code == .invalidInput)
            #expect(error?.message.contains(refusal) == true, "\(error?.message ?? "-")")
        }
    }

    /// Files written with direct I/O (1 MiB and up) or through the page cache, and GNU tar's sparse
    /// entries (offsets that jump), all come out byte for byte as GNU tar archived them.
    @Test(arguments: [false, true])
    func gnuTarFilesOfEverySizeAndSparseOnesExtractExactly(sparse: Bool) throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            var rng = SplitMix64(seed: 21)
            for size in [0, 4095, 4097, (1 << 20) - 1, 1 << 20, (2 << 20) + 4096, (5 << 20) + 333] {
                try ArchiveHarness.write(rng.bytes(size), to: source + "/f\(size)")
            }
            // Holes: data at the start, at 3 MiB + 5 and at the end of an 8 MiB file.
            let holey = source + "/holey.img"
            let fd = open(holey, O_WRONLY | O_CREAT, 0o644)
            for (offset, count) in [(0, 5000), ((3 << 20) + 5, 70_000), ((8 << 20) - 100, 100)] {
                let data = rng.bytes(count)
                #expect(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(offset)) } == count)
            }
            close(fd)
            let archive = temp.appending("gnu.tar.gz")
            let flags = sparse ? ["--sparse", "-czf"] : ["-czf"]
            let tar = try ProcessResult.run("/usr/bin/env", ["tar", "--format=gnu"] + flags + [archive, "-C", source, "."])
            #expect(tar.status == 0, "\(tar.stderr)")
            let destination = try temp.makeDirectory("destination")
            try ArchiveHarness.extract(try Fixtures.bytes(atPath: archive), into: destination, pieceSize: 100_003)
            for name in try FileManager.default.contentsOfDirectory(atPath: source) {
                #expect(try Fixtures.bytes(atPath: destination + "/" + name) == Fixtures.bytes(atPath: source + "/" + name), "\(name)")
            }
        }
    }

    /// The root's mode comes from the archive's "./" entry when there is one; without one (tar of
    /// named files, as Wings and `tar -C vol file…` make) the root is 0755, never staging's 0700.
    @Test(arguments: [(["."], Glibc.mode_t(0o750)), (["a.txt", "sub"], Glibc.mode_t(0o755))])
    func rootModeFromTheArchiveOr0755(members: [String], expected: Glibc.mode_t) throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            try ArchiveHarness.write(Array("hello".utf8), to: source + "/a.txt")
            _ = try temp.makeDirectory("source/sub")
            chmod(source, 0o750)
            let archive = temp.appending("t.tar.gz")
            let tar = try ProcessResult.run("/usr/bin/env", ["tar", "-czf", archive, "-C", source] + members)
            #expect(tar.status == 0, "\(tar.stderr)")
            let destination = try temp.makeDirectory("destination")
            chmod(destination, 0o700)  // as VolumeStore makes staging directories
            try ArchiveHarness.extract(try Fixtures.bytes(atPath: archive), into: destination)
            var st = stat()
            #expect(stat(destination, &st) == 0)
            #expect(st.st_mode & 0o7777 == expected, "mode \(String(st.st_mode & 0o7777, radix: 8))")
            #expect(try Fixtures.bytes(atPath: destination + "/a.txt") == Array("hello".utf8))
        }
    }

    /// Whatever mode the "./" entry gives, the root keeps u+rwx (other bits as given, never setuid/setgid).
    @Test(arguments: [0, 0o055, 0o100, 0o500, 0o600, 0o644, 0o750, 0o1000, 0o6777] as [UInt32])
    func rootKeepsOwnerAccess(mode: UInt32) throws {
        try TempDirectory.with { temp in
            let staging = try temp.makeDirectory("staging")
            let extractor = try SafeExtractor(root: staging)
            let reader = try ArchiveReader(source: { nil })
            let root = ArchiveReader.Entry(
                path: Array("./".utf8), kind: .directory, mode: mode, size: 0, mtime: FileTime(seconds: 1_704_067_200),
                linkTarget: nil)
            try extractor.extract(root, reader: reader)
            try extractor.finish()
            var st = stat()
            #expect(stat(staging, &st) == 0)
            #expect(st.st_mode & 0o7777 == (Glibc.mode_t(mode) & 0o1777) | 0o700, "\(String(st.st_mode & 0o7777, radix: 8))")
            #expect(st.st_mtim.tv_sec == 1_704_067_200)
        }
    }

    @Test func missingRootRefused() throws {
        try TempDirectory.with { temp in
            #expect(throws: TransferError.self) { _ = try SafeExtractor(root: temp.appending("does-not-exist")) }
        }
    }

    @Test func nameChecks() throws {
        #expect(try SafeExtractor.components(of: Array("./a//b/./c".utf8), what: "entry") == [[0x61], [0x62], [0x63]])
        for bad in ["../x", "a/../../x", "/etc/passwd", "a/..", "a\u{0}b"] {
            #expect(throws: TransferError.self, "\(bad.debugDescription)") {
                _ = try SafeExtractor.components(of: Array(bad.utf8), what: "entry")
            }
        }
        // The path as written to disk may be up to maxPathBytes long, however it is spelled.
        let limit = SafeExtractor.maxPathBytes
        #expect(limit == 3840)
        for (path, fits) in [
            (String(repeating: "d/", count: limit / 2 - 1) + "ff", true),
            (String(repeating: "d/", count: limit / 2) + "f", false),
            (String(repeating: "./", count: 3000) + String(repeating: "x", count: 200), true),
            (String(repeating: String(repeating: "n", count: 254) + "/", count: 15) + String(repeating: "z", count: 15), true),
            (String(repeating: String(repeating: "n", count: 254) + "/", count: 15) + String(repeating: "z", count: 16), false),
            (String(repeating: String(repeating: "n", count: 255) + "/", count: 17), false),
        ] {
            let bytes = Array(path.utf8)
            if fits {
                #expect(try SafeExtractor.components(of: bytes, what: "entry").isEmpty == false)
            } else {
                let error = #expect(throws: TransferError.self) { _ = try SafeExtractor.components(of: bytes, what: "entry") }
                #expect(error?.code == .invalidInput)
                #expect(error?.message.contains("longer than 3840 bytes") == true, "\(error?.message ?? "-")")
                #expect((error?.message.utf8.count ?? 0) < 300)
            }
        }
        #expect(SafeExtractor.lexicallyInside(base: [], target: Array("a/../b".utf8)))
        #expect(SafeExtractor.lexicallyInside(base: [[0x64]], target: Array("../b".utf8)))
        #expect(!SafeExtractor.lexicallyInside(base: [[0x64]], target: Array("../../b".utf8)))
        #expect(!SafeExtractor.lexicallyInside(base: [], target: Array("..".utf8)))
        #expect(SafeExtractor.safeMode(0o6755) == 0o755)
        #expect(SafeExtractor.safeMode(0o1777) == 0o1777)
    }
}
