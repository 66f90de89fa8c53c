/// Collects a small request body (JSON from a panel) and answers with `respond(body)`.
/// Bodies over `limit` bytes fail with 413 without being kept.
public final class BufferedBody: RequestBodyHandler, @unchecked Sendable {
    private var bytes: [UInt8] = []
    private let limit: Int
    private let respond: @Sendable ([UInt8]) -> HTTPResponse

    public init(limit: Int = 64 * 1024, respond: @escaping @Sendable ([UInt8]) -> HTTPResponse) {
        self.limit = limit
        self.respond = respond
    }

    public func receive(_ chunk: UnsafeRawBufferPointer) throws {
        guard bytes.count + chunk.count <= limit else {
            throw TransferError(.tooLarge, .http, "request body over \(limit) bytes")
        }
        bytes.append(contentsOf: chunk)
    }

    public func finish(error: (any Error)?) -> HTTPResponse {
        if let error { return .error(error) }
        return respond(bytes)
    }

    public func abort() {}
}
