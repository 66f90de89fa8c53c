import Testing
@testable import TransferEngine

struct MultipartDecoderTests {
    static let fixtureNames = ["requests-near-boundary", "requests-random", "curl-form"]

    // MARK: bodies from real clients

    /// Bodies made by Python `requests` and by `curl -F` decode to the parts those clients were given.
    @Test(arguments: fixtureNames)
    func decodesRealClientBody(name: String) throws {
        let fixture = try MultipartFixture.load(name)
        #expect(MultipartDecoder.boundary(fromContentType: "multipart/form-data; boundary=\(fixture.boundary)") == fixture.boundary)
        let parts = try MultipartHarness.decode([fixture.body], boundary: fixture.boundary)
        #expect(parts == fixture.expected)
    }

    @Test(arguments: fixtureNames)
    func realClientBodySplitAtEveryByte(name: String) throws {
        let fixture = try MultipartFixture.load(name)
        MultipartHarness.expectEverySplit(fixture.body, boundary: fixture.boundary, expected: fixture.expected)
    }

    @Test(arguments: fixtureNames)
    func realClientBodyThroughStageVerifier(name: String) throws {
        let fixture = try MultipartFixture.load(name)
        let parts = try StageVerifier.verify(fixture.body) { try MultipartHarness.decode($0, boundary: fixture.boundary) }
        #expect(parts == fixture.expected)
    }

    // MARK: bodies from our encoder

    @Test func encoderBodySplitAtEveryByte() throws {
        let (body, boundary, expected) = Self.encoderBody(archiveSize: 1500)
        #expect(try MultipartHarness.decode([body], boundary: boundary) == expected)
        MultipartHarness.expectEverySplit(body, boundary: boundary, expected: expected)
    }

    @Test func largeEncoderBodyThroughStageVerifier() throws {
        let (body, boundary, expected) = Self.encoderBody(archiveSize: 300_000)
        let parts = try StageVerifier.verify(body) { try MultipartHarness.decode($0, boundary: boundary) }
        #expect(parts == expected)
    }

    /// A Wings-shaped body (archive, then checksum) whose archive holds near-copies of the delimiter.
    static func encoderBody(archiveSize: Int) -> (body: [UInt8], boundary: String, expected: [DecodedPart]) {
        var encoder = MultipartEncoder()
        let delimiter = Array("\r\n--\(encoder.boundary)".utf8)
        var rng = SplitMix64(seed: UInt64(archiveSize))
        var archive = rng.bytes(archiveSize / 2)
        for k in [1, 2, 4, 5, delimiter.count - 1] {
            archive += delimiter.prefix(k) + rng.bytes(37)
        }
        archive += Array(delimiter.dropFirst(2)) + Array("--".utf8)  // "--boundary--" without CRLF: plain data
        archive += rng.bytes(archiveSize / 2) + [0x0d] + delimiter.prefix(delimiter.count - 1)
        let checksum = SHA256Hasher.hex(of: archive)
        var body = encoder.partHeader(name: "archive", filename: "archive.tar.gz", contentType: "application/octet-stream")
        body += archive
        body += encoder.partHeader(name: "checksum")
        body += Array(checksum.utf8)
        body += encoder.partHeader(name: "empty", filename: "", contentType: "text/plain")
        body += encoder.closing()
        let expected = [
            DecodedPart(name: "archive", filename: "archive.tar.gz", contentType: "application/octet-stream", data: archive),
            DecodedPart(name: "checksum", text: checksum),
            DecodedPart(name: "empty", filename: "", contentType: "text/plain", data: []),
        ]
        return (body, encoder.boundary, expected)
    }

    @Test func encoderBodyWithoutPartsDecodesToNothing() throws {
        var encoder = MultipartEncoder()
        #expect(try MultipartHarness.decode([encoder.closing()], boundary: encoder.boundary) == [])
    }

    // MARK: framing details

