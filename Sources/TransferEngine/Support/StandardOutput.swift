#if canImport(Glibc)
import Glibc
#endif

/// Prints one line on standard output, with URL credentials redacted (`Redaction`).
///
/// Inside this module a call `print("…")` picks this function over `Swift.print(_:separator:terminator:)`
/// (a `String` parameter is a closer match than `Any...`), so every line the programs print goes
/// through it without each call site having to remember. It writes through `Swift.print`, so
/// buffering stays as it was.
func print(_ line: String) {
    Swift.print(line.redactingURLCredentials)
}
