extension StringProtocol {
    /// Without leading and trailing spaces, tabs, CR and LF.
    func trimmingWhitespace() -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else { return "" }
        return String(self[first...last])
    }
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
