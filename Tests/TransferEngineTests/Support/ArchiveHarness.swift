import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// Archive ↔ directory helpers for the Archive and Volumes tests (all in memory, no network).
enum ArchiveHarness {
    /// Archives the volume at `root` into memory.
    static func archive(_ root: String, compression: StreamCompression = .gzip) throws
        -> (bytes: [UInt8], summary: VolumeArchiver.Summary)
    {
        var bytes: [UInt8] = []
        let summary = try VolumeArchiver(root: root, compression: compression).run { bytes.append(contentsOf: $0) }
        return (bytes, summary)
    }

    /// A pull source over `bytes` handing out `pieceSize`-byte chunks (all at once when nil).
    static func source(_ bytes: [UInt8], pieceSize: Int? = nil) -> () throws -> [UInt8]? {
        var offset = 0
        let size = pieceSize ?? max(1, bytes.count)
        return {
            guard offset < bytes.count else { return nil }
            let end = min(bytes.count, offset + size)
            defer { offset = end }
            return Array(bytes[offset..<end])
        }
    }

    /// Reads `bytes` with `ArchiveReader` and extracts with `SafeExtractor` into `root` (which must
    /// exist), then drains the source, as the destination pipeline does. Returns the extractor.
    @discardableResult
    static func extract(_ bytes: [UInt8], into root: String, pieceSize: Int? = nil) throws -> SafeExtractor {
        try extract(source: source(bytes, pieceSize: pieceSize), into: root)
    }

    @discardableResult
    static func extract(source: @escaping () throws -> [UInt8]?, into root: String) throws -> SafeExtractor {
        let reader = try ArchiveReader(source: source)
        let extractor = try SafeExtractor(root: root)
        try extractor.extractAll(from: reader)
        try reader.drain()
        return extractor
    }

    /// Every entry header of an archive, in order.
    /// The archive's entries below the root. The volume root's own entry ("./", which our
    /// archiver writes first, as GNU tar does) is left out; `rootEntry` returns it.
    static func entries(_ bytes: [UInt8]) throws -> [ArchiveReader.Entry] {
        try allEntries(bytes).filter { $0.path != Array("./".utf8) }
    }

    static func allEntries(_ bytes: [UInt8]) throws -> [ArchiveReader.Entry] {
        let reader = try ArchiveReader(source: source(bytes))
        var out: [ArchiveReader.Entry] = []
        while let entry = try reader.nextEntry() { out.append(entry) }
        return out
    }

    /// Writes `bytes` to `path`.
    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    /// `lstat` of `path`, or nil when it does not exist.
    static func status(_ path: String) -> stat? {
        var st = stat()
        return lstat(path, &st) == 0 ? st : nil
    }

    /// Expects `treecmp.py a b` to report equal trees.
    static func expectSameTree(_ a: String, _ b: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let result = try Fixtures.compareTrees(a, b)
        #expect(result.status == 0, "trees differ:\n\(result.stdout)\(result.stderr)", sourceLocation: sourceLocation)
    }
}
