#if canImport(Glibc)
import Glibc
#endif
private import COpenSSL

/// Streaming SHA-256 over OpenSSL's EVP interface (uses SHA-NI where the CPU has it).
///
/// ```
///  bytes ──update()──▶ [EVP_MD_CTX] ──finalize()──▶ 32-byte digest / lowercase hex
/// ```
/// Not thread-safe: one stage uses it at a time. It may be handed to another thread after a
/// synchronising hand-off (a `BoundedChunkBuffer` end-of-stream), hence `@unchecked Sendable`.
public final class SHA256Hasher: @unchecked Sendable {
    private let context: OpaquePointer
    private var finalized = false
    /// Bytes hashed so far.
    public private(set) var byteCount: Int64 = 0

    public init() {
        guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            // Only fails when the process is out of memory or OpenSSL is broken: not recoverable.
            fatalError("OpenSSL could not initialise SHA-256")
        }
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        precondition(!finalized, "update after finalize")
        guard bytes.count > 0 else { return }
        EVP_DigestUpdate(context, bytes.baseAddress, bytes.count)
        byteCount += Int64(bytes.count)
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The 32-byte digest. Call once.
    public func finalize() -> [UInt8] {
        precondition(!finalized, "finalize called twice")
        finalized = true
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &digest, &length)
        return digest
    }

    /// The digest as lowercase hex (what the `checksum` part carries). Call once.
    public func finalizeHex() -> String { Hex.encode(finalize()) }

    /// One-shot digest of a buffer, as lowercase hex.
    public static func hex(of bytes: [UInt8]) -> String {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }

    /// One-shot digest of a file's contents (read in 256 KiB blocks, a final symlink not
    /// followed), as lowercase hex; nil if it cannot be read.
    public static func hex(ofFile path: String) -> String? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let hasher = SHA256Hasher()
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { return hasher.finalizeHex() }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }
}

/// Lowercase hex encoding.
public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
