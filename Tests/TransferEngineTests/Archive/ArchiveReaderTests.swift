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

    /// What the reader yields — every header and every byte of data — is the same for every
    /// chunking of the archive stream (StageVerifier: whole, 1, 7, 64 KiB and random pieces).
    @Test func entryStreamSameForEveryChunking() throws {
        struct Item: Equatable {
            var path: [UInt8], kind: ArchiveReader.Entry.Kind, mode: UInt32, size: Int64, mtime: FileTime
            var linkTarget: [UInt8]?, dataSHA256: String
        }
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let bytes = try ArchiveHarness.archive(source).bytes
            let items = try StageVerifier.verify(bytes) { chunks in
                var index = 0
                let reader = try ArchiveReader(source: {
                    guard index < chunks.count else { return nil }
                    defer { index += 1 }
                    return chunks[index]
                })
                var items: [Item] = []
                while let entry = try reader.nextEntry() {
                    let hasher = SHA256Hasher()
                    var expectedOffset: Int64 = 0
                    try reader.readData { offset, block in
                        #expect(offset == expectedOffset, "no holes in a non-sparse archive")
                        hasher.update(block)
                        expectedOffset = offset + Int64(block.count)
                    }
                    items.append(Item(path: entry.path, kind: entry.kind, mode: entry.mode, size: entry.size,
                                      mtime: entry.mtime, linkTarget: entry.linkTarget, dataSHA256: hasher.finalizeHex()))
                }
                try reader.drain()
                return items
            }
            #expect(items.count == 41)  // 40 entries below the root, plus the root's own "./"
            let log = try #require(items.first { $0.path == Array("logs/latest.log".utf8) })
            #expect(log.dataSHA256 == SHA256Hasher.hex(of: try Fixtures.bytes(atPath: source + "/logs/latest.log")))
        }
    }

    /// Entry headers carry what the source file system had: kind, mode, size, mtime, link target.
    @Test func entryHeadersMatchSource() throws {
        try TempDirectory.with { temp in
            let source = temp.appending("source")
            try Fixtures.makeSampleVolume(at: source)
            let entries = try ArchiveHarness.entries(try ArchiveHarness.archive(source).bytes)
            // Directory names carry tar's trailing slash; key them without it.
            func key(_ entry: ArchiveReader.Entry) -> String {
                let path = String(decoding: entry.path, as: UTF8.self)
                return entry.kind == .directory && path.hasSuffix("/") ? String(path.dropLast()) : path
            }
            let byPath = Dictionary(uniqueKeysWithValues: entries.map { (key($0), $0) })
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
