import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// Serving a file to a one-time token that was already used: only the rest of the same version of
/// the file, never the whole file again.
struct FileResponseTests {
    /// The response to `headers` (`$ETAG`/`$DATE` stand for the file's own validators).
    private func status(headers: [String: String], resumeOnly: Bool) throws -> Int {
        try TempDirectory.with { dir in
            let path = dir.path + "/file.bin"
            try Data(repeating: 7, count: 1000).write(to: URL(fileURLWithPath: path))
            var st = stat()
            stat(path, &st)
            func make(_ headers: [String: String], resumeOnly: Bool = false) -> HTTPResponse {
                let response = FileResponse.make(
                    descriptor: open(path, O_RDONLY), status: st, downloadName: "f",
                    request: HTTPRequest(method: "GET", path: "/download/file", headers: headers), resumeOnly: resumeOnly)
                if case .file(let fd, _, _) = response.body { close(fd) }  // the HTTP layer would, after sending
                return response
            }
            let plain = make([:])
            let etag = plain.headers.first { $0.0 == "ETag" }!.1
            let date = plain.headers.first { $0.0 == "Last-Modified" }!.1
            let resolved = headers.mapValues {
                $0.replacingOccurrences(of: "$ETAG", with: etag).replacingOccurrences(of: "$DATE", with: date)
            }
            return make(resolved, resumeOnly: resumeOnly).status
        }
    }

    @Test(arguments: [
        // (headers, status for a first use, status for a resume-only replay)
        (["range": "bytes=100-"], 206, 206),
        (["range": "bytes=100-", "if-range": "$ETAG"], 206, 206),
        (["range": "bytes=100-", "if-range": "$DATE"], 206, 206),
        (["range": "bytes=100-", "if-range": "\"other\""], 200, 404),
        (["range": "bytes=100-", "if-range": "Thu, 01 Jan 1970 00:00:00 GMT"], 200, 404),
        (["range": "bytes=5000-", "if-range": "$ETAG"], 416, 416),
        (["range": "bytes=5000-", "if-range": "\"other\""], 200, 404),
        (["range": "bytes=a-b"], 200, 404),
        ([:], 200, 404),
    ] as [([String: String], Int, Int)])
    func replayGetsOnlyARangeOfTheSameFile(headers: [String: String], first: Int, replay: Int) throws {
        #expect(try status(headers: headers, resumeOnly: false) == first)
        #expect(try status(headers: headers, resumeOnly: true) == replay)
    }
}
