/// Text made safe to paste into a POSIX shell as one word.
enum ShellWord {
    /// `text` unchanged when it holds only characters no shell treats specially, else in single
    /// quotes (a quote inside becomes '\''). Works on bytes, so no character slips past.
    static func quoted(_ text: String) -> String {
        let plain = !text.isEmpty && text.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                || "_./:@%+=,-".utf8.contains(byte)
        }
        return plain ? text : "'" + text.replacingByte("'", with: "'\\''") + "'"
    }
}
