import Testing
@testable import TransferEngine

struct MultipartEncoderTests {
    @Test func framingIsExact() {
        var encoder = MultipartEncoder(boundary: "XyZ")
        #expect(encoder.contentType == "multipart/form-data; boundary=XyZ")
        let first = encoder.partHeader(name: "archive", filename: "archive.tar.gz", contentType: "application/octet-stream")
        #expect(String(decoding: first, as: UTF8.self) == "--XyZ\r\nContent-Disposition: form-data; name=\"archive\"; "
            + "filename=\"archive.tar.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n")
        let second = encoder.partHeader(name: "checksum")
        #expect(String(decoding: second, as: UTF8.self) == "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"checksum\"\r\n\r\n")
        #expect(String(decoding: encoder.closing(), as: UTF8.self) == "\r\n--XyZ--\r\n")
    }

    @Test func closingWithoutPartsHasNoLeadingCRLF() {
        var encoder = MultipartEncoder(boundary: "XyZ")
        #expect(String(decoding: encoder.closing(), as: UTF8.self) == "--XyZ--\r\n")
    }

    /// Quotes, CR and LF in names are percent-escaped (WHATWG), so a name cannot break the header.
    @Test func namesAreEscaped() throws {
        var encoder = MultipartEncoder(boundary: "b")
        var body = encoder.partHeader(name: "we\"ird", filename: "a\"b\r\nContent-Type: evil.txt")
        body += Array("x".utf8)
        body += encoder.closing()
        let parts = try MultipartHarness.decode([body], boundary: "b")
        #expect(parts == [DecodedPart(name: "we%22ird", filename: "a%22b%0D%0AContent-Type: evil.txt", text: "x")])
    }

    /// RFC 2046: 1–70 characters from the boundary alphabet; fresh for every encoder.
    @Test func randomBoundaryIsValidAndFresh() {
        let allowed = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?")
        var seen = Set<String>()
        for _ in 0..<100 {
            let boundary = MultipartEncoder().boundary
            #expect((1...70).contains(boundary.count), "\(boundary)")
            #expect(boundary.allSatisfy { allowed.contains($0) }, "\(boundary)")
            seen.insert(boundary)
        }
        #expect(seen.count == 100)
    }

    @Test func contentTypeRoundTripsThroughDecoder() {
        let encoder = MultipartEncoder()
        #expect(MultipartDecoder.boundary(fromContentType: encoder.contentType) == encoder.boundary)
    }
}
