#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Frames parts of a `multipart/form-data` body (RFC 7578) whose lengths are not known in
/// advance: the caller streams each part's bytes between the framing this returns.
///
/// ```
///  partHeader(archive) · archive bytes … · partHeader(checksum) · hex · closing()
/// ```
/// The boundary is random and long, so it cannot occur in compressed data except by a 2^-192 chance.
public struct MultipartEncoder: Sendable {
    public let boundary: String
    private var partsStarted = 0
    private var closed = false

    public init(boundary: String = MultipartEncoder.randomBoundary()) {
        self.boundary = boundary
    }

    /// `multipart/form-data; boundary=…` for the request header.
    public var contentType: String { "multipart/form-data; boundary=\(boundary)" }

    public static func randomBoundary() -> String {
        "----TransferEngine" + Hex.encode(SecureRandom.bytes(24))
    }

    /// The delimiter and headers that open a part. Bytes of the part follow directly.
    public mutating func partHeader(name: String, filename: String? = nil, contentType: String? = nil) -> [UInt8] {
        precondition(!closed, "part after closing boundary")
        var text = (partsStarted == 0 ? "" : "\r\n") + "--\(boundary)\r\n"
        text += "Content-Disposition: form-data; name=\"\(Self.escape(name))\""
        if let filename { text += "; filename=\"\(Self.escape(filename))\"" }
        text += "\r\n"
        if let contentType { text += "Content-Type: \(contentType)\r\n" }
        text += "\r\n"
        partsStarted += 1
        return Array(text.utf8)
    }

    /// The closing delimiter; nothing may follow.
    public mutating func closing() -> [UInt8] {
        precondition(!closed, "closing twice")
        closed = true
        return Array(((partsStarted == 0 ? "" : "\r\n") + "--\(boundary)--\r\n").utf8)
    }

    /// Percent-escapes `"`, CR and LF in names, as browsers do (WHATWG multipart/form-data encoding).
    static func escape(_ value: String) -> String {
        // By bytes, not Characters: "\r\n" is one Character in Swift and would slip past a
        // Character-level replacement of "\r" (a header injection).
        var out: [UInt8] = []
        for byte in value.utf8 {
            switch byte {
            case 0x22: out += Array("%22".utf8)
            case 0x0d: out += Array("%0D".utf8)
            case 0x0a: out += Array("%0A".utf8)
            default: out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
