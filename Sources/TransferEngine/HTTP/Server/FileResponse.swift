#if canImport(Glibc)
import Glibc
#endif

/// Builds the response for serving an open file: full (200), one range (206), unsatisfiable
/// range (416), with `ETag`, `Last-Modified`, `Accept-Ranges` and a download `Content-Disposition`.
/// The body is sent from the descriptor by the HTTP layer (sendfile), which also closes it.
public enum FileResponse {
    /// - Parameters:
    ///   - descriptor: an open regular file; ownership passes to the response (closed on every path).
    ///   - downloadName: the file name offered to the client.
    ///   - resumeOnly: the request rides on a one-time token that was already used, allowed only to
    ///     continue a download. When its range does not apply (an `If-Range` naming another version
    ///     of the file), it is refused with 404 instead of getting the whole file again; so is a
    ///     range that stops before the end of the file.
    public static func make(
        descriptor: Int32, status st: stat, downloadName: String, request: HTTPRequest, resumeOnly: Bool = false
    ) -> HTTPResponse {
        let size = Int64(st.st_size)
        let etag = "\"\(String(UInt64(st.st_ino), radix: 16))-\(String(size, radix: 16))-\(String(st.st_mtim.tv_sec, radix: 16))\(String(st.st_mtim.tv_nsec, radix: 16))\""
        let lastModified = httpDate(st.st_mtim.tv_sec)
        var headers: [(String, String)] = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Disposition", contentDisposition(downloadName)),
            ("Accept-Ranges", "bytes"), ("ETag", etag), ("Last-Modified", lastModified),
            ("Cache-Control", "private, no-cache"),
        ]
        var range: ClosedRange<Int64>?
        let rangeApplies = ifRangeMatches(request.header("if-range"), etag: etag, lastModified: lastModified)
        if resumeOnly, rangeApplies, let header = request.header("range"), case .range(let r) = parseRange(header, size: size),
            r.upperBound != size - 1
        {
            // A resume fetches the rest of the file: ranges that stop short could be fetched
            // piecewise, again and again, without any of them ever completing the download.
            close(descriptor)
            return .error(
                TransferError(
                    .notFound, .auth,
                    "this link was already used (tokens are one-time); it can only resume a download to its end"))
        }
        if resumeOnly && !(rangeApplies && request.header("range").map({ parseRange($0, size: size) != .none }) == true) {
            close(descriptor)
            return .error(
                TransferError(
                    .notFound, .auth,
                    "this link was already used (tokens are one-time); the file changed since the download began, "
                        + "so it cannot be resumed with it"))
        }
        if let header = request.header("range"), rangeApplies {
            switch parseRange(header, size: size) {
            case .none: break
            case .unsatisfiable:
                close(descriptor)
                headers.append(("Content-Range", "bytes */\(size)"))
                return HTTPResponse(status: 416, headers: headers, body: .bytes([]))
            case .range(let r): range = r
            }
        }
        if let range {
            headers.append(("Content-Range", "bytes \(range.lowerBound)-\(range.upperBound)/\(size)"))
            return HTTPResponse(
                status: 206, headers: headers,
                body: .file(descriptor: descriptor, offset: range.lowerBound, length: range.upperBound - range.lowerBound + 1))
        }
        return HTTPResponse(status: 200, headers: headers, body: .file(descriptor: descriptor, offset: 0, length: size))
    }

    enum RangeResult: Equatable {
        case none
        case unsatisfiable
        case range(ClosedRange<Int64>)
    }

    /// RFC 9110 §14.2: one `bytes=` range (`a-b`, `a-`, `-n`). Several ranges or a malformed
    /// header are ignored (the whole file is sent, which the RFC allows).
    static func parseRange(_ header: String, size: Int64) -> RangeResult {
        let value = header.trimmingSpaces()
        guard value.lowercased().hasPrefix("bytes="), !value.contains(",") else { return .none }
        let spec = value.dropFirst(6).trimmingSpaces()
        guard let dash = spec.firstIndex(of: "-") else { return .none }
        let first = spec[..<dash].trimmingSpaces()
        let last = spec[spec.index(after: dash)...].trimmingSpaces()
        if first.isEmpty {
            guard let suffix = Int64(last), suffix >= 0 else { return .none }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .range(max(0, size - suffix)...(size - 1))
        }
        guard let start = Int64(first), start >= 0 else { return .none }
        var end = size - 1
        if !last.isEmpty {
            guard let given = Int64(last), given >= start else { return .none }
            end = min(given, size - 1)
        }
        guard start < size else { return .unsatisfiable }
        return .range(start...end)
    }

    /// The first byte of a range that continues a download (`bytes=a-` or `bytes=a-b`, a > 0), or nil:
    /// no range, a range from byte 0, a suffix range (`bytes=-n`: the client says nothing of what it
    /// has) or several ranges.
    static func resumeStart(_ header: String) -> Int64? {
        guard case .range(let r) = parseRange(header, size: Int64.max),
            !header.trimmingSpaces().dropFirst(6).trimmingSpaces().hasPrefix("-"), r.lowerBound > 0
        else { return nil }
        return r.lowerBound
    }

    /// `If-Range` with an ETag or a date: the range applies only if the file is unchanged.
    static func ifRangeMatches(_ header: String?, etag: String, lastModified: String) -> Bool {
        guard let header else { return true }
        return header == etag || header == lastModified
    }

    /// `attachment; filename="…"` plus RFC 6266 `filename*` for names that are not plain ASCII.
    public static func contentDisposition(_ name: String) -> String {
        let asciiSafe = name.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7f }
        let fallback = String(
            name.unicodeScalars.map { scalar -> Character in
                if scalar == "\"" || scalar == "\\" { return "_" }
                return scalar.value >= 0x20 && scalar.value < 0x7f ? Character(scalar) : "_"
            })
        var value = "attachment; filename=\"\(fallback)\""
        if !asciiSafe || name.contains("\"") || name.contains("\\") {
            value += "; filename*=UTF-8''" + percentEncode(name)
        }
        return value
    }

    /// RFC 5987 attr-char percent-encoding.
    static func percentEncode(_ text: String) -> String {
        PercentEncoding.encode(text, allowed: PercentEncoding.attributeCharacters)
    }

    /// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
    public static func httpDate(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int32) -> String { String(v).leftPadded(2) }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
