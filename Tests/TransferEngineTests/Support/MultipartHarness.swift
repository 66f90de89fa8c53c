import Foundation
import Testing
@testable import TransferEngine

/// One decoded part, as compared in the multipart tests.
struct DecodedPart: Equatable, CustomStringConvertible {
    var name: String?
    var filename: String?
    var contentType: String?
    var data: [UInt8]

    init(name: String?, filename: String? = nil, contentType: String? = nil, data: [UInt8]) {
        self.name = name
        self.filename = filename
        self.contentType = contentType
        self.data = data
    }

    init(name: String?, filename: String? = nil, contentType: String? = nil, text: String) {
        self.init(name: name, filename: filename, contentType: contentType, data: Array(text.utf8))
    }

    var description: String {
        "part(name: \(name.debugDescription), filename: \(filename.debugDescription), type: "
            + "\(contentType.debugDescription), \(data.count) bytes, sha256 \(SHA256Hasher.hex(of: data).prefix(16)))"
    }
}

enum MultipartHarness {
    struct EventOrderError: Error, CustomStringConvertible { var description: String }

    /// Feeds `chunks` to a decoder, checks the event order (begin, data*, end), calls `finish()`,
    /// and returns the parts.
    static func decode(
        _ chunks: [[UInt8]], boundary: String, limits: MultipartDecoder.Limits = MultipartDecoder.Limits()
    ) throws -> [DecodedPart] {
        var decoder = MultipartDecoder(boundary: boundary, limits: limits)
        var parts: [DecodedPart] = []
        var open = false
        for chunk in chunks {
            try decoder.feed(chunk) { event in
                switch event {
                case .partBegin(let headers):
                    guard !open else { throw EventOrderError(description: "partBegin inside a part") }
                    open = true
                    parts.append(DecodedPart(name: headers.name, filename: headers.filename, contentType: headers.contentType, data: []))
                case .partData(let bytes):
                    guard open else { throw EventOrderError(description: "partData outside a part") }
                    guard !bytes.isEmpty else { throw EventOrderError(description: "empty partData event") }
                    parts[parts.count - 1].data.append(contentsOf: bytes)
                case .partEnd:
                    guard open else { throw EventOrderError(description: "partEnd outside a part") }
                    open = false
                }
            }
        }
        try decoder.finish()
        guard decoder.isComplete, !open else { throw EventOrderError(description: "finish() passed with a part open") }
        return parts
    }

    static func decode(_ body: String, boundary: String, limits: MultipartDecoder.Limits = MultipartDecoder.Limits())
        throws -> [DecodedPart]
    {
        try decode([Array(body.utf8)], boundary: boundary, limits: limits)
    }

    /// Decodes `body` cut in two at every position and expects `expected` each time; stops at the
    /// first failing cut so a bug reports once, with its position.
    static func expectEverySplit(
        _ body: [UInt8], boundary: String, expected: [DecodedPart], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for cut in 0...body.count {
            do {
                let parts = try decode([Array(body[..<cut]), Array(body[cut...])], boundary: boundary)
                guard parts == expected else {
                    Issue.record("split at byte \(cut) of \(body.count): got \(parts)", sourceLocation: sourceLocation)
                    return
                }
            } catch {
                Issue.record("split at byte \(cut) of \(body.count): \(error)", sourceLocation: sourceLocation)
                return
            }
        }
    }
}

/// A body captured from a real client, with its boundary and the parts that client was given
/// (`Fixtures/multipart/NAME.{bin,boundary,parts.json}`, made by `fixtures/make_multipart_fixtures.py`).
struct MultipartFixture {
    var body: [UInt8]
    var boundary: String
    var expected: [DecodedPart]

    private struct Manifest: Decodable {
        var name: String
        var filename: String?
        var content_type: String?
        var data_base64: String
    }

    static func load(_ name: String) throws -> MultipartFixture {
        let body = try Fixtures.bytes("multipart/\(name).bin")
        let boundary = String(decoding: try Fixtures.bytes("multipart/\(name).boundary"), as: UTF8.self)
        let manifest = try JSONDecoder().decode([Manifest].self, from: Data(try Fixtures.bytes("multipart/\(name).parts.json")))
        let expected = try manifest.map { part in
            DecodedPart(
                name: part.name, filename: part.filename, contentType: part.content_type,
                data: [UInt8](try #require(Data(base64Encoded: part.data_base64))))
        }
        return MultipartFixture(body: body, boundary: boundary, expected: expected)
    }
}
