import Testing
@testable import TransferEngine

/// A 200 counts as a committed push only when it is a transfer confirmation: our nodes' JSON with
/// the same SHA-256, or a Wings node's empty body. Anything else that answers 200 (a web page, a
/// stub, a maintenance page) must not tell an operator the volume arrived.
struct OutgoingTransferTests {
    private static let sent = String(repeating: "ab", count: 32)
    private static let endpoint = "http://127.0.0.1:1/api/transfers"
    private static let server = "11111111-2222-3333-4444-555555555555"

    private static func confirmation(_ reply: String) throws -> (OutgoingTransfer.Confirmation, server: String?) {
        try OutgoingTransfer.confirmation(status: 200, reply: Array(reply.utf8), checksum: sent, endpoint: endpoint)
    }

    @Test func ourNodesJSONWithTheSameChecksumIsVerified() throws {
        let reply = "{\"success\":true,\"server\":\"\(Self.server.uppercased())\","
            + "\"checksum\":\"\(Self.sent.uppercased())\",\"archive_bytes\":10,\"volume_bytes\":5,\"files\":1}"
        let (confirmation, server) = try Self.confirmation(reply)
        #expect(confirmation == .checksumEchoed)
        #expect(server == Self.server)
    }

    /// Wings answers 200 with no body once the checksum it was sent matched.
    @Test(arguments: ["", "\r\n", "  \n"])
    func anEmptyBodyIsAcceptedWithoutEcho(reply: String) throws {
        let (confirmation, server) = try Self.confirmation(reply)
        #expect(confirmation == .acceptedWithoutEcho)
        #expect(server == nil)
    }

    @Test func anotherChecksumIsAnIntegrityError() {
        let other = String(repeating: "cd", count: 32)
        #expect {
            _ = try Self.confirmation("{\"success\":true,\"checksum\":\"\(other)\"}")
        } throws: { error in
            let error = error as? TransferError
            return error?.code == .integrity && ErrorMapping.exitStatus(for: error!.code) == 65
                && error!.message.contains(other) && error!.message.contains(Self.sent)
        }
    }

    @Test(arguments: [
        "<html>OK</html>", "OK", "{\"success\": true}", "{\"success\": false}",
        "{\"success\": false, \"checksum\": \"\(sent)\"}", "{\"checksum\": 42}", "[\"\(sent)\"]", "null", "\u{1}\u{2}",
    ])
    func anythingElseIsNotAConfirmation(reply: String) {
        #expect {
            _ = try Self.confirmation(reply)
        } throws: { error in
            let error = error as? TransferError
            return error?.code == .network && ErrorMapping.exitStatus(for: error!.code) == 69
                && error!.message.contains("not a transfer confirmation") && !error!.message.contains("<")
                && !error!.message.contains("\n")
        }
    }

    /// An HTML page's text comes out as words, not run together where tags were.
    @Test func oneLineKeepsWordsApartWhereTagsWere() {
        #expect(OutgoingTransfer.oneLine("<html><title>Down</title><p>OK</p>\n</html>") == "Down OK")
        #expect(OutgoingTransfer.oneLine("a<br>b  <i>c</i>") == "a b c")
    }
}
