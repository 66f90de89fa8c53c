/// Keeps credentials written into URLs (`https://user:password@host/`) out of what the programs
/// print: output lines, error lines, logs and progress text.
///
/// ```
///  "pushed … to https://admin:hunter2@node:8080/api/transfers"
///      ─▶ "pushed … to https://***@node:8080/api/transfers"
/// ```
/// Standard output (`print`), standard error (`StandardError.write`) and `Log` pass everything
/// through `redactingURLCredentials`, so a URL reaches no terminal or log with its userinfo,
/// wherever the text was built (our messages, libcurl's, a node's answer).
public enum Redaction {
    /// What the userinfo of a URL is replaced with.
    public static let placeholder = "***"

    /// `text` with the userinfo of every `scheme://userinfo@host` in it replaced by `***`.
    ///
    /// The authority is taken to run to the first `/`, blank, control character, quote or angle
    /// bracket, and the userinfo to its last `@`: a password with an unescaped `@`, `?` or `#`
    /// (which is not valid, but typed) is still hidden whole.
    public static func redactingURLCredentials(_ text: String) -> String {
        guard text.contains("@"), text.contains("://") else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            guard isSchemeEnd(bytes, index) else {
                out.append(bytes[index])
                index += 1
                continue
            }
            out += [0x3a, 0x2f, 0x2f]  // "://"
            index += 3
            var end = index
            while end < bytes.count, !endsAuthority(bytes[end]) { end += 1 }
            if let at = bytes[index..<end].lastIndex(of: 0x40) {  // "@"
                out += Array(placeholder.utf8)
                index = at
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `url` without its userinfo (`https://user:pw@host/x` → `https://host/x`): for a value that
    /// names the node but travels elsewhere (a token's `aud` claim).
    public static func removingCredentials(_ url: String) -> String {
        guard let userinfo = userinfo(of: url), let schemeEnd = url.firstRange(of: "://") else { return url }
        let start = schemeEnd.upperBound
        let end = url.index(start, offsetBy: userinfo.count + 1)  // the userinfo and its "@"
        return String(url[..<start]) + String(url[end...])
    }

    /// The userinfo of `url` (`user:pw` in `https://user:pw@host/`), or nil when it has none.
    public static func userinfo(of url: String) -> String? {
        guard let schemeEnd = url.firstRange(of: "://") else { return nil }
        let authority = url[schemeEnd.upperBound...].prefix { !endsAuthority($0.asciiValue ?? 0x41) }
        guard let at = authority.lastIndex(of: "@") else { return nil }
        return String(authority[..<at])
    }

    /// Whether `index` starts a "://" that follows a scheme's last letter or digit.
    private static func isSchemeEnd(_ bytes: [UInt8], _ index: Int) -> Bool {
        guard index > 0, index + 2 < bytes.count,
            bytes[index] == 0x3a, bytes[index + 1] == 0x2f, bytes[index + 2] == 0x2f
        else { return false }
        let before = bytes[index - 1]
        return (0x41...0x5a).contains(before) || (0x61...0x7a).contains(before) || (0x30...0x39).contains(before)
    }

    /// "/", blanks, control characters, quotes and angle brackets end an authority.
    private static func endsAuthority(_ byte: UInt8) -> Bool {
        byte <= 0x20 || byte == 0x7f || byte == 0x2f || byte == 0x22 || byte == 0x27 || byte == 0x3c || byte == 0x3e
            || byte == 0x60
    }
}

extension String {
    /// This text with URL credentials replaced by `***` (see `Redaction`).
    public var redactingURLCredentials: String { Redaction.redactingURLCredentials(self) }
}
