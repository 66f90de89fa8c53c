/// RFC 6455 frames: a parser for client frames (masked) and an encoder for server frames.
///
/// ```
///  bytes ─feed()─▶ header (FIN, opcode, MASK, length 7/16/64) ─▶ mask key ─▶ payload (unmasked) ─▶ Frame
/// ```
/// The parser enforces what a server must: client frames are masked (1002), no reserved bits
/// (1002), control frames ≤ 125 bytes and unfragmented (1002), payload ≤ the message limit (1009).
public struct WebSocketFrame: Sendable, Equatable {
    public enum Opcode: UInt8, Sendable {
        case continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10
        var isControl: Bool { rawValue >= 8 }
    }

    public var fin: Bool
    public var opcode: Opcode
    public var payload: [UInt8]

    public init(fin: Bool = true, opcode: Opcode, payload: [UInt8]) {
        self.fin = fin
        self.opcode = opcode
        self.payload = payload
    }

    /// A server frame (never masked, RFC 6455 §5.1).
    public func encoded() -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | opcode.rawValue]
        let n = payload.count
        if n < 126 {
            out.append(UInt8(n))
        } else if n <= 0xffff {
            out += [126, UInt8(n >> 8), UInt8(n & 0xff)]
        } else {
            out.append(127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(n) >> UInt64(shift)) & 0xff)) }
        }
        return out + payload
    }

    /// A close frame with a status code and reason.
    public static func close(_ code: UInt16, _ reason: String = "") -> WebSocketFrame {
        WebSocketFrame(opcode: .close, payload: [UInt8(code >> 8), UInt8(code & 0xff)] + Array(reason.utf8.prefix(123)))
    }
}

/// A protocol violation and the close code it calls for.
public struct WebSocketProtocolError: Error, Sendable, Equatable {
    public let code: UInt16
    public let reason: String
    public static func protocolError(_ reason: String) -> Self { .init(code: 1002, reason: reason) }
    public static func tooBig(_ reason: String) -> Self { .init(code: 1009, reason: reason) }
    public static func invalidData(_ reason: String) -> Self { .init(code: 1007, reason: reason) }
}

/// Incremental parser for frames sent by a client.
public struct WebSocketFrameParser {
    private var buffer: [UInt8] = []
    public let maxPayload: Int

    public init(maxPayload: Int) { self.maxPayload = maxPayload }

    /// Appends bytes and returns every complete frame they finish.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(WebSocketProtocolError) -> [WebSocketFrame] {
        buffer.append(contentsOf: bytes)
        var frames: [WebSocketFrame] = []
        while let (frame, used) = try parseOne() {
            frames.append(frame)
            buffer.removeFirst(used)
        }
        return frames
    }

    private func parseOne() throws(WebSocketProtocolError) -> (WebSocketFrame, Int)? {
        guard buffer.count >= 2 else { return nil }
        let b0 = buffer[0]
        let b1 = buffer[1]
        guard b0 & 0x70 == 0 else { throw .protocolError("reserved bits set") }
        guard let opcode = WebSocketFrame.Opcode(rawValue: b0 & 0x0f) else { throw .protocolError("unknown opcode") }
        let fin = b0 & 0x80 != 0
        guard b1 & 0x80 != 0 else { throw .protocolError("client frames must be masked") }
        var length = UInt64(b1 & 0x7f)
        var offset = 2
        if length == 126 {
            guard buffer.count >= 4 else { return nil }
            length = UInt64(buffer[2]) << 8 | UInt64(buffer[3])
            offset = 4
        } else if length == 127 {
            guard buffer.count >= 10 else { return nil }
            length = buffer[2..<10].reduce(0) { $0 << 8 | UInt64($1) }
            offset = 10
            guard length >> 63 == 0 else { throw .protocolError("invalid length") }
        }
        if opcode.isControl {
            guard fin else { throw .protocolError("fragmented control frame") }
            guard length <= 125 else { throw .protocolError("control frame over 125 bytes") }
        }
        guard length <= UInt64(maxPayload) else { throw .tooBig("message over \(maxPayload) bytes") }
        let total = offset + 4 + Int(length)
        guard buffer.count >= total else { return nil }
        let mask = Array(buffer[offset..<offset + 4])
        var payload = Array(buffer[(offset + 4)..<total])
        for i in payload.indices { payload[i] ^= mask[i & 3] }
        return (WebSocketFrame(fin: fin, opcode: opcode, payload: payload), total)
    }
}

/// Reassembles fragmented messages and enforces the message limit and UTF-8 for text.
public struct WebSocketMessageAssembler {
    public enum Message: Sendable, Equatable {
        case text(String)
        case binary([UInt8])
    }

    private var opcode: WebSocketFrame.Opcode?
    private var parts: [UInt8] = []
    public let maxMessage: Int

    public init(maxMessage: Int) { self.maxMessage = maxMessage }

    /// Takes a data frame; returns the message when its last fragment arrives.
    public mutating func add(_ frame: WebSocketFrame) throws(WebSocketProtocolError) -> Message? {
        switch frame.opcode {
        case .continuation:
            guard opcode != nil else { throw .protocolError("continuation without a message") }
        case .text, .binary:
            guard opcode == nil else { throw .protocolError("new message inside a fragmented one") }
            opcode = frame.opcode
        default:
            preconditionFailure("control frames are handled by the connection")
        }
        guard parts.count + frame.payload.count <= maxMessage else { throw .tooBig("message over \(maxMessage) bytes") }
        parts += frame.payload
        guard frame.fin else { return nil }
        defer {
            parts = []
            opcode = nil
        }
        if opcode == .binary { return .binary(parts) }
        guard let text = String(validating: parts, as: UTF8.self) else { throw .invalidData("text message is not UTF-8") }
        return .text(text)
    }
}
