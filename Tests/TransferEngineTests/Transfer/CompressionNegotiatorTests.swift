import Foundation
import Testing
@testable import TransferEngine

/// The zstd sample stops early only when the link is known to be faster than zstd can be.
struct CompressionNegotiatorTests {
    /// A 40 MiB volume: 4 files of 10 MiB, half random, half text.
    static func makeVolume(in temp: TempDirectory) throws -> String {
        let volume = try temp.makeDirectory("volume")
        var rng = SplitMix64(seed: 4)
        for index in 0..<4 {
            let data = index % 2 == 0 ? rng.bytes(10 << 20) : Array(String(repeating: "level=info msg=\"tick\" n=42\n", count: 380_000).utf8)
            try ArchiveHarness.write(data, to: volume + "/f\(index)")
        }
        return volume
    }

    @Test func sampleStopsEarlyOnAFastLink() throws {
        try TempDirectory.with { temp in
            let volume = try Self.makeVolume(in: temp)
            let link = LinkRateBox()
            link.set(1e9)  // no zstd reaches a petabyte per second
            let sample = CompressionNegotiator.zstdSample(volume: volume, link: link)
            #expect(sample.bytes >= 4 << 20)
            #expect(sample.bytes < 8 << 20, "sampled \(sample.bytes) bytes")
            #expect(sample.rate != nil && sample.ratio != nil)
        }
    }

    @Test(arguments: [nil, 0.001] as [Double?])
    func sampleRunsToItsLimitWhenTheLinkIsSlowOrUnknown(rate: Double?) throws {
        try TempDirectory.with { temp in
            let volume = try Self.makeVolume(in: temp)
            let link = LinkRateBox()
            if let rate { link.set(rate) }
            let sample = CompressionNegotiator.zstdSample(volume: volume, link: link)
            #expect(sample.bytes >= 32 << 20, "sampled \(sample.bytes) bytes")
            let ratio = try #require(sample.ratio)
            #expect(ratio > 0.3 && ratio < 0.8, "half random, half text: ratio \(ratio)")
        }
    }
}
