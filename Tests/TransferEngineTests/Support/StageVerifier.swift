import Testing
@testable import TransferEngine

/// Feeds the same input to a stage under many chunkings and expects the same output from each
/// (NIO's `ByteToMessageDecoderVerifier`, libarchive's `_blockread` twins).
///
/// The stage is a closure that consumes a whole chunk sequence — feed every chunk, then finish —
/// and returns a comparable result. Finishing inside the closure is what checks "no leftovers":
/// a stage that still holds bytes at the end must throw or return something different.
///
/// ```swift
/// let parts = try StageVerifier.verify(body) { chunks in try decodeAll(chunks) }
/// ```
enum StageVerifier {
    /// How an input is cut into chunks.
    enum Chunking: Sendable, CustomStringConvertible {
        /// One chunk holding everything.
        case whole
        /// Fixed-size pieces (the last may be shorter).
        case pieces(Int)
        /// Random piece sizes from a seeded generator (reproducible).
        case random(seed: UInt64)

        var description: String {
            switch self {
            case .whole: "whole"
            case .pieces(let n): "\(n)-byte pieces"
            case .random(let seed): "random pieces (seed \(seed))"
            }
        }
    }

    /// Whole, 1 byte at a time, 7-byte and 64 KiB pieces, and three random splits.
    static let standardChunkings: [Chunking] = [
        .whole, .pieces(1), .pieces(7), .pieces(64 * 1024), .random(seed: 1), .random(seed: 2), .random(seed: 0x5eed),
    ]

    /// Cuts `input` into chunks. Never yields an empty chunk, except one for an empty `.whole` input.
    static func split(_ input: [UInt8], by chunking: Chunking) -> [[UInt8]] {
        switch chunking {
        case .whole:
            return [input]
        case .pieces(let size):
            precondition(size > 0)
            return stride(from: 0, to: input.count, by: size).map { Array(input[$0..<min($0 + size, input.count)]) }
        case .random(let seed):
            var rng = SplitMix64(seed: seed)
            // Mostly small pieces (where boundary bugs live), some large ones.
            let largest = max(1, min(input.count, 96 * 1024))
            var chunks: [[UInt8]] = []
            var start = 0
            while start < input.count {
                let size = rng.next() % 4 == 0 ? Int(rng.next() % UInt64(largest)) + 1 : Int(rng.next() % 64) + 1
                let end = min(input.count, start + size)
                chunks.append(Array(input[start..<end]))
                start = end
            }
            return chunks
        }
    }

    /// Runs `stage` once per chunking and expects every output to equal the output for the whole
    /// input. Returns that reference output. Errors thrown by the stage are rethrown.
    @discardableResult
    static func verify<Output: Equatable>(
        _ input: [UInt8],
        chunkings: [Chunking] = standardChunkings,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ stage: ([[UInt8]]) throws -> Output
    ) throws -> Output {
        let reference = try stage(split(input, by: .whole))
        for chunking in chunkings {
            if case .whole = chunking { continue }
            let output = try stage(split(input, by: chunking))
            #expect(output == reference, "output differs when fed as \(chunking)", sourceLocation: sourceLocation)
        }
        return reference
    }

    /// Expects `stage` to throw for every chunking of `input`; returns the errors (one per chunking).
    @discardableResult
    static func verifyFails(
        _ input: [UInt8],
        chunkings: [Chunking] = standardChunkings,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ stage: ([[UInt8]]) throws -> Void
    ) -> [any Error] {
        var errors: [any Error] = []
        for chunking in chunkings {
            do {
                try stage(split(input, by: chunking))
                Issue.record("expected an error when fed as \(chunking), got none", sourceLocation: sourceLocation)
            } catch {
                errors.append(error)
            }
        }
        return errors
    }
}

