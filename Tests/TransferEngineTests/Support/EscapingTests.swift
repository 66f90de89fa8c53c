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

/// Values that would overflow or nest without bound are refused up front, with a usage or config
/// error, instead of crashing later.
struct BoundedInputTests {
    @Test(arguments: ["922337203685477580m", "9223372036854775807", "106751991167300d", "366d", "3000000000000000000"])
    func overlongDurationsAreUsageErrors(text: String) {
        #expect { _ = try Arguments.duration(text) } throws: { ($0 as? TransferError)?.isUsageError == true }
    }

    /// `--ttl 15` is not 15 seconds: a duration without its unit is refused, saying which units.
    @Test(arguments: ["15", "900", "0", "007"])
    func bareNumbersAreRefused(text: String) {
        #expect {
            _ = try Arguments.duration(text, option: "--ttl")
        } throws: { error in
            let error = error as? TransferError
            return error?.isUsageError == true && error!.message.hasPrefix("--ttl needs a unit: 90s, 15m, 2h, 1d")
        }
    }

    @Test(arguments: [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400)] as [(String, Int64)])
    func unitsAreSecondsMinutesHoursDays(text: String, seconds: Int64) throws {
        #expect(try Arguments.duration(text) == seconds)
    }

    @Test(arguments: ["", "m", "15x", "1.5h", "-5m", "0m", "15 m", "15mm"])
    func otherTextIsNoDuration(text: String) {
        #expect { _ = try Arguments.duration(text) } throws: { ($0 as? TransferError)?.isUsageError == true }
    }

    @Test func aYearIsTheLongestDuration() throws {
        #expect(try Arguments.duration("365d") == 365 * 86400)
        #expect(try Arguments.duration("15m") == 900)
    }

    @Test func deeplyNestedYAMLIsRefusedNotOverflowed() throws {
        let deep = "token: abc\nx: " + String(repeating: "[", count: 35_000) + String(repeating: "]", count: 35_000) + "\n"
        #expect(throws: TransferError.self) { _ = try YAMLNode.parse(deep) }
        let fine = "token: abc\nx: " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "\n"
        #expect(try YAMLNode.parse(fine)["token"]?.string == "abc")
    }

    @Test(arguments: ["abc\r\nX-Injected: yes", "a b", "tab\there", "esc\u{1b}[2J", "del\u{7f}", "", "Bearer ", "Bearer a b"])
    func tokensWithSpacesOrControlsAreRefused(token: String) {
        #expect { _ = try SendCommand.validatedToken(token) } throws: { ($0 as? TransferError)?.isUsageError == true }
    }

    /// What panels and shells hand over: a "Bearer " prefix in any case, a trailing newline.
    @Test(arguments: ["a.b.c", "Bearer a.b.c", "bearer a.b.c", "BEARER  a.b.c", "a.b.c\n", " Bearer a.b.c\r\n"])
    func tokensArePassedBare(token: String) throws {
        #expect(try SendCommand.validatedToken(token) == "a.b.c")
    }

    @Test(arguments: ["http://127.0.0.1:99999999999999999999", "http://127.0.0.1:65536", "http://a b/", "http://h\n/", "ftp://h/"])
    func badURLsAreUsageErrors(url: String) {
        #expect { _ = try SendCommand.validatedURL(url) } throws: { ($0 as? TransferError)?.isUsageError == true }
    }

    @Test(arguments: ["http://127.0.0.1:8080", "https://[::1]:8443/api", "http://[fe80::1%25eth0]:80", "http://node.example/"])
    func goodURLsPass(url: String) throws {
        #expect(try SendCommand.validatedURL(url) == url)
    }
}
