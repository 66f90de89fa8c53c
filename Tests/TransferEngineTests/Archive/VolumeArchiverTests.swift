import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// The source half against the destination half, and against GNU tools. The sample volume is
/// `fixtures/make_sample_volume.py`: 21 files, 17 directories (two empty), 2 symlinks, unicode
/// names, a > 255-byte path, modes 0444/0600/0700/0755 and distinct mtimes.
struct VolumeArchiverTests {
    static let sampleFiles = 21
    static let sampleDirectories = 17
    static let sampleSymlinks = 2

    /// Sample volume → archive in memory → ArchiveReader + SafeExtractor → the same tree.
    @Test func roundTripPreservesSampleVolume() throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let (bytes, summary) = try ArchiveHarness.archive(source)
            #expect(Array(bytes.prefix(2)) == [0x1f, 0x8b], "gzip magic")
            #expect(summary.files == Self.sampleFiles)
            #expect(summary.directories == Self.sampleDirectories)
            #expect(summary.symlinks == Self.sampleSymlinks)
            #expect(summary.skipped == 0)
            #expect(summary.archiveBytes == Int64(bytes.count))
            #expect(summary.volumeBytes == (try Self.regularFileBytes(source)))

            let destination = try temp.makeDirectory("destination")
            let extractor = try ArchiveHarness.extract(bytes, into: destination)
            #expect(extractor.files == Self.sampleFiles)
            #expect(extractor.directories == Self.sampleDirectories)
            #expect(extractor.links == Self.sampleSymlinks)
            #expect(extractor.bytes == summary.volumeBytes)
            try ArchiveHarness.expectSameTree(source, destination)
        }
    }

    @Test func uncompressedRoundTrip() throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let (bytes, _) = try ArchiveHarness.archive(source, compression: .none)
            #expect(Array(bytes[257..<262]) == Array("ustar".utf8), "a plain tar stream")
            let destination = try temp.makeDirectory("destination")
            try ArchiveHarness.extract(bytes, into: destination)
            try ArchiveHarness.expectSameTree(source, destination)
        }
    }

    /// `gzip -t` and GNU `tar -tzvf` accept our archive and list every entry, without warnings.
    @Test func gnuToolsAcceptOurArchive() throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let path = temp.appending("volume.tar.gz")
            try ArchiveHarness.write(try ArchiveHarness.archive(source).bytes, to: path)

            let gzip = try ProcessResult.run("/usr/bin/env", ["gzip", "-t", path])
            #expect(gzip.status == 0, "gzip -t: \(gzip.stderr)")

            let tar = try ProcessResult.run("/usr/bin/env", ["tar", "-tzvf", path], environment: ["LC_ALL": "C.UTF-8"])
            #expect(tar.status == 0, "tar -tzvf: \(tar.stderr)")
            #expect(tar.stderr.isEmpty, "tar warned: \(tar.stderr)")
            let lines = tar.stdout.split(separator: "\n")
            // +1: the volume root's own "./" entry.
            #expect(lines.count == Self.sampleFiles + Self.sampleDirectories + Self.sampleSymlinks + 1)
            #expect(lines.first?.hasSuffix(" ./") == true)
            for expected in [
                "current-world -> world", "latest.log -> logs/latest.log", "😀 emoji.txt", "schematics/城堡 castle.schem",
                "plugins/Essentials/userdata/Jürgen Ölmann.yml", "plugins/Empty Dir/", "-r--r--r--", "drwx------",
                "very-long-file-name-" + String(repeating: "x", count: 140) + ".txt",
            ] {
                #expect(tar.stdout.contains(expected), "tar listing lacks \(expected)")
            }
        }
    }

    /// GNU tar extracts our archive into the same tree (what a Wings-less peer with plain tools sees).
    @Test func gnuTarExtractsOurArchiveIdentically() throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let path = temp.appending("volume.tar.gz")
            try ArchiveHarness.write(try ArchiveHarness.archive(source).bytes, to: path)
            let destination = try temp.makeDirectory("gnu")
            let tar = try ProcessResult.run(
                "/usr/bin/env", ["tar", "-xzpf", path, "-C", destination], environment: ["LC_ALL": "C.UTF-8"])
            #expect(tar.status == 0, "tar -x: \(tar.stderr)")
            try ArchiveHarness.expectSameTree(source, destination)
        }
    }

    @Test func emptyVolume() throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("empty")
            let (bytes, summary) = try ArchiveHarness.archive(source)
            #expect(summary.files == 0 && summary.directories == 0 && summary.symlinks == 0 && summary.volumeBytes == 0)
            #expect(try ArchiveHarness.entries(bytes).isEmpty)
            let destination = try temp.makeDirectory("destination")
            try ArchiveHarness.extract(bytes, into: destination)
            #expect(try FileManager.default.contentsOfDirectory(atPath: destination).isEmpty)
        }
    }

    /// FIFOs and sockets in a volume are skipped and counted, never archived.
    @Test func specialFilesSkipped() throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            try ArchiveHarness.write(Array("data\n".utf8), to: source + "/file.txt")
            #expect(mkfifo(source + "/pipe", 0o644) == 0)
            let (bytes, summary) = try ArchiveHarness.archive(source)
            #expect(summary.skipped == 1)
            #expect(summary.files == 1)
            #expect(try ArchiveHarness.entries(bytes).map { String(decoding: $0.path, as: UTF8.self) } == ["file.txt"])
        }
    }

    /// Progress reports grow to the volume's byte count.
    @Test func progressReachesVolumeBytes() throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            var rng = SplitMix64(seed: 9)
            try ArchiveHarness.write(rng.bytes(700_000), to: source + "/big.bin")
            try ArchiveHarness.write(rng.bytes(10), to: source + "/small.bin")
            let reported = Locked<[Int64]>([])
            var archiver = VolumeArchiver(root: source)
            archiver.readSize = 64 * 1024
            archiver.progress = { value in reported.set(reported.get() + [value]) }
            let summary = try archiver.run { _ in }
            let reports = reported.get()
            #expect(reports.last == 700_010)
            #expect(reports == reports.sorted())
            #expect(reports.count >= 700_000 / (64 * 1024))
            #expect(summary.volumeBytes == 700_010)
        }
    }

    /// A file that shrinks while it is read fails the archive with a clear error instead of being
    /// padded with zeros it never held: truncated after any block, to any length, plain or sparse.
    @Test(arguments: [(1, 0), (1, 100_000), (2, 131_071), (3, 131_072), (1, 1)])
    func aFileThatShrinksWhileReadFailsTheArchive(afterBlocks: Int, newSize: Int) throws {
        for sparse in [false, true] {
            try TempDirectory.with { temp in
                let source = try temp.makeDirectory("source")
                let victim = source + "/world.dat"
                var rng = SplitMix64(seed: 11)
                try ArchiveHarness.write(rng.bytes(300_000), to: source + "/a-first.bin")
                if sparse {
                    // Data at the start, a hole, data at the end: the sparse path reads regions.
                    let fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                    _ = rng.bytes(400_000).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
                    _ = rng.bytes(64 * 1024).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 8 << 20) }
                    close(fd)
                } else {
                    try ArchiveHarness.write(rng.bytes(500_000), to: victim)
                }
                let blocks = Locked(0)
                var archiver = VolumeArchiver(root: source)
                archiver.readSize = 64 * 1024
                let firstFileBlocks = (300_000 + 65_535) / 65_536
                archiver.progress = { _ in
                    blocks.set(blocks.get() + 1)
                    if blocks.get() == firstFileBlocks + afterBlocks { _ = truncate(victim, off_t(newSize)) }
                }
                #expect {
                    _ = try archiver.run { _ in }
                } throws: { error in
                    guard let error = error as? TransferError else { return false }
                    return error.code == .io && error.message.contains("world.dat shrank from") && error.message.contains("stop it")
                }
            }
        }
    }

    /// A file that grows while it is read is archived at the size it had when opened.
    @Test func aFileThatGrowsWhileReadKeepsItsOpeningSize() throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            var rng = SplitMix64(seed: 12)
            let original = rng.bytes(200_000)
            try ArchiveHarness.write(original, to: source + "/latest.log")
            var archiver = VolumeArchiver(root: source)
            archiver.readSize = 64 * 1024
            let grown = Locked(false)
            archiver.progress = { _ in
                guard !grown.get() else { return }
                grown.set(true)
                let fd = open(source + "/latest.log", O_WRONLY | O_APPEND)
                _ = [UInt8](repeating: 0x41, count: 100_000).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            var bytes: [UInt8] = []
            _ = try archiver.run { bytes += $0 }
            let destination = try temp.makeDirectory("destination")
            _ = try ArchiveHarness.extract(bytes, into: destination)
            #expect(try Data(contentsOf: URL(fileURLWithPath: destination + "/latest.log")) == Data(original))
        }
    }

    /// Linked files go once plus tar hardlinks when asked, while there is room to remember them;
    /// beyond `hardlinkMemory`, and when not asked, every name is a full copy.
    @Test(arguments: [(true, 10, [3]), (true, 1, [1, 2]), (false, 10, [0])])
    func hardlinksWithinTheirMemory(preserve: Bool, memory: Int, expectedLinks: [Int]) throws {
        try TempDirectory.with { temp in
            let source = try temp.makeDirectory("source")
            var rng = SplitMix64(seed: 13)
            try ArchiveHarness.write(rng.bytes(5_000), to: source + "/a")
            try ArchiveHarness.write(rng.bytes(7_000), to: source + "/b")
            #expect(link(source + "/a", source + "/a2") == 0 && link(source + "/a", source + "/a3") == 0)
            #expect(link(source + "/b", source + "/b2") == 0)
            var archiver = VolumeArchiver(root: source)
            archiver.preservesHardlinks = preserve
            archiver.hardlinkMemory = memory
            var bytes: [UInt8] = []
            let summary = try archiver.run { bytes += $0 }
            let links = try ArchiveHarness.entries(bytes).filter { $0.kind == .hardlink }
            #expect(summary.files == 5 && summary.hardlinks == links.count && expectedLinks.contains(links.count))
            // Data goes once per file sent as a copy: 29,000 bytes less each link's file.
            let linkedBytes = links.reduce(0) { $0 + ($1.path.first == UInt8(ascii: "a") ? 5_000 : 7_000) }
            #expect(summary.volumeBytes == Int64(29_000 - linkedBytes))
            let destination = try temp.makeDirectory("destination")
            let extractor = try ArchiveHarness.extract(bytes, into: destination)
            #expect(extractor.files == 5)
            try ArchiveHarness.expectSameTree(source, destination)
        }
    }

    /// Sum of regular file sizes below `root` (counted independently of `VolumeWalker`).
    static func regularFileBytes(_ root: String) throws -> Int64 {
        var total: Int64 = 0
        for relative in try TempDirectory.listing(of: root) {
            if let st = ArchiveHarness.status(root + "/" + relative), st.st_mode & S_IFMT == S_IFREG {
                total += Int64(st.st_size)
            }
        }
        return total
    }
}
