import Testing
@testable import TransferEngine

/// How the answer to `GET /api/system` is judged, without a network.
struct NodeCheckTests {
    static let endpoint = "http://node:8080/api/system"

    static func judge(_ status: Int, _ body: String) -> Result<NodeCheck.Node, TransferError> {
        Result { try NodeCheck.node(status: status, body: Array(body.utf8), endpoint: endpoint) }
            .mapError { $0 as! TransferError }
    }

    @Test func ourDaemonAnnouncesTheTransferCapability() throws {
        let node = try Self.judge(200, #"{"version":"0.1.0","os":"linux","capabilities":["transfer","gzip"]}"#).get()
        #expect(node == NodeCheck.Node(kind: "transferd", version: "0.1.0"))
    }

    /// Wings' v1 system answer has no capabilities.
    @Test func anyOtherNodeIsWings() throws {
        let node = try Self.judge(200, #"{"architecture":"amd64","os":"linux","version":"1.11.13"}"#).get()
        #expect(node == NodeCheck.Node(kind: "wings", version: "1.11.13"))
    }

    @Test(arguments: [
        (401, "{}", 77), (403, #"{"error":"nope"}"#, 77), (404, "", 69), (200, "<html></html>", 69),
        (200, #"{"os":"linux"}"#, 69), (503, "", 69), (500, #"{"error":"disk"}"#, 74), (302, "", 69),
    ])
    func everythingElseIsAClearError(status: Int, body: String, exit: Int32) {
        guard case .failure(let error) = Self.judge(status, body) else {
            Issue.record("\(status) \(body) was taken for a node")
            return
        }
        #expect(ErrorMapping.exitStatus(for: error.code) == exit, "\(status): \(error.message)")
        #expect(!error.message.isEmpty && !error.message.contains("\n"))
    }

    @Test func aTokenThatCannotGoInAHeaderIsRefusedBeforeAnyRequest() {
        #expect(throws: TransferError.self) {
            try NodeCheck.check(url: "http://127.0.0.1:1", secret: Array("a\r\nX-Evil: 1".utf8))
        }
    }
}
