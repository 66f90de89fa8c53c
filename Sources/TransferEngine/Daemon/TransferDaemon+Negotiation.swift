/// Our extension for transfers between two of our own nodes (a Wings node answers neither route,
/// so a sender falls back to gzip):
/// `GET /api/transfers/capabilities` — what this node accepts;
/// `POST /api/transfers/probe` — a body that is read and thrown away, so the sender can time the link.
/// Both need a valid transfer token, like the transfer itself.
extension TransferDaemon {
    func capabilities(_ request: HTTPRequest) -> HTTPResponse {
        do {
            _ = try verifier.verify(try bearerToken(request), for: .transfer)
            return .json(200, [
                "engine": "transfer-engine", "version": .string(TransferEngineVersion.current),
                "compression": .array(StreamCompression.allCases.map { .string($0.rawValue) }),
                // Hardlink entries are recreated as links (SafeExtractor); a Wings node may not.
                "features": .array([.string("hardlinks")]),
            ])
        } catch {
            return .respond(error)
        }
    }

    func linkProbe(_ request: HTTPRequest) -> RouteResult {
        do {
            _ = try verifier.verify(try bearerToken(request), for: .transfer)
        } catch {
            return .respond(.error(error))
        }
        return .consumeBody(DiscardingBody(limit: 64 << 20))
    }
}

extension HTTPResponse {
    fileprivate static func respond(_ error: any Error) -> HTTPResponse { .error(error) }
}

/// Reads a body and keeps nothing; answers with the byte count.
final class DiscardingBody: RequestBodyHandler, @unchecked Sendable {
    private var bytes: Int64 = 0
    private let limit: Int64
    init(limit: Int64) { self.limit = limit }

    func receive(_ chunk: UnsafeRawBufferPointer) throws {
        bytes += Int64(chunk.count)
        guard bytes <= limit else { throw TransferError(.tooLarge, .http, "probe body over \(limit >> 20) MiB") }
    }

    func finish(error: (any Error)?) -> HTTPResponse {
        if let error { return .error(error) }
        return .json(200, ["bytes": .number(Double(bytes))])
    }

    func abort() {}
}
