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
    /// (which may only get the rest of the file, see `FileResponse.make(resumeOnly:)`).
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
        let isResume = FileResponse.parseRange(request.header("range") ?? "", size: Int64.max).isResumeRange
        // HEAD only looks (download managers ask before fetching): it does not spend the token.
        if request.method == "HEAD" {
            guard oneTimeTokens.isUnused(uniqueID: claims.uniqueID ?? "") || isResume else {
                throw TransferError(.notFound, .auth, "this link was already used (tokens are one-time)")
            }
            return (claims, .first)
        }
        guard
            let use = oneTimeTokens.claimUse(
                uniqueID: claims.uniqueID ?? "", expires: claims.expiresAt ?? 0, client: request.clientAddress,
                resource: resource(claims), isResume: isResume)
        else {
            throw TransferError(.notFound, .auth, "this link was already used (tokens are one-time)")
        }
        return (claims, use)
    }

    func downloadFile(_ request: HTTPRequest) -> HTTPResponse {
        do {
            let (claims, use) = try verifyQueryTokenUse(request, scope: .fileDownload) { "file:\($0.serverUUID ?? ""):\($0.filePath ?? "")" }
            let filePath = claims.filePath!
            let volume = try VolumeRoot(path: store.volumePath(claims.serverUUID!))
            let (fd, st) = try volume.openRegularFile(requestPath: filePath)
            let name = filePath.split(separator: "/").last.map(String.init) ?? "download"
            return FileResponse.make(descriptor: fd, status: st, downloadName: name, request: request, resumeOnly: use == .resume)
        } catch {
            return .error(error)
        }
    }

    func downloadBackup(_ request: HTTPRequest) -> HTTPResponse {
        do {
            let (claims, use) = try verifyQueryTokenUse(request, scope: .backupDownload) { "backup:\($0.backupUUID ?? "")" }
            guard let backup = claims.backupUUID, VolumeStore.isValidServerID(backup) else {
                throw TransferError(.notFound, .volumes, "backup not found")
            }
            let backups = try VolumeRoot(path: configuration.backupDirectory)
            let (fd, st) = try backups.openRegularFile(requestPath: "\(backup).tar.gz")
            return FileResponse.make(
                descriptor: fd, status: st, downloadName: "\(backup).tar.gz", request: request, resumeOnly: use == .resume)
        } catch let error as TransferError where error.code == .notFound && error.stage == .volumes {
            if let fault = backups.directoryFault() { return .error(fault) }
            return .error(TransferError(.notFound, .volumes, "backup not found"))
        } catch {
            return .error(error)
        }
    }
}

extension FileResponse.RangeResult {
    /// A range starting past byte 0: the client already has the beginning (a resumed download).
    var isResumeRange: Bool {
        if case .range(let r) = self { return r.lowerBound > 0 }
        return false
    }
}
