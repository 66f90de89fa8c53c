import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// What a resumed download keeps beside its partial file, and what it will send back: only a
/// strong validator that cannot add headers of its own.
struct DownloadClientTests {
    @Test(arguments: [
        (["etag": "\"1a-2b-3c\"", "last-modified": "Sun, 06 Nov 1994 08:49:37 GMT"], "\"1a-2b-3c\""),
        (["etag": "W/\"weak\"", "last-modified": "Sun, 06 Nov 1994 08:49:37 GMT"], "Sun, 06 Nov 1994 08:49:37 GMT"),
        (["last-modified": "Sun, 06 Nov 1994 08:49:37 GMT"], "Sun, 06 Nov 1994 08:49:37 GMT"),
        (["etag": "W/\"weak\""], nil),
        (["etag": "\"a\"\r\nX-Injected: 1"], nil),
        ([:], nil),
    ] as [([String: String], String?)])
    func validatorIsAStrongETagElseLastModified(headers: [String: String], expected: String?) {
        #expect(DownloadClient.validator(from: headers) == expected)
    }

    /// Every control byte, DEL, a non-ASCII byte, empty, padded or overlong: none is sent.
    @Test func unsafeStoredValidatorsAreNotUsed() throws {
        var bad = (UInt8(0)..<0x20).map { "\"a" + String(UnicodeScalar($0)) + "b\"" }
        bad += ["\"a\u{7f}\"", "\"é\"", "", " \"a\"", "\"a\" ", String(repeating: "a", count: 257)]
        for value in bad {
            #expect(!DownloadClient.isHeaderSafe(value), "\(value.escapingControlCharacters)")
        }
        #expect(DownloadClient.isHeaderSafe("\"1a-2b-3c\""))
        try TempDirectory.with { dir in
            let path = dir.path + "/f.part.etag"
            for value in bad + ["\"ok\""] {
                try Data(value.utf8).write(to: URL(fileURLWithPath: path))
                #expect(DownloadClient.storedValidator(at: path) == (value == "\"ok\"" ? value : nil))
            }
            #expect(DownloadClient.storedValidator(at: dir.path + "/missing") == nil)
        }
    }

    @Test(arguments: [
        ("bytes 100-199/200", 100), ("bytes 0-0/1", 0), ("BYTES 7-9/10", 7), ("bytes */200", nil), ("", nil),
        ("items 1-2/3", nil),
    ] as [(String, Int64?)])
    func rangeStartOfContentRange(header: String, expected: Int64?) {
        #expect(DownloadClient.rangeStart(header) == expected)
    }

    /// A partial file without a usable validator is refused before any request is made (the URL
    /// here reaches nothing) and is left exactly as it was.
    @Test(arguments: [nil, "", "\"a\"\nX: 1"] as [String?])
    func partialWithoutValidatorIsRefusedAndKept(validator: String?) throws {
        try TempDirectory.with { dir in
            let client = DownloadClient(url: "http://127.0.0.1:1/download/file?token=x", output: dir.path + "/out.bin")
            client.resume = true
            let partial = Data("some earlier bytes".utf8)
            try partial.write(to: URL(fileURLWithPath: client.partialPath))
            if let validator { try Data(validator.utf8).write(to: URL(fileURLWithPath: client.validatorPath)) }
            #expect {
                _ = try client.run()
            } throws: { error in
                (error as? TransferError)?.message.contains("no stored validator") == true
                    && (error as? TransferError)?.code == .invalidInput
            }
            #expect(FileManager.default.contents(atPath: client.partialPath) == partial)
            #expect(!FileManager.default.fileExists(atPath: client.output))
        }
    }
}
