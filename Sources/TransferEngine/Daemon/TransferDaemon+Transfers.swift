#if canImport(Glibc)
import Glibc
#endif

/// `POST /api/transfers`: a source node pushes a server's volume here.
extension TransferDaemon {
    func receiveTransfer(_ request: HTTPRequest) -> RouteResult {
        do {
            let token = try bearerToken(request)
            let claims = try verifier.verify(token, for: .transfer)
            guard let server = claims.subject.flatMap(VolumeStore.canonicalServerID) else {
                throw TransferError(.forbidden, .auth, "token subject is not a server UUID")
            }
            guard let contentType = request.header("content-type"),
                let boundary = MultipartDecoder.boundary(fromContentType: contentType)
            else {
                throw TransferError(.invalidInput, .http, "expected a multipart/form-data body with a boundary")
            }
            guard store.reserve(server, waitingForCleanup: 10) else {
                throw TransferError(.conflict, .transfer, "server \(server) is already transferring")
            }
            let staging: String
            do {
                staging = try store.makeStaging(for: server)
            } catch {
                store.release(server)
                throw error
            }
            let transfer = IncomingTransfer(
                server: server, boundary: boundary, store: store, staging: staging, client: request.clientAddress,
                backups: backups)
            let early = request.earlyAnswer
            transfer.answerNow = { early?.send($0, cutOtherwise: true) }
            let total = request.header("content-length").flatMap { Int64($0) } ?? 0
            let id = registry.begin(direction: .incoming, server: server, total: total) { transfer.cancel($0) }
            events.log(server, "receiving transfer from \(request.clientAddress)")
            transfer.onProgress = { [registry] bytes in registry.progress(id, bytes: bytes) }
            transfer.onFinish = { [registry, panel, events] result in
                switch result {
                case .success(let checksum):
                    registry.progress(id, bytes: transfer.archiveBytes, total: max(total, transfer.archiveBytes))
                    events.log(server, "transfer verified (sha256 \(checksum)) and committed")
                    registry.finish(id, error: nil)
                    panel?.reportTransfer(server: server, successful: true)
                case .failure(let error):
                    registry.finish(id, error: error)
                    panel?.reportTransfer(server: server, successful: false)
                }
            }
            return .consumeBody(transfer)
        } catch {
            if let failure = error as? TransferError, failure.stage == .auth {
                Log.warning("transfer: refused request from \(request.clientAddress): \(failure.message)")
            }
            return .respond(.error(error))
        }
    }
}
