import Testing
@testable import TransferEngine

/// Whatever the sizes of the pieces appended, the assembler hands on the same bytes in order, in
/// chunks of exactly its size but for a shorter last one, and never an empty chunk.
struct ChunkAssemblerTests {
    @Test(arguments: [1, 7, 4096, 65_536, 256 << 10, (256 << 10) + 1, 700_001], [0, 1, 256 << 10, 3_000_000])
    func sameBytesInChunksOfOneSize(maxPiece: Int, total: Int) throws {
        let chunkSize = 256 << 10
        var rng = SplitMix64(seed: UInt64(maxPiece * 131 + total))
        let data = rng.bytes(total)
        var assembler = ChunkAssembler(chunkSize: chunkSize)
        var chunks: [[UInt8]] = []
        var offset = 0
        // Pieces of a few bytes over 3 MB would take long: bound the count of calls.
        let limit = maxPiece < 1000 && total > 100_000 ? 997 : maxPiece
        data.withUnsafeBytes { all in
            while offset < total {
                let n = min(Int.random(in: 1...limit, using: &rng), total - offset)
                assembler.append(UnsafeRawBufferPointer(rebasing: all[offset..<offset + n])) { chunks.append($0) }
                offset += n
                #expect(assembler.pendingCount < chunkSize)
            }
        }
        assembler.flush { chunks.append($0) }
        assembler.flush { _ in Issue.record("a second flush sent a chunk") }
        #expect(Array(chunks.joined()) == data)
        #expect(chunks.allSatisfy { !$0.isEmpty })
        #expect(chunks.dropLast().allSatisfy { $0.count == chunkSize })
        #expect(chunks.count == (total + chunkSize - 1) / chunkSize)
    }

    @Test func aFailingSendStopsTheAppend() {
        struct Full: Error {}
        var assembler = ChunkAssembler(chunkSize: 4)
        var sent = 0
        let bytes: [UInt8] = Array(0..<10)
        #expect(throws: Full.self) {
            try bytes.withUnsafeBytes { raw in
                try assembler.append(raw) { _ in
                    sent += 1
                    if sent == 1 { throw Full() }
                }
            }
        }
        #expect(sent == 1, "no chunk after the one that failed")
    }
}
