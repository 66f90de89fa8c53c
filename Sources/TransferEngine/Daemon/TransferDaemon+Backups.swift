/// Node-token endpoints for local backups:
/// `POST /api/servers/:uuid/backup` `{"uuid": "<backup>"}` (202; `?wait=1` answers when done),
/// `GET /api/servers/:uuid/backup/:backup` (state, size, checksum), `DELETE …/:backup`.
extension TransferDaemon {
    func createBackup(_ request: HTTPRequest, server: String) -> RouteResult {
        do {
            try requireNodeToken(request, server: server)
        } catch {
            return .respond(.error(error))
        }
        let wait = ["1", "true", "yes"].contains(request.query["wait"] ?? "")
        return .consumeBody(
            BufferedBody { [backups] body in
                do {
                    guard let json = try? JSONValue.parse(body), let backup = json["uuid"]?.stringValue else {
                        throw TransferError(.invalidInput, .http, "expected a JSON body {\"uuid\": \"<backup uuid>\"}")
                    }
                    guard VolumeStore.isValidServerID(backup) else {
                        throw TransferError(.invalidInput, .http, "backup uuid must be a UUID")
                    }
                    let done = try backups.start(server: server, backup: backup)
                    if wait { done.wait() }
                    return Self.backupResponse(backup, backups.state(backup), status: wait ? 200 : 202)
                } catch {
                    return .error(error)
                }
            })
    }

    func backupStatus(_ request: HTTPRequest, server: String, backup: String) -> HTTPResponse {
        do {
            try requireNodeToken(request)
            // Before the state this daemon remembers: a backup whose directory is gone is not "completed".
            if let fault = backups.directoryFault() { throw fault }
            guard VolumeStore.isValidServerID(backup), let state = backups.state(backup) else {
                throw TransferError(.notFound, .volumes, "backup not found")
            }
            if request.method == "DELETE" {
                try backups.delete(backup)
                return .json(200, ["uuid": .string(backup), "deleted": true])
            }
            return Self.backupResponse(backup, state, status: 200)
        } catch {
            return .error(error)
        }
    }

    static func backupResponse(_ backup: String, _ state: BackupService.State?, status: Int) -> HTTPResponse {
        switch state {
        case .completed(let size, let checksum)?:
            return .json(status, [
                "uuid": .string(backup), "state": "completed", "size": .number(Double(size)),
                "checksum": .string(checksum), "checksum_type": "sha256",
            ])
        case .failed(let message)?:
            return .json(status == 202 ? 202 : 500, ["uuid": .string(backup), "state": "failed", "error": .string(message)])
        default:
            return .json(status, ["uuid": .string(backup), "state": "running"])
        }
    }
}
