import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// Direct I/O writes must produce exactly the bytes given, whatever the file size relative to the
/// 4 KiB alignment and the 1 MiB buffer, however the data is split, and with holes (sparse entries).
struct DirectFileWriterTests {
    static let sizes = [0, 1, 4095, 4096, 4097, 65_536, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (3 << 20) + 12_345]

    @Test(arguments: sizes, [1 << 20, 7, 65_536 + 3])
    func writesExactBytes(size: Int, pieceSize: Int) throws {
        var rng = SplitMix64(seed: UInt64(size * 31 + pieceSize))
        let data = rng.bytes(size)
        try TempDirectory.with { temp in
            let path = temp.appending("file")
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            #expect(fd >= 0)
            defer { close(fd) }
            let writer = DirectFileWriter(capacity: 1 << 20)
            writer.begin(fd: fd, path: "file")
            // Pieces of 7 bytes for a 3 MiB file would take long: cap the count of calls.
            let piece = size > 100_000 && pieceSize < 1000 ? 4093 : pieceSize
            var offset = 0
            try data.withUnsafeBytes { all in
                while offset < size {
                    let n = min(piece, size - offset)
                    try writer.write(at: Int64(offset), UnsafeRawBufferPointer(rebasing: all[offset..<offset + n]))
                    offset += n
                }
            }
            try writer.finish()
            #expect(try Fixtures.bytes(atPath: path) == data)
            // Only the last partial block may go through the page cache (on a file system with O_DIRECT).
            #expect(writer.bufferedBytes == size % 4096 || !DirectFileWriter.isSupported(in: temp.path))
        }
    }

    /// Offsets that jump (holes) switch the rest of the file to ordinary writes; the hole reads as zeros.
    @Test func holesReadAsZeros() throws {
        var rng = SplitMix64(seed: 5)
        let first = rng.bytes(10_000)
        let second = rng.bytes(2 << 20)
        let holeAt = 10_000, secondAt = (3 << 20) + 17
        try TempDirectory.with { temp in
            let path = temp.appending("sparse")
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            defer { close(fd) }
            let writer = DirectFileWriter(capacity: 1 << 20)
            writer.begin(fd: fd, path: "sparse")
            try first.withUnsafeBytes { try writer.write(at: 0, $0) }
            try second.withUnsafeBytes { try writer.write(at: Int64(secondAt), $0) }
            #expect(!writer.isDirect)
            try writer.finish()
            var expected = first + [UInt8](repeating: 0, count: secondAt - holeAt)
            expected += second
            #expect(try Fixtures.bytes(atPath: path) == expected)
        }
    }

    /// One writer serves many files in turn; state from one never leaks into the next.
    @Test func reusedAcrossFiles() throws {
        try TempDirectory.with { temp in
            let writer = DirectFileWriter(capacity: 64 << 10)
            var rng = SplitMix64(seed: 8)
            for (index, size) in [(200 << 10) + 5, 3, 8192, (64 << 10)].enumerated() {
                let data = rng.bytes(size)
                let path = temp.appending("f\(index)")
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
                writer.begin(fd: fd, path: path)
                try data.withUnsafeBytes { try writer.write(at: 0, $0) }
                try writer.finish()
                close(fd)
                #expect(try Fixtures.bytes(atPath: path) == data, "file \(index)")
            }
        }
    }
}
