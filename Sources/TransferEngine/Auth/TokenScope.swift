/// What a token is for. Panels from 2026 on name it in a space-separated `scope` claim; for older
/// unscoped tokens the claim set must still fit the endpoint (see `TokenVerifier`).
public enum TokenScope: String, Sendable, CaseIterable {
    case transfer
    case fileDownload = "file-download"
    case backupDownload = "backup-download"
    case fileUpload = "file-upload"
    case websocket

    /// Claims a token for this endpoint must carry.
    var requiredClaims: [String] {
        switch self {
        case .transfer: ["sub"]
        case .fileDownload: ["server_uuid", "file_path", "unique_id"]
        case .backupDownload: ["server_uuid", "backup_uuid", "unique_id"]
        case .fileUpload: ["server_uuid", "user_uuid", "unique_id"]
        case .websocket: ["server_uuid", "user_uuid", "permissions"]
        }
    }

    /// Claims that mark a token as minted for *another* endpoint. Checked for unscoped tokens, so
    /// that (for example) a websocket or download token is never accepted as an upload token.
    var foreignClaims: [String] {
        switch self {
        case .transfer: ["server_uuid", "user_uuid", "permissions", "file_path", "backup_uuid"]
        case .fileDownload: ["permissions", "backup_uuid"]
        case .backupDownload: ["permissions", "file_path"]
        case .fileUpload: ["permissions", "file_path", "backup_uuid"]
        case .websocket: ["file_path", "backup_uuid"]
        }
    }
}