    @Test func boundaryFromContentType() {
        let cases: [(String, String?)] = [
            ("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", "----WebKitFormBoundary7MA4YWxkTrZu0gW"),
            ("multipart/form-data;boundary=abc", "abc"),
            (#"multipart/form-data; boundary="a b:c=d""#, "a b:c=d"),
            (#"multipart/form-data; boundary="quoted;semi""#, "quoted;semi"),
            ("Multipart/Form-Data; charset=utf-8; BOUNDARY=xyz", "xyz"),
            ("multipart/form-data; boundary=abc; charset=utf-8", "abc"),
            ("multipart/form-data; boundary=" + String(repeating: "b", count: 70), String(repeating: "b", count: 70)),
            ("multipart/mixed; boundary=abc", nil),
            ("application/octet-stream", nil),
            ("multipart/form-data", nil),
            ("multipart/form-data; boundary=", nil),
            (#"multipart/form-data; boundary="""#, nil),
            ("multipart/form-data; boundary=" + String(repeating: "b", count: 201), nil),
        ]
        for (header, expected) in cases {
            #expect(MultipartDecoder.boundary(fromContentType: header) == expected, "\(header)")
        }
    }

    @Test func preambleAndEpilogueIgnored() throws {
        let body =
            "This is the preamble.\r\nIt may hold --b without CRLF first.\r\n"
            + "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nAlpha\r\n"
            + "--b--\r\nThis is the epilogue.\r\n--b\r\nContent-Disposition: form-data; name=\"ghost\"\r\n\r\nnot a part\r\n--b--\r\n"
        let parts = try StageVerifier.verify(Array(body.utf8)) { try MultipartHarness.decode($0, boundary: "b") }
        #expect(parts == [DecodedPart(name: "a", text: "Alpha")])
    }

    /// RFC 2046 allows linear whitespace between a boundary and its CRLF.
    @Test func transportPaddingAfterBoundary() throws {
        let body =
            "--b \t \r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nA\r\n--b\t\r\n"
            + "Content-Disposition: form-data; name=\"b\"\r\n\r\nB\r\n--b--  \r\n"
        let parts = try StageVerifier.verify(Array(body.utf8)) { try MultipartHarness.decode($0, boundary: "b") }
        #expect(parts == [DecodedPart(name: "a", text: "A"), DecodedPart(name: "b", text: "B")])
    }

    @Test func partWithoutHeaders() throws {
        let body = "--b\r\n\r\nhello\r\n--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\r\n--b--\r\n"
        var begins: [PartHeaders] = []
        var decoder = MultipartDecoder(boundary: "b")
        try decoder.feed(Array(body.utf8)) { if case .partBegin(let h) = $0 { begins.append(h) } }
        try decoder.finish()
        #expect(begins.count == 2)
        #expect(begins.first?.fields.isEmpty == true)
        let parts = try StageVerifier.verify(Array(body.utf8)) { try MultipartHarness.decode($0, boundary: "b") }
        #expect(parts == [DecodedPart(name: nil, text: "hello"), DecodedPart(name: "x", data: [])])
    }

    @Test func dataMayContainCRLFAndDashes() throws {
        let data = "\r\n\r\n--\r\n-b\r\n--c\r\n--\r\n"
        let body = "--b\r\nContent-Disposition: form-data; name=\"d\"\r\n\r\n" + data + "\r\n--b--"
        let parts = try StageVerifier.verify(Array(body.utf8)) { try MultipartHarness.decode($0, boundary: "b") }
        #expect(parts == [DecodedPart(name: "d", text: data)])
    }

    @Test func bytesAfterCompletionIgnored() throws {
        var decoder = MultipartDecoder(boundary: "b")
        var events = 0
        try decoder.feed(Array("--b\r\n\r\nx\r\n--b--".utf8)) { _ in events += 1 }
        #expect(decoder.isComplete)
        try decoder.feed(Array("\r\n--b\r\n\r\ny\r\n--b--".utf8)) { _ in events += 1 }
        #expect(events == 3)
        try decoder.finish()
    }

    // MARK: limits and errors

    @Test func headerBlockOverLimitRefused() throws {
        var limits = MultipartDecoder.Limits()
        limits.maxHeaderBytes = 64
        let body = "--b\r\nContent-Disposition: form-data; name=\"" + String(repeating: "n", count: 100) + "\"\r\n\r\nx\r\n--b--"
        let errors = StageVerifier.verifyFails(Array(body.utf8)) { _ = try MultipartHarness.decode($0, boundary: "b", limits: limits) }
        for error in errors { Self.expectMultipartError(error) }
        // A block comfortably under the limit passes.
        _ = try MultipartHarness.decode("--b\r\nContent-Disposition: form-data; name=\"n\"\r\n\r\nx\r\n--b--", boundary: "b", limits: limits)
    }

    /// A header block that never ends is refused once it passes the limit, not buffered forever.
    @Test func unterminatedHeaderBlockRefusedEarly() {
        var decoder = MultipartDecoder(boundary: "b")
        var fed = 0
        let junk = [UInt8](repeating: 0x61, count: 1024)
        let error = #expect(throws: TransferError.self) {
            try decoder.feed(Array("--b\r\nX-Junk: ".utf8)) { _ in }
            while fed < 1 << 20 {
                try decoder.feed(junk) { _ in }
                fed += junk.count
            }
        }
        #expect(error?.stage == .multipart)
        #expect(fed <= 17 * 1024, "refused only after \(fed) bytes")
    }

    /// Whether a header block fits the limit must not depend on how the body is chunked. Here the
    /// block is exactly at the limit: accepted whole, so it must be accepted in any pieces.
    @Test func headerLimitIndependentOfChunking() throws {
        let header = "Content-Disposition: form-data; name=\"abc\""
        let body = Array(("--b\r\n" + header + "\r\n\r\nx\r\n--b--").utf8)
        var limits = MultipartDecoder.Limits()
        // The decoder measures the block from the CRLF that ends the boundary line up to the blank line.
        limits.maxHeaderBytes = header.utf8.count + 2
        let whole = try MultipartHarness.decode([body], boundary: "b", limits: limits)
        #expect(whole == [DecodedPart(name: "abc", text: "x")])
        for chunking in StageVerifier.standardChunkings {
            #expect(throws: Never.self, "fed as \(chunking)") {
                _ = try MultipartHarness.decode(StageVerifier.split(body, by: chunking), boundary: "b", limits: limits)
            }
        }
    }

    @Test func tooManyPartsRefused() throws {
        var limits = MultipartDecoder.Limits()
        limits.maxParts = 3
        func body(_ n: Int) -> [UInt8] {
            Array(((0..<n).map { "--b\r\nContent-Disposition: form-data; name=\"p\($0)\"\r\n\r\n\($0)\r\n" }.joined() + "--b--").utf8)
        }
        #expect(try MultipartHarness.decode([body(3)], boundary: "b", limits: limits).count == 3)
        let errors = StageVerifier.verifyFails(body(4)) { _ = try MultipartHarness.decode($0, boundary: "b", limits: limits) }
        for error in errors { Self.expectMultipartError(error) }
    }

    @Test(arguments: [
        "", "--b", "--b-", "--b\r\n", "--b\r\nContent-Dis", "--b\r\n\r\ndata", "--b\r\n\r\ndata\r\n--b",
        "--b\r\n\r\ndata\r\n--b\r\n", "--b\r\n\r\ndata\r\n--b\r\n\r\nmore\r\n", "preamble only, no boundary at all",
    ])
    func missingClosingBoundaryFailsFinish(body: String) {
        let errors = StageVerifier.verifyFails(Array(body.utf8)) { _ = try MultipartHarness.decode($0, boundary: "b") }
        for error in errors { Self.expectMultipartError(error, code: .invalidInput) }
    }

    /// After `CRLF--boundary` only `--`, padding or CRLF may follow.
    @Test(arguments: [
        "--bX\r\n\r\nx\r\n--b--", "--b\r\n\r\nx\r\n--bgarbage\r\n\r\ny\r\n--b--", "--b  x\r\n\r\nx\r\n--b--",
        "--b\n\r\nx\r\n--b--", "--b\r\n\r\nx\r\n--b-x",
    ])
    func garbageAfterDelimiterRefused(body: String) {
        let errors = StageVerifier.verifyFails(Array(body.utf8)) { _ = try MultipartHarness.decode($0, boundary: "b") }
        for error in errors { Self.expectMultipartError(error, code: .invalidInput) }
    }

    @Test func malformedHeaderLineRefused() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nno colon here\r\n\r\nx\r\n--b--"
        let errors = StageVerifier.verifyFails(Array(body.utf8)) { _ = try MultipartHarness.decode($0, boundary: "b") }
        for error in errors { Self.expectMultipartError(error, code: .invalidInput) }
    }

