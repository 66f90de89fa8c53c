#if canImport(Glibc)
import Glibc
#endif
private import CTransferShims

/// Streaming `multipart/form-data` parser (RFC 7578 / RFC 2046 §5.1) for bodies of any size.
///
/// ```
///  chunks ──feed()──▶ [preamble] ─delimiter─▶ [headers] ─CRLFCRLF─▶ [data …] ─delimiter─▶ … ─close-delimiter─▶ [epilogue]
///                         events:            .partBegin(headers)   .partData(bytes)  .partEnd
/// ```
/// Gives the same events (up to how data is split) for any chunking of the same body: a delimiter
/// split across chunks is held back in a small carry-over buffer (at most the delimiter's length,
/// or one header block). Part data is handed out as buffers valid only during the callback.
public struct MultipartDecoder {
    public enum Event {
        case partBegin(PartHeaders)
        case partData(UnsafeRawBufferPointer)
        case partEnd
    }

    public struct Limits: Sendable {
        /// Largest header block of one part.
        public var maxHeaderBytes = 16 * 1024
        /// Most parts in one body.
        public var maxParts = 10_000
        public init() {}
    }

    private enum State { case preamble, afterDelimiter, headers, body, epilogue }

    /// `CRLF--boundary`: what ends every part (RFC 2046: the CRLF belongs to the delimiter).
    private let delimiter: [UInt8]
    private let limits: Limits
    private var state = State.preamble
    private var carry: [UInt8]
    private var parts = 0

    /// True once the closing delimiter has been read.
    public var isComplete: Bool { state == .epilogue }

    public init(boundary: String, limits: Limits = Limits()) {
        delimiter = Array("\r\n--\(boundary)".utf8)
        self.limits = limits
        // A body may start with the delimiter minus its CRLF; a virtual CRLF makes that case uniform.
        carry = [0x0d, 0x0a]
    }

    /// Parses the next bytes of the body, calling `handle` for each event.
    public mutating func feed(_ input: UnsafeRawBufferPointer, _ handle: (Event) throws -> Void) throws {
        if state == .epilogue || input.isEmpty { return }
        if carry.isEmpty {
            try process(input, handle)
        } else {
            var working = carry
            working.append(contentsOf: input)
            carry = []
            try working.withUnsafeBytes { try process($0, handle) }
        }
    }

    public mutating func feed(_ input: [UInt8], _ handle: (Event) throws -> Void) throws {
        try input.withUnsafeBytes { try feed($0, handle) }
    }

    /// Call at the end of the body: throws if the closing delimiter never came.
    public func finish() throws {
        guard state == .epilogue else {
            throw TransferError(.invalidInput, .multipart, "multipart body ended before its closing boundary (truncated upload?)")
        }
    }

    private mutating func process(_ buf: UnsafeRawBufferPointer, _ handle: (Event) throws -> Void) throws {
        var pos = 0
        while pos < buf.count {
            switch state {
            case .preamble, .body:
                if let found = Self.search(delimiter, in: buf, from: pos) {
                    if state == .body {
                        if found > pos { try handle(.partData(UnsafeRawBufferPointer(rebasing: buf[pos..<found]))) }
                        try handle(.partEnd)
                    }
                    pos = found + delimiter.count
                    state = .afterDelimiter
                } else {
                    let keep = Self.partialMatchLength(delimiter, at: buf, from: pos)
                    let end = buf.count - keep
                    if state == .body, end > pos { try handle(.partData(UnsafeRawBufferPointer(rebasing: buf[pos..<end]))) }
                    carry = Array(buf[end...])
                    return
                }
            case .afterDelimiter:
                // Either "--" (close delimiter) or optional transport padding then CRLF.
                var i = pos
                if buf.count - i < 2 {
                    carry = Array(buf[pos...])
                    return
                }
                if buf[i] == 0x2d && buf[i + 1] == 0x2d {
                    state = .epilogue
                    return
                }
                while i < buf.count, buf[i] == 0x20 || buf[i] == 0x09 { i += 1 }
                // Checked whatever the chunking, so the same body always gives the same answer.
                guard i - pos <= 256 else { throw malformed("too much padding after a boundary") }
                if buf.count - i < 2 {
                    carry = Array(buf[pos...])
                    return
                }
                guard buf[i] == 0x0d && buf[i + 1] == 0x0a else { throw malformed("malformed boundary line") }
                parts += 1
                guard parts <= limits.maxParts else {
                    throw TransferError(.tooLarge, .multipart, "too many parts (limit \(limits.maxParts))")
                }
                // Keep the CRLF: the header block is searched as CRLF headers CRLF CRLF, so a part
                // with no headers at all is simply CRLF CRLF.
                pos = i
                state = .headers
            case .headers:
                let terminator: [UInt8] = [0x0d, 0x0a, 0x0d, 0x0a]
                guard let found = Self.search(terminator, in: buf, from: pos) else {
                    // Up to 3 bytes of an unfinished terminator may be buffered beyond a block that fits.
                    guard buf.count - pos <= limits.maxHeaderBytes + 3 else {
                        throw TransferError(.tooLarge, .multipart, "part headers exceed \(limits.maxHeaderBytes) bytes")
                    }
                    carry = Array(buf[pos...])
                    return
                }
                guard found - pos <= limits.maxHeaderBytes else {
                    throw TransferError(.tooLarge, .multipart, "part headers exceed \(limits.maxHeaderBytes) bytes")
                }
                let block = Array(buf[(pos + 2)..<found + 2])
                try handle(.partBegin(try PartHeaders.parse(block)))
                pos = found + 4
                state = .body
            case .epilogue:
                return
            }
        }
    }

    private func malformed(_ message: String) -> TransferError {
        TransferError(.invalidInput, .multipart, message)
    }

    /// First index of `needle` in `haystack[from...]` (glibc `memmem`: two-way search).
    static func search(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard haystack.count - from >= needle.count, let base = haystack.baseAddress else { return nil }
        return needle.withUnsafeBytes { n -> Int? in
            guard let hit = tx_memmem(base + from, haystack.count - from, n.baseAddress, n.count) else { return nil }
            return base.distance(to: UnsafeRawPointer(hit))
        }
    }

    /// Length of the longest suffix of `buf[from...]` that is a proper prefix of `needle`: bytes that
    /// may be the start of a delimiter completed by the next chunk.
    static func partialMatchLength(_ needle: [UInt8], at buf: UnsafeRawBufferPointer, from: Int) -> Int {
        let available = buf.count - from
        var k = min(needle.count - 1, available)
        while k > 0 {
            let start = buf.count - k
            if buf[start] == needle[0] {
                var match = true
                for j in 1..<k where buf[start + j] != needle[j] {
                    match = false
                    break
                }
                if match { return k }
            }
            k -= 1
        }
        return 0
    }

    /// The boundary of a `multipart/form-data` Content-Type header value, or nil if it is not one.
    public static func boundary(fromContentType value: String) -> String? {
        let params = HeaderParameters.parse(value)
        guard params.type == "multipart/form-data", let boundary = params.value(for: "boundary"),
            (1...200).contains(boundary.utf8.count), !boundary.contains("\r"), !boundary.contains("\n")
        else { return nil }
        return boundary
    }
}
