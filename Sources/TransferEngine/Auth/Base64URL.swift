#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingByte("+", with: "-")
            .replacingByte("/", with: "_")
            .replacingByte("=", with: "")
    }

    /// Decodes unpadded (or padded) base64url; nil for anything else, including standard base64's `+`/`/`.
    static func decode(_ text: Substring) -> [UInt8]? {
        guard text.utf8.allSatisfy({ b in
            (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x2d || b == 0x5f
                || b == 0x3d
        }) else { return nil }
        var s = String(text).replacingByte("-", with: "+").replacingByte("_", with: "/")
        s = s.replacingByte("=", with: "")
        if s.count % 4 == 1 { return nil }
        s += String(repeating: "=", count: (4 - s.count % 4) % 4)
        return Data(base64Encoded: s).map { [UInt8]($0) }
    }
}
