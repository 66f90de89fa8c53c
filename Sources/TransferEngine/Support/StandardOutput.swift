#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Prints one line on standard output, with URL credentials redacted (`Redaction`).
///
/// Inside this module a call `print("…")` picks this function over `Swift.print(_:separator:terminator:)`
/// (a `String` parameter is a closer match than `Any...`), so every line the programs print goes
/// through it without each call site having to remember. It writes through `Swift.print`, so
/// buffering, and `StandardOutput.flushError()` at the end, stay as they were.
func print(_ line: String) {
    Swift.print(line.redactingURLCredentials)
}

/// Prints a JSON value as one line (the `--json` outputs), through `print(_:)` above.
func print(_ value: JSONValue) {
    print(String(decoding: value.serialized(), as: UTF8.self))
}

/// Standard output as a command's result: whether what was printed was written.
public enum StandardOutput {
    /// Flushes standard output; nil when everything printed was written, otherwise why not
    /// (`/dev/full`: "No space left on device"; a closed descriptor; a pipe whose reader left).
    ///
    /// A command whose output was lost has failed even if its work succeeded: a script reading
    /// that output must learn it from the exit status (the CLIs exit 74).
    public static func flushError() -> String? {
        let code = tx_flush_stdout()
        if code == 0 { return nil }
        return code > 0 ? String(cString: strerror(code)) : "an earlier write failed"
    }
}
