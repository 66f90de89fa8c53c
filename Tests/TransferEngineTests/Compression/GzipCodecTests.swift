import Foundation
import Testing
@testable import TransferEngine

/// The ISA-L gzip encoder writes standard gzip (read by GNU gzip and by our decoder) for every
/// shape of input: empty, one byte, text, incompressible bytes, several segments, odd chunking.
struct GzipCodecTests {
    static func encode(_ input: [UInt8], pieces: Int, segmentSize: Int = 1 << 20) throws -> [UInt8] {
        let encoder = try GzipEncoder(level: 1, segmentSize: segmentSize)
        var out: [UInt8] = []
        var offset = 0
        while offset < input.count {
            let n = min(pieces, input.count - offset)
            try input[offset..<(offset + n)].withUnsafeBytes { try encoder.process($0) { out += $0 } }
            offset += n
        }
        try encoder.finish { out += $0 }
        return out
    }

    static func decode(_ gz: [UInt8]) throws -> [UInt8] {
        let decoder = try GzipDecoder()
        var out: [UInt8] = []
        try gz.withUnsafeBytes { try decoder.process($0) { out += $0 } }
        try decoder.finish { out += $0 }
        return out
    }

    static func gnuGunzip(_ gz: [UInt8]) throws -> [UInt8] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("x.gz")
        try Data(gz).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["gzip", "-dc", file.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "gzip -dc failed")
        return [UInt8](data)
    }

    static func sample(_ size: Int) -> [UInt8] {
        var rng = SplitMix64(state: 7)
        var bytes = [UInt8](repeating: 0, count: size)
        for i in 0..<size {
            // Alternate 64 KiB of text-like and random bytes: both stored and Huffman blocks appear.
            bytes[i] = (i / 65536) % 2 == 0 ? UInt8(97 + (i * 7 + i / 13) % 26) : UInt8(truncatingIfNeeded: rng.next())
        }
        return bytes
    }

    @Test(arguments: [0, 1, 1000, 300_000, 2_500_000])
    func roundTripsThroughGNUGzipAndOurDecoder(size: Int) throws {
        let input = Self.sample(size)
        let gz = try Self.encode(input, pieces: 100_003, segmentSize: 256 * 1024)
        #expect(Array(gz.prefix(2)) == [0x1f, 0x8b])
        #expect(try Self.gnuGunzip(gz) == input)
        #expect(try Self.decode(gz) == input)
    }

    @Test func chunkingDoesNotChangeTheStream() throws {
        let input = Self.sample(600_000)
        let whole = try Self.encode(input, pieces: input.count, segmentSize: 256 * 1024)
        #expect(try Self.encode(input, pieces: 7, segmentSize: 256 * 1024) == whole)
        #expect(try Self.encode(input, pieces: 65536, segmentSize: 256 * 1024) == whole)
    }

    @Test func incompressibleDataIsStoredNotExpanded() throws {
        var rng = SplitMix64(state: 11)
        var input = [UInt8](repeating: 0, count: 3 << 20)
        input.withUnsafeMutableBytes { rng.fill($0) }
        let gz = try Self.encode(input, pieces: 1 << 20)
        // Stored blocks cost 5 bytes per 64 KiB; Huffman-coded random data would grow by ~1 %.
        #expect(gz.count < input.count + input.count / 1000 + 64)
        #expect(try Self.decode(gz) == input)
    }

    @Test func corruptedCRCIsRefused() throws {
        var gz = try Self.encode(Self.sample(10_000), pieces: 10_000)
        gz[gz.count - 6] ^= 0xff
        #expect(throws: TransferError.self) { try Self.decode(gz) }
    }

    static func gnuGzip(_ input: [UInt8]) throws -> [UInt8] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("x")
        try Data(input).write(to: file)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["gzip", "-1", file.path]
        try process.run()
        process.waitUntilExit()
        return [UInt8](try Data(contentsOf: dir.appendingPathComponent("x.gz")))
    }

    /// Streams that are not ours (GNU gzip: a file name, no size subfield), alone or after our
    /// members, decode through the streaming path, whatever the chunking.
    @Test func foreignAndMixedStreamsDecode() throws {
        let a = Self.sample(700_000)
        let b = Self.sample(90_000)
        let foreign = try Self.gnuGzip(a)
        #expect(try Self.decode(foreign) == a)
        let mixed = try Self.encode(b, pieces: b.count, segmentSize: 32 * 1024) + foreign
        #expect(try Self.decode(mixed) == b + a)
        let decoder = try GzipDecoder()
        var out: [UInt8] = []
        for start in stride(from: 0, to: mixed.count, by: 997) {
            try mixed[start..<min(start + 997, mixed.count)].withUnsafeBytes { try decoder.process($0) { out += $0 } }
        }
        try decoder.finish { out += $0 }
        #expect(out == b + a)
    }

    /// A stream cut inside one of our members is an error at the end, never silently short.
    @Test(arguments: [1, 19, 20, 5000])
    func truncatedMemberIsRefused(cut: Int) throws {
        let gz = try Self.encode(Self.sample(300_000), pieces: 300_000, segmentSize: 64 * 1024)
        #expect(throws: TransferError.self) { try Self.decode(Array(gz.dropLast(cut))) }
    }
}
