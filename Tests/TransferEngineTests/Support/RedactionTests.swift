import Testing
@testable import TransferEngine

/// Credentials written into a URL never reach what the programs print.
struct RedactionTests {
    @Test(arguments: [
        ("https://user:pw@host/", "https://***@host/"),
        ("to http://admin:hunter2@127.0.0.1:8080/api/transfers", "to http://***@127.0.0.1:8080/api/transfers"),
        ("http://token@h", "http://***@h"),
        ("http://u:p@ss@h:1/x", "http://***@h:1/x"),  // an unescaped "@" in the password
        ("http://u:p?s#s@h/", "http://***@h/"),  // "?" and "#" in it, too
        ("'http://u:p@h' and https://v:q@[::1]:8443/p", "'http://***@h' and https://***@[::1]:8443/p"),
        (#"{"url":"http://u:p@h/api/transfers"}"#, #"{"url":"http://***@h/api/transfers"}"#),
        ("Malformed input to a URL function for http://u:p@h", "Malformed input to a URL function for http://***@h"),
    ])
    func userinfoIsReplaced(text: String, expected: String) {
        #expect(text.redactingURLCredentials == expected)
        #expect(expected.redactingURLCredentials == expected)
    }

    @Test(arguments: [
        "http://h:8080/api/transfers", "mail me: a@b.c", "http://h/path/user@x", "no url here", "://x@y", "",
        "pushed 3 MiB to server 1 on http://127.0.0.1:8080/api/transfers",
    ])
    func textWithoutCredentialsIsUnchanged(text: String) {
        #expect(text.redactingURLCredentials == text)
    }

    @Test func credentialsAreRemovedForTheAudience() {
        #expect(Redaction.removingCredentials("https://u:p@h:1/x") == "https://h:1/x")
        #expect(Redaction.removingCredentials("https://h:1/x") == "https://h:1/x")
        #expect(Redaction.userinfo(of: "http://u:p@h/") == "u:p")
        #expect(Redaction.userinfo(of: "http://h/a@b") == nil)
    }
}