    // MARK: part headers through the decoder

    @Test func extendedFilenameDecoded() throws {
        let body =
            "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"fallback.txt\"; "
            + "filename*=UTF-8''J%C3%BCrgen%20%F0%9F%98%80.dat\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n--b--"
        let parts = try StageVerifier.verify(Array(body.utf8)) { try MultipartHarness.decode($0, boundary: "b") }
        #expect(parts == [DecodedPart(name: "f", filename: "Jürgen 😀.dat", contentType: "application/octet-stream", text: "x")])
    }

    @Test func escapedQuotesInFilename() throws {
        let body = #"--b"# + "\r\n" + #"Content-Disposition: form-data; name="f"; filename="say \"hi\" \\ bye.txt""#
            + "\r\n\r\nx\r\n--b--"
        let parts = try MultipartHarness.decode(body, boundary: "b")
        #expect(parts == [DecodedPart(name: "f", filename: #"say "hi" \ bye.txt"#, text: "x")])
    }

    static func expectMultipartError(
        _ error: any Error, code: TransferError.Code? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let error = error as? TransferError else {
            Issue.record("expected a TransferError, got \(error)", sourceLocation: sourceLocation)
            return
        }
        #expect(error.stage == .multipart, "\(error)", sourceLocation: sourceLocation)
        if let code { #expect(error.code == code, "\(error.code): \(error)", sourceLocation: sourceLocation) }
    }
}
