import Testing
@testable import TransferEngine

/// RFC 9112 §6.3: a request whose body length is ambiguous is refused (400, Connection: close)
/// before any route sees it.
struct FramingRefusalTests {
    private func request(contentLengths: [String], transferEncoding: String? = nil) -> HTTPRequest {
        var headers: [String: String] = [:]
        if let last = contentLengths.last { headers["content-length"] = last }
        if let transferEncoding { headers["transfer-encoding"] = transferEncoding }
        var request = HTTPRequest(method: "POST", path: "/api/transfers", headers: headers)
        request.contentLengthValues = contentLengths
        return request
    }

    @Test(arguments: [["1", "2"], ["2", "1"], ["1, 2"], ["1,2"], ["1", "1, 2"], ["5", "5", "6"], ["1", "abc"]])
    func differingContentLengthsAreRefused(_ values: [String]) throws {
        let response = try #require(HTTPServer.framingRefusal(request(contentLengths: values)))
        #expect(response.status == 400)
        #expect(response.headers.contains { $0.0 == "Connection" && $0.1 == "close" })
        guard case .bytes(let body) = response.body else { Issue.record("not a byte body"); return }
        let json = try JSONValue.parse(body)
        #expect(json["error"]?.stringValue?.contains("differing Content-Length") == true)
    }

    @Test(arguments: [[], ["10"], ["10", "10"], ["10, 10"], [" 10", "10 "]])
    func oneLengthIsAccepted(_ values: [String]) {
        #expect(HTTPServer.framingRefusal(request(contentLengths: values)) == nil)
    }

    @Test func transferEncodingWithContentLengthIsStillRefused() throws {
        let response = try #require(HTTPServer.framingRefusal(request(contentLengths: ["3"], transferEncoding: "chunked")))
        #expect(response.status == 400)
    }
}
