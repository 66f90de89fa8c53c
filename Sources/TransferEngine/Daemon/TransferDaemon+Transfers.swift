/// `POST /api/transfers`: a source node pushes a server's volume here.
extension TransferDaemon {
    func receiveTransfer(_ request: HTTPRequest) -> RouteResult {
        do {
            let token = try bearerToken(request)
            let claims = try verifier.verify(token, for: .transfer)
            guard let server = claims.subject, VolumeStore.isValidServerID(server) else {
                throw TransferError(.forbidden, .auth, "token subject is not a server UUID")
            }
            guard let contentType = request.header("content-type"),
                let boundary = MultipartDecoder.boundary(fromContentType: contentType)
            else {
                throw TransferError(.invalidInput, .http, "expected a multipart/form-data body with a boundary")
            }
            guard store.reserve(server) else {
                throw TransferError(.conflict, .transfer, "server \(server) is already transferring")
            }
            let staging: String
            do {
                staging = try store.makeStaging(for: server)
            } catch {
                store.release(server)
                throw error
            }
            return .consumeBody(
                IncomingTransfer(server: server, boundary: boundary, store: store, staging: staging, client: request.clientAddress))
        } catch {
            if let failure = error as? TransferError, failure.stage == .auth {
                Log.warning("transfer: refused request from \(request.clientAddress): \(failure.message)")
            }
            return .respond(.error(error))
        }
    }
}
