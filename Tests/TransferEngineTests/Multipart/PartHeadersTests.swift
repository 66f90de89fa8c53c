import Testing
@testable import TransferEngine

struct PartHeadersTests {
    func parse(_ lines: String...) throws -> PartHeaders {
        try PartHeaders.parse(Array(lines.map { $0 + "\r\n" }.joined().utf8))
    }

    @Test func nameFilenameAndContentType() throws {
        let headers = try parse(
            #"Content-Disposition: form-data; name="archive"; filename="archive.tar.gz""#,
            "Content-Type: application/octet-stream")
        #expect(headers.name == "archive")
        #expect(headers.filename == "archive.tar.gz")
        #expect(headers.contentType == "application/octet-stream")
        #expect(headers.fields.map(\.name) == ["content-disposition", "content-type"])
    }

    @Test func headerNamesAndParameterNamesAreCaseInsensitive() throws {
        let headers = try parse(#"CONTENT-DISPOSITION: form-data; NAME="a"; FileName="b.txt""#, "content-TYPE:   text/plain  ")
        #expect(headers.name == "a")
        #expect(headers.filename == "b.txt")
        #expect(headers.contentType == "text/plain")
        #expect(headers["Content-Type"] == "text/plain")
    }

    @Test func unquotedAndSpacedParameters() throws {
        let headers = try parse("Content-Disposition: form-data ;  name = field1 ; filename=plain.txt")
        #expect(headers.name == "field1")
        #expect(headers.filename == "plain.txt")
    }

    /// RFC 5987 `filename*` wins over `filename`, in either order.
    @Test func extendedFilename() throws {
        let first = try parse(#"Content-Disposition: form-data; name="f"; filename*=UTF-8''na%C3%AFve%20file.txt; filename="naive file.txt""#)
        #expect(first.filename == "naïve file.txt")
        let second = try parse(#"Content-Disposition: form-data; name="f"; filename="x.txt"; filename*=utf-8'en'%E5%9F%8E%E5%A0%A1.schem"#)
        #expect(second.filename == "城堡.schem")
    }

    /// An unsupported charset or a broken escape in `filename*` falls back to `filename`.
    @Test func extendedFilenameFallsBack() throws {
        let latin1 = try parse(#"Content-Disposition: form-data; name="f"; filename*=ISO-8859-1''caf%E9.txt; filename="cafe.txt""#)
        #expect(latin1.filename == "cafe.txt")
        let broken = try parse(#"Content-Disposition: form-data; name="f"; filename*=UTF-8''bad%G1.txt; filename="ok.txt""#)
        #expect(broken.filename == "ok.txt")
    }

    @Test func quotedValuesWithEscapesAndSeparators() throws {
        let headers = try parse(#"Content-Disposition: form-data; name="a;b=c"; filename="say \"hi\"; \\o/.txt""#)
        #expect(headers.name == "a;b=c")
        #expect(headers.filename == #"say "hi"; \o/.txt"#)
    }

    /// Browsers and urllib3 percent-escape quotes in names; the header keeps them as sent.
    @Test func percentEscapedQuoteKeptAsSent() throws {
        let headers = try parse(#"Content-Disposition: form-data; name="f"; filename="say %22hi%22.txt""#)
        #expect(headers.filename == "say %22hi%22.txt")
    }

    @Test func emptyBlockHasNoFields() throws {
        let headers = try PartHeaders.parse([])
        #expect(headers.fields.isEmpty)
        #expect(headers.name == nil)
        #expect(headers.filename == nil)
        #expect(headers.contentType == nil)
    }

    @Test(arguments: ["no colon", ": empty name"])
    func malformedLineRefused(line: String) {
        let error = #expect(throws: TransferError.self) { _ = try parse(line) }
        #expect(error?.code == .invalidInput)
    }
}
