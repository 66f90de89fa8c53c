/// `POST /upload/file?token=&directory=` (GET accepted too, as the seed document names it).
extension TransferDaemon {
    func receiveUpload(_ request: HTTPRequest) -> RouteResult {
        do {
            let claims = try verifyQueryToken(request, scope: .fileUpload) { "upload:\($0.serverUUID ?? "")" }
            // Refused at once while a transfer holds the server; `UploadReceiver` checks again
            // before its files land (a transfer may start while the body arrives).
            let write = try store.beginWrite(claims.serverUUID!)
            guard let contentType = request.header("content-type"),
                let boundary = MultipartDecoder.boundary(fromContentType: contentType)
            else {
                throw TransferError(.invalidInput, .http, "expected a multipart/form-data body with a boundary")
            }
            let volume = try VolumeRoot(path: store.volumePath(claims.serverUUID!))
            let directory = request.query["directory"] ?? "/"
            let components: [[UInt8]]
            do {
                components = try VolumeRoot.components(ofRequestPath: directory)
            } catch let error as TransferError {
                throw TransferError(.invalidInput, .http, "directory: \(error.message)")
            }
            guard let resolved = volume.resolveInside(components) else {
                throw TransferError(.invalidInput, .http, "directory '\(directory)' is outside the server's files")
            }
            let display = resolved.map { String(decoding: $0, as: UTF8.self) }.joined(separator: "/")
            return .consumeBody(
                UploadReceiver(
                    volume: volume, directory: resolved, directoryDisplay: display,
                    limitBytes: Int64(configuration.uploadLimitMiB) << 20, boundary: boundary, owner: store.owner,
                    server: claims.serverUUID, write: write, temporaryDirectory: store.stagingDirectory))
        } catch {
            return .respond(.error(error))
        }
    }
}
