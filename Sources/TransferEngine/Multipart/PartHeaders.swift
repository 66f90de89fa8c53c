/// The headers of one multipart part, with the `Content-Disposition` parameters parsed.
public struct PartHeaders: Sendable, Equatable {
    /// Header fields in order, names lowercased.
    public var fields: [(name: String, value: String)]
    /// The form field name (`name=` parameter).
    public var name: String?
    /// The file name (`filename*=` per RFC 5987 if present, else `filename=`), exactly as sent.
    public var filename: String?

    public var contentType: String? { self["content-type"] }

    public subscript(name: String) -> String? {
        let lower = name.lowercased()
        return fields.first { $0.name == lower }?.value
    }

    public static func == (a: PartHeaders, b: PartHeaders) -> Bool {
        a.name == b.name && a.filename == b.filename && a.fields.map(\.name) == b.fields.map(\.name)
            && a.fields.map(\.value) == b.fields.map(\.value)
    }

    /// Parses a header block (lines separated by CRLF, without the blank line).
    static func parse(_ block: [UInt8]) throws -> PartHeaders {
        var headers = PartHeaders(fields: [], name: nil, filename: nil)
        let text = String(decoding: block, as: UTF8.self)
        for line in text.split(separator: "\r\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":") else {
                throw TransferError(.invalidInput, .multipart, "malformed part header line")
            }
            let name = line[..<colon].trimmingSpaces().lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces()
            guard !name.isEmpty else { throw TransferError(.invalidInput, .multipart, "malformed part header line") }
            headers.fields.append((name, value))
        }
        if let disposition = headers["content-disposition"] {
            let params = HeaderParameters.parse(disposition)
            headers.name = params.value(for: "name")
            headers.filename = params.extendedValue(for: "filename*") ?? params.value(for: "filename")
        }
        return headers
    }
}

/// `type; key=value; key="quoted \" value"` as in Content-Type and Content-Disposition (RFC 9110 §5.6.6).
public struct HeaderParameters: Sendable {
    public var type: String
    public var parameters: [(key: String, value: String)]

    public func value(for key: String) -> String? {
        parameters.first { $0.key == key.lowercased() }?.value
    }

    /// RFC 5987 `charset'lang'percent-encoded` values (only UTF-8 and ASCII charsets are honoured).
    func extendedValue(for key: String) -> String? {
        guard let raw = value(for: key) else { return nil }
        let pieces = raw.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
        guard pieces.count == 3, ["utf-8", "us-ascii"].contains(pieces[0].lowercased()) else { return nil }
        return PercentDecoding.decode(String(pieces[2]))
    }

    public static func parse(_ header: String) -> HeaderParameters {
        let bytes = Array(header.utf8)
        var index = 0
        func skipSpaces() { while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 { index += 1 } }
        func readUntil(_ stops: Set<UInt8>) -> String {
            let start = index
            while index < bytes.count, !stops.contains(bytes[index]) { index += 1 }
            return String(decoding: bytes[start..<index], as: UTF8.self).trimmingSpaces()
        }
        let type = readUntil([0x3b]).lowercased()
        var result = HeaderParameters(type: type, parameters: [])
        while index < bytes.count {
            index += 1  // the ';'
            skipSpaces()
            let key = readUntil([0x3d, 0x3b]).lowercased()
            guard index < bytes.count, bytes[index] == 0x3d else {
                continue
            }
            index += 1
            skipSpaces()
            var value: [UInt8] = []
            if index < bytes.count, bytes[index] == 0x22 {
                index += 1
                while index < bytes.count, bytes[index] != 0x22 {
                    // A backslash escapes only `"` and `\`: browsers send Windows paths
                    // (`C:\Users\me\a.txt`) unescaped, and those backslashes must survive.
                    if bytes[index] == 0x5c, index + 1 < bytes.count, bytes[index + 1] == 0x22 || bytes[index + 1] == 0x5c {
                        index += 1
                    }
                    value.append(bytes[index])
                    index += 1
                }
                if index < bytes.count { index += 1 }  // closing quote (an unterminated one ends the value)
                _ = readUntil([0x3b])
            } else {
                value = Array(readUntil([0x3b]).utf8)
            }
            if !key.isEmpty { result.parameters.append((key, String(decoding: value, as: UTF8.self))) }
        }
        return result
    }
}

/// Percent-encoding of UTF-8 bytes; `allowed` bytes pass through.
enum PercentEncoding {
    /// RFC 3986 unreserved characters (query values).
    static let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
    /// RFC 5987 attr-char (`filename*` values).
    static let attributeCharacters = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+-.^_`|~".utf8)

    static func encode(_ text: String, allowed: Set<UInt8>) -> String {
        var out = ""
        for byte in text.utf8 {
            if allowed.contains(byte) {
                out.append(Character(Unicode.Scalar(byte)))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(2)
            }
        }
        return out
    }
}

enum PercentDecoding {
    /// Decodes `%XX` escapes; nil if an escape is malformed.
    static func decode(_ text: String, plusAsSpace: Bool = false) -> String? {
        var out: [UInt8] = []
        var bytes = Array(text.utf8)[...]
        while let b = bytes.popFirst() {
            if b == 0x25 {
                guard bytes.count >= 2, let hi = hexValue(bytes.removeFirst()), let lo = hexValue(bytes.removeFirst())
                else { return nil }
                out.append(hi << 4 | lo)
            } else if b == 0x2b && plusAsSpace {
                out.append(0x20)
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: b - 0x30
        case 0x41...0x46: b - 0x41 + 10
        case 0x61...0x66: b - 0x61 + 10
        default: nil
        }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
