import Testing
@testable import TransferEngine

struct SHA256HasherTests {
    /// FIPS 180-2 / NIST CSRC example vectors.
    static let emptyDigest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    static let abcDigest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    static let twoBlockMessage = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"  // 448 bits
    static let twoBlockDigest = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    static let millionADigest = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

    @Test func emptyInput() {
        #expect(SHA256Hasher.hex(of: []) == Self.emptyDigest)
        let hasher = SHA256Hasher()
        #expect(hasher.finalizeHex() == Self.emptyDigest)
        #expect(hasher.byteCount == 0)
    }

    @Test func abc() {
        #expect(SHA256Hasher.hex(of: Array("abc".utf8)) == Self.abcDigest)
    }

    @Test func fourHundredFortyEightBitMessage() {
        let message = Array(Self.twoBlockMessage.utf8)
        #expect(message.count * 8 == 448)
        #expect(SHA256Hasher.hex(of: message) == Self.twoBlockDigest)
    }

    /// One million 'a' in uneven pieces (1, 7, 64, 1000, 4093, 65536 bytes, cycling) hash to the NIST value.
    @Test func oneMillionAInUnevenPieces() {
        let a = [UInt8](repeating: 0x61, count: 65536)
        let sizes = [1, 7, 64, 1000, 4093, 65536]
        let hasher = SHA256Hasher()
        var fed = 0
        var i = 0
        while fed < 1_000_000 {
            let n = min(sizes[i % sizes.count], 1_000_000 - fed)
            a.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            fed += n
            i += 1
        }
        #expect(hasher.byteCount == 1_000_000)
        #expect(hasher.finalizeHex() == Self.millionADigest)
    }

    /// Every chunking of the 448-bit message gives the same, correct digest.
    @Test func sameDigestForEveryChunking() throws {
        let digest = try StageVerifier.verify(Array(Self.twoBlockMessage.utf8)) { chunks in
            let hasher = SHA256Hasher()
            for chunk in chunks { hasher.update(chunk) }
            return hasher.finalizeHex()
        }
        #expect(digest == Self.twoBlockDigest)
    }

    @Test func emptyUpdatesChangeNothing() {
        let hasher = SHA256Hasher()
        hasher.update([])
        hasher.update(Array("abc".utf8))
        hasher.update([])
        #expect(hasher.byteCount == 3)
        #expect(hasher.finalize() == Self.bytes(fromHex: Self.abcDigest))
    }

    @Test func hexIsLowercase() {
        let digest = SHA256Hasher.hex(of: Array("abc".utf8))
        #expect(digest.count == 64)
        #expect(digest.allSatisfy { "0123456789abcdef".contains($0) })
        #expect(Hex.encode([0x00, 0x0f, 0xab, 0xcd, 0xef, 0xff, 0x10]) == "000fabcdefff10")
        #expect(Hex.encode([]) == "")
    }

    static func bytes(fromHex hex: String) -> [UInt8] {
        let digits = Array(hex.utf8)
        return stride(from: 0, to: digits.count, by: 2).map {
            UInt8(String(decoding: digits[$0..<$0 + 2], as: UTF8.self), radix: 16)!
        }
    }
}
