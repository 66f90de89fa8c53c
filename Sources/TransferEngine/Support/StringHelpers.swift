extension StringProtocol {
    /// Without leading and trailing spaces, tabs, CR and LF.
    func trimmingWhitespace() -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else { return "" }
        return String(self[first...last])
    }
}

extension StringProtocol {
    /// Whether this is one word of visible ASCII-or-UTF-8 bytes: no space, no control character,
    /// no DEL. What a token or URL must be before it goes into a request line or a header (a CR
    /// or LF there would add lines of its own).
    var isSingleHeaderWord: Bool { utf8.allSatisfy { $0 > 0x20 && $0 != 0x7f } }
}

extension String {
    /// Replaces every occurrence of the ASCII byte `target` by `replacement`, byte by byte.
    /// (Swift's Character-level `replacing` misses a character that forms one grapheme with its
    /// neighbour, e.g. "\r" in "\r\n" or "'" before a combining mark.)
    func replacingByte(_ target: Character, with replacement: String) -> String {
        let byte = target.asciiValue!
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        for b in utf8 {
            if b == byte { out += Array(replacement.utf8) } else { out.append(b) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension String {
    /// The text with its control characters (C0, DEL, and C1 such as CSI) written as `\n`, `\r`,
    /// `\t` or `\u{…}`, so that a value that came from outside (a path, a file name in an
    /// archive, a header) cannot split a log or error line, forge one, or drive the terminal.
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: Self.isControl) else { return self }
        var out = ""
        out.reserveCapacity(utf8.count + 8)
        for scalar in unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where Self.isControl(scalar): out += "\\u{\(String(scalar.value, radix: 16))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value)
    }
}
