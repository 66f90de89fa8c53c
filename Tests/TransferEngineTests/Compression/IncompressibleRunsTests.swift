import Foundation
import Testing
@testable import TransferEngine

/// The gzip encoder stores what deflate cannot shrink and deflates the rest: runs follow the data
/// at 4 KiB granularity, short random stretches stay with their neighbours, compressible binary
/// data is never stored, and the output is still a gzip stream every reader accepts.
struct IncompressibleRunsTests {
    static let unit = IncompressibleRuns.unitSize

    static func random(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(state: seed)
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { rng.fill($0) }
        return bytes
    }

    static func text(_ count: Int) -> [UInt8] {
        let words = Array("spawn world chunk region tick player config enabled ".utf8)
        return (0..<count).map { words[($0 * 7 + $0 / 5) % words.count] }
    }

    /// Bytes with one value half the time and uniform the rest: ~5 bits of entropy per byte,
    /// many distinct values, yet deflate shrinks them by a third.
    static func skewedBinary(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(state: seed)
        return (0..<count).map { _ in
            let r = rng.next()
            return r & 1 == 0 ? 0 : UInt8(truncatingIfNeeded: r >> 8)
        }
    }

    static func runs(_ data: [UInt8]) -> [(Range<Int>, Bool)] {
        var out: [(Range<Int>, Bool)] = []
        data.withUnsafeBytes { buffer in
            IncompressibleRuns.forEachRun(in: buffer) { out.append(($0, $1)) }
        }
        return out
    }

    @Test func runsFollowTheDataAndShortRandomStretchesAreDeflated() {
        let u = Self.unit
        let data = Self.text(4 * u) + Self.random(4 * u, seed: 1) + Self.text(u) + Self.random(u, seed: 2)
            + Self.text(u) + Self.random(2 * u, seed: 3) + Self.text(1000)
        let runs = Self.runs(data)
        let expected: [(Range<Int>, Bool)] = [
            (0..<(4 * u), false), ((4 * u)..<(8 * u), true),
            ((8 * u)..<(11 * u), false),  // text, one random unit (too short to store), text
            ((11 * u)..<(13 * u), true), ((13 * u)..<data.count, false),
        ]
        #expect(runs.map(\.0) == expected.map(\.0))
        #expect(runs.map(\.1) == expected.map(\.1))
    }

    /// A random tail shorter than a unit, and data that is random throughout, end where they should.
    @Test(arguments: [0, 1, 4095, 4096, 8192, 8193, 100_000])
    func runsCoverEverySegmentExactlyOnce(size: Int) {
        let runs = Self.runs(Self.random(size, seed: UInt64(size)))
        var next = 0
        for (range, _) in runs {
            #expect(range.lowerBound == next && !range.isEmpty)
            next = range.upperBound
        }
        #expect(next == size)
        // About 1 random unit in 150 samples fewer distinct values than the threshold and is left
        // to deflate (which stores it itself): nearly every full unit is stored.
        let stored = runs.filter(\.1).map(\.0.count).reduce(0, +)
        let fullUnits = size / Self.unit * Self.unit
        #expect(stored <= fullUnits && stored >= fullUnits - 3 * Self.unit)
        #expect(size >= 2 * Self.unit || stored == 0)
    }

    /// Little-endian integer arrays (NBT, databases, numeric dumps): the bytes that vary sit at
    /// fixed offsets modulo 4 or 8, so a sampler that only looked at one offset saw random bytes.
    static func structuredBinary(_ count: Int, seed: UInt64) -> [[UInt8]] {
        var rng = SplitMix64(state: seed)
        var uint64Small: [UInt8] = [], uint32Small: [UInt8] = [], everyEighth: [UInt8] = [], samples: [UInt8] = []
        for i in 0..<(count / 8) {
            let r = rng.next()
            uint64Small += withUnsafeBytes(of: (r & 0xff).littleEndian, Array.init)
            uint32Small += withUnsafeBytes(of: UInt32(r & 0xff).littleEndian, Array.init)
                + withUnsafeBytes(of: UInt32((r >> 8) & 0xff).littleEndian, Array.init)
            everyEighth += [UInt8(truncatingIfNeeded: r >> 16)] + [UInt8](repeating: 0, count: 7)
            for k in 0..<4 {  // a sine wave with noise, as 16-bit samples
                let value = Int16(10_000 * sin(Double(i * 4 + k) / 50)) &+ Int16(truncatingIfNeeded: (r >> (16 * UInt64(k))) & 0x3f)
                samples += withUnsafeBytes(of: value.littleEndian, Array.init)
            }
        }
        return [uint64Small, uint32Small, everyEighth, samples]
    }

    static func gzip(_ data: [UInt8]) throws -> (gz: [UInt8], stored: UInt64) {
        let encoder = try GzipEncoder(level: 1, segmentSize: 256 * 1024)
        var gz: [UInt8] = []
        try data.withUnsafeBytes { try encoder.process($0) { gz += $0 } }
        try encoder.finish { gz += $0 }
        return (gz, encoder.storedBytes)
    }

    @Test func compressibleBinaryAndTextAreNeverStored() throws {
        let inputs = [Self.skewedBinary(600_000, seed: 4), Self.text(600_000), [UInt8](repeating: 0, count: 600_000)]
            + Self.structuredBinary(600_000, seed: 6)
        for (index, data) in inputs.enumerated() {
            let (gz, stored) = try Self.gzip(data)
            #expect(stored == 0, "input \(index)")
            // Deflated, never grown as stored blocks would be; the noisy sine wave (last) shrinks least.
            #expect(gz.count < data.count * (index == inputs.count - 1 ? 39 : 30) / 40, "input \(index)")
            #expect(try GzipCodecTests.gnuGunzip(gz) == data)
        }
    }

    /// Interleaved random and text, as in region files and disk images: (nearly all of) the random
    /// half is stored at 5 bytes per 64 KiB, the text half deflated, and GNU gzip and our decoder read it.
    @Test(arguments: [8192, 65536])
    func interleavedDataStoresItsRandomHalf(piece: Int) throws {
        var data: [UInt8] = []
        for i in 0..<(3_000_000 / piece / 2 * 2) {
            data += i % 2 == 0 ? Self.random(piece, seed: UInt64(i)) : Self.text(piece)
        }
        let encoder = try GzipEncoder(level: 1, segmentSize: 512 * 1024)
        var gz: [UInt8] = []
        try data.withUnsafeBytes { try encoder.process($0) { gz += $0 } }
        try encoder.finish { gz += $0 }
        let randomBytes = data.count / 2
        #expect(encoder.storedBytes <= UInt64(randomBytes) && encoder.storedBytes >= UInt64(randomBytes) * 97 / 100)
        #expect(gz.count < randomBytes + randomBytes / 100 + data.count / 20)
        #expect(try GzipCodecTests.gnuGunzip(gz) == data)
        #expect(try GzipCodecTests.decode(gz) == data)
    }
}
