import Testing
@testable import TransferEngine

/// What the daemon prints to paste into a shell must come back as the same single word.
struct ShellWordTests {
    @Test(arguments: ["transferd-data/node-token", "/tmp/state with spaces/node-token", "it's", "a$b`c`\\d\"e",
                      "tab\there", "new\nline", "", "*?[x]", "ünïcode/dir", "-leading-dash"])
    func aShellReadsBackTheSameWord(text: String) throws {
        let result = try ProcessResult.run("/bin/sh", ["-c", "printf '%s' " + ShellWord.quoted(text)])
        #expect(result.status == 0)
        #expect(result.stdout == text)
    }

    @Test func plainWordsStayUnquoted() {
        #expect(ShellWord.quoted("transferd-data/node-token") == "transferd-data/node-token")
        #expect(ShellWord.quoted("a b") == "'a b'")
    }
}
