#if canImport(Glibc)
import Glibc
#endif

/// `GET|HEAD /download/file?token=` and `GET|HEAD /download/backup?token=`: signed one-time URLs
/// a panel hands to users. Files are served from their descriptor (sendfile) with ranges.
extension TransferDaemon {
    /// Verifies a `?token=` JWT for `scope`, checks its server exists here, and spends its
    /// `unique_id` (a replay gets 404, as in Wings).
    func verifyQueryToken(_ request: HTTPRequest, scope: TokenScope, resource: (TokenClaims) -> String) throws -> TokenClaims {
        try verifyQueryTokenUse(request, scope: scope, resource: resource).claims
    }

    /// As `verifyQueryToken`, and says whether this was the token's first use or an allowed resume
    /// (which may only get the rest of the file, see `FileResponse.make(resumeOnly:)`). A GET's use
    /// must be ended with `endingUse` on the response that answers it.
    func verifyQueryTokenUse(_ request: HTTPRequest, scope: TokenScope, resource: (TokenClaims) -> String) throws
        -> (claims: TokenClaims, use: OneTimeTokenStore.Claim)
    {
        guard let token = request.query["token"], !token.isEmpty else {
            throw TransferError(.unauthorized, .auth, "missing token query parameter")
        }
        let claims = try verifier.verify(token, for: scope)
        guard let server = claims.serverUUID.flatMap(VolumeStore.canonicalServerID) else {
            throw TransferError(.notFound, .volumes, "server not found on this node")
        }
        // Before the existence check: a server still arriving has no volume yet, and is busy, not missing.
        if scope == .fileUpload, store.isTransferring(server) { throw VolumeStore.transferring(server) }
        try store.requireVolume(server)
        // Only downloads resume; a Range on an upload means nothing.
        let downloads = scope == .fileDownload || scope == .backupDownload
        let isResume = downloads && FileResponse.resumeStart(request.header("range") ?? "") != nil
        let uniqueID = claims.uniqueID ?? ""
        // HEAD only looks (download managers ask before fetching): it does not spend the token.
        if request.method == "HEAD" {
            guard oneTimeTokens.isUnused(uniqueID: uniqueID) || (isResume && oneTimeTokens.isResumable(uniqueID: uniqueID))
            else { throw Self.spentLink }
            return (claims, .first)
        }
        // A resume may arrive before this node noticed that the download it continues was cut:
        // wait a moment for that one to end.
        let deadline = MonotonicClock.now() + 2
        while true {
            switch oneTimeTokens.attempt(
                uniqueID: uniqueID, expires: claims.expiresAt ?? 0, client: request.clientAddress,
                resource: resource(claims), isResume: isResume)
            {
            case .success(let use):
                return (claims, use)
            case .failure(.spent):
                throw Self.spentLink
            case .failure(.busy):
                guard MonotonicClock.now() < deadline else {
                    throw TransferError(
                        .conflict, .auth, "a download with this link is still in progress; resume once it has ended")
                }
                usleep(50_000)
            }
        }
    }

    static var spentLink: TransferError {
        TransferError(.notFound, .auth, "this link was already used (tokens are one-time)")
    }

    /// Ends the token use `response` answers once it has been sent: a file sent through its last
    /// byte spends the token for good (no resume after a complete download).
    func endingUse(of claims: TokenClaims, with response: HTTPResponse, fileSize: Int64?) -> HTTPResponse {
        var response = response
        let reachesEnd: Bool
        if case .file(_, let offset, let length) = response.body, let fileSize {
            reachesEnd = offset + length == fileSize
        } else {
            reachesEnd = false
        }
        let tokens = oneTimeTokens
        let uniqueID = claims.uniqueID ?? ""
        response.onCompletion = { sentWhole in tokens.end(uniqueID: uniqueID, deliveredToEnd: sentWhole && reachesEnd) }
        return response
    }

    func downloadFile(_ request: HTTPRequest) -> HTTPResponse {
        download(request, scope: .fileDownload, resource: { "file:\($0.serverUUID ?? ""):\($0.filePath ?? "")" }) { claims in
            let filePath = claims.filePath!
            let volume = try VolumeRoot(path: store.volumePath(claims.serverUUID!))
            let (fd, st) = try volume.openRegularFile(requestPath: filePath)
            return (fd, st, filePath.split(separator: "/").last.map(String.init) ?? "download")
        }
    }

    func downloadBackup(_ request: HTTPRequest) -> HTTPResponse {
        download(request, scope: .backupDownload, resource: { "backup:\($0.backupUUID ?? "")" }) { claims in
            guard let backup = claims.backupUUID, VolumeStore.isValidServerID(backup) else {
                throw TransferError(.notFound, .volumes, "backup not found")
            }
            do {
                let directory = try VolumeRoot(path: configuration.backupDirectory)
                let (fd, st) = try directory.openRegularFile(requestPath: "\(backup).tar.gz")
                return (fd, st, "\(backup).tar.gz")
            } catch let error as TransferError where error.code == .notFound && error.stage == .volumes {
                throw backups.directoryFault() ?? TransferError(.notFound, .volumes, "backup not found")
            }
        }
    }

    /// One download through a one-time link: claim the use, open the file, answer with it, and end
    /// the use once the answer has been sent (a HEAD only looks and claims nothing).
    private func download(
        _ request: HTTPRequest, scope: TokenScope, resource: (TokenClaims) -> String,
        open: (TokenClaims) throws -> (descriptor: Int32, status: stat, name: String)
    ) -> HTTPResponse {
        let claimed: (claims: TokenClaims, use: OneTimeTokenStore.Claim)
        do {
            claimed = try verifyQueryTokenUse(request, scope: scope, resource: resource)
        } catch {
            return .error(error)
        }
        var size: Int64?
        let response: HTTPResponse
        do {
            let file = try open(claimed.claims)
            size = Int64(file.status.st_size)
            response = FileResponse.make(
                descriptor: file.descriptor, status: file.status, downloadName: file.name, request: request,
                resumeOnly: claimed.use == .resume)
        } catch {
            response = .error(error)
        }
        return request.method == "HEAD" ? response : endingUse(of: claimed.claims, with: response, fileSize: size)
    }
}

