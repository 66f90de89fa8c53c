import Testing
@testable import TransferEngine

/// Text from outside (paths, names in archives, headers) is written into logs and error lines
/// with its control characters escaped: one event stays one line, and no escape sequence reaches
/// the terminal. Command-line values may not be empty.
struct EscapingTests {
    @Test(arguments: [
        ("plain/path with spaces/ünïcödé 日本 😀", "plain/path with spaces/ünïcödé 日本 😀"),
        ("a\nb", "a\\nb"), ("a\r\nb", "a\\r\\nb"), ("tab\there", "tab\\there"),
        ("\u{1b}[31mred", "\\u{1b}[31mred"), ("nul\u{0}x", "nul\\u{0}x"), ("del\u{7f}", "del\\u{7f}"),
        ("csi\u{9b}2J", "csi\\u{9b}2J"), ("", ""),
    ])
    func controlCharactersAreEscaped(input: String, expected: String) {
        #expect(input.escapingControlCharacters == expected)
        #expect(!expected.contains("\n") && !expected.contains("\r"))
    }

    @Test(arguments: [["--data", ""], ["--data="], ["--x", "1", "--data", ""]])
    func emptyValuesAreUsageErrors(argv: [String]) {
        #expect {
            _ = try Arguments(argv, valued: ["data", "x"], booleans: [])
        } throws: { error in
            (error as? TransferError)?.isUsageError == true
                && (error as? TransferError)?.message == "--data needs a value (got an empty one)"
        }
    }

    @Test func nonEmptyValuesStillParse() throws {
        let args = try Arguments(["--data", " ", "--x=0", "pos"], valued: ["data", "x"], booleans: [])
        #expect(args["data"] == " " && args["x"] == "0" && args.positionals == ["pos"])
    }
}
