import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

struct ArchiveReaderTests {
    /// Archives made by GNU tar (its default GNU format with `././@LongLink`, and POSIX pax) of the
    /// sample volume extract to the same tree.
    @Test(arguments: ["gnu", "posix"])
    func readsGNUTarArchive(format: String) throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let path = temp.appending("gnu.tar.gz")
            let tar = try ProcessResult.run(
                "/usr/bin/env", ["tar", "--format=\(format)", "-czf", path, "-C", source, "."],
                environment: ["LC_ALL": "C.UTF-8"])
            try #require(tar.status == 0, "tar -c: \(tar.stderr)")
            let destination = try temp.makeDirectory("destination")
            try ArchiveHarness.extract(try Fixtures.bytes(atPath: path), into: destination)
            try ArchiveHarness.expectSameTree(source, destination)
        }
    }

    /// libarchive pulls: the archive arriving 1 or 7 bytes per pull gives the same tree.
    @Test(arguments: [1, 7])
    func smallPullsGiveSameTree(pieceSize: Int) throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let bytes = try ArchiveHarness.archive(source).bytes
            let destination = try temp.makeDirectory("destination")
            try ArchiveHarness.extract(bytes, into: destination, pieceSize: pieceSize)
            try ArchiveHarness.expectSameTree(source, destination)
        }
    }

    /// Entry headers carry what the source file system had: kind, mode, size, mtime, link target.
    @Test func entryHeadersMatchSource() throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let entries = try ArchiveHarness.entries(try ArchiveHarness.archive(source).bytes)
            let byPath = Dictionary(uniqueKeysWithValues: entries.map { (String(decoding: $0.path, as: UTF8.self), $0) })
            #expect(byPath.count == entries.count)
            #expect(entries.map { String(decoding: $0.path, as: UTF8.self) }.first == "banned-ips.json", "sorted walk order")

            let readOnly = try #require(byPath["read-only.txt"])
            #expect(readOnly.kind == .file)
            #expect(readOnly.mode == 0o444)
            #expect(readOnly.size == 14)
            let st = try #require(ArchiveHarness.status(source + "/read-only.txt"))
            #expect(readOnly.mtime.seconds == Int64(st.st_mtim.tv_sec))

            let link = try #require(byPath["current-world"])
            #expect(link.kind == .symlink)
            #expect(link.linkTarget == Array("world".utf8))
            #expect(link.size == 0)

            let secrets = try #require(byPath["secrets"])
            #expect(secrets.kind == .directory)
            #expect(secrets.mode == 0o700)
            #expect(byPath["plugins/Empty Dir"]?.kind == .directory)
            #expect(byPath["schematics/城堡 castle.schem"]?.size == 3000)
            #expect(byPath.keys.contains { $0.utf8.count > 255 }, "the > 255-byte path survives")
        }
    }

    @Test func randomBytesAreNotAnArchive() throws {
        var rng = SplitMix64(seed: 3)
        let reader = try ArchiveReader(source: ArchiveHarness.source(rng.bytes(4096)))
        let error = #expect(throws: TransferError.self) { _ = try reader.nextEntry() }
        #expect(error?.code == .invalidInput)
        #expect(error?.stage == .archive)
    }

    @Test func emptyStreamIsNotAnArchive() throws {
        let reader = try ArchiveReader(source: { nil })
        #expect(throws: TransferError.self) { _ = try reader.nextEntry() }
    }

    /// A failure of the source (say, the network) surfaces as that error, not as "damaged archive".
    @Test func sourceErrorIsRethrown() throws {
        struct Disconnected: Error {}
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let bytes = try ArchiveHarness.archive(source).bytes
            var offset = 0
            let failing: () throws -> [UInt8]? = {
                guard offset < bytes.count / 2 else { throw Disconnected() }
                defer { offset += 4096 }
                return Array(bytes[offset..<min(offset + 4096, bytes.count)])
            }
            let destination = try temp.makeDirectory("destination")
            #expect(throws: Disconnected.self) { try ArchiveHarness.extract(source: failing, into: destination) }
        }
    }

    /// A stream that stops early fails; it never looks like a complete, smaller volume.
    @Test func truncatedStreamFails() throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let bytes = try ArchiveHarness.archive(source).bytes
            for cut in [bytes.count / 3, bytes.count - 20] {
                let destination = try temp.makeDirectory("destination-\(cut)")
                let error = #expect(throws: TransferError.self) {
                    try ArchiveHarness.extract(Array(bytes[..<cut]), into: destination)
                }
                #expect(error?.code == .invalidInput, "cut at \(cut) of \(bytes.count): \(String(describing: error))")
            }
        }
    }
}
