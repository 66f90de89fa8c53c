#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Everything `transferd` needs to run: read from a Wings-style `config.yml`, or the embedded
/// default (loopback, a state directory under the working directory, a generated token);
/// command-line flags override both.
public struct DaemonConfiguration: Sendable {
    public var nodeUUID: String?
    public var tokenID: String?
    /// The node token: HS256 secret for panel-minted JWTs and the bearer token of node endpoints.
    public var token: String
    public var host = "127.0.0.1"
    public var port: UInt16 = 8080
    public var tlsEnabled = false
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// Largest file accepted by `/upload/file`, in MiB.
    public var uploadLimitMiB = 100
    public var dataDirectory: String
    public var backupDirectory: String
    /// Panel URL for transfer callbacks.
    public var remote: String?
    public var allowUnscopedTokens = false
    public var allowedOrigins: [String] = []
    /// Owner of everything written into volumes (`system.user.uid`/`gid`, `--volume-owner`).
    public var volumeOwner: FileOwner?
    /// Where the configuration came from, for the start-up log.
    public var source = "embedded default"
    /// True when `system.backup_directory` was not given and Wings' default path is assumed:
    /// that directory is then only created when a backup is made.
    public var backupDirectoryIsImplicit = false
    /// The file holding the token when it was generated here (printed for operators).
    public var tokenFile: String?
    /// Seconds a connection may send nothing before it is closed (`--idle-timeout`): a transfer
    /// whose source stalls that long fails as stalled. 120, as the sender's own stall limit.
    public var idleTimeoutSeconds: UInt32 = 120

    public init(token: String, dataDirectory: String, backupDirectory: String) {
        self.token = token
        self.dataDirectory = dataDirectory
        self.backupDirectory = backupDirectory
    }

    /// Reads a Wings `config.yml`. Unknown keys are ignored, so an existing node's file works as is.
    public static func load(file path: String) throws -> DaemonConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TransferError(.notFound, .config, "cannot read config file \(path)")
        }
        let yaml: YAMLNode
        do {
            yaml = try YAMLNode.parse(String(decoding: data, as: UTF8.self))
        } catch let error as TransferError {
            throw TransferError(.invalidInput, .config, "\(path): \(error.message)")
        }
        guard let token = yaml["token"]?.string, !token.isEmpty else {
            throw TransferError(.invalidInput, .config, "\(path): 'token' is missing (the node token from the panel)")
        }
        for key in ["system.data", "system.backup_directory"] {
            guard let node = yaml[key], node != .null else { continue }  // absent or null: Wings' default
            // "" would put volumes (or backups) at the root of the file system; a list or a map
            // is a mistake Wings' own parser refuses too.
            guard let value = node.string, !value.trimmingWhitespace().isEmpty else {
                throw TransferError(.invalidInput, .config, "\(path): \(key) must be a directory path")
            }
        }
        var config = DaemonConfiguration(
            token: token,
            dataDirectory: yaml["system.data"]?.string ?? "/var/lib/pterodactyl/volumes",
            backupDirectory: yaml["system.backup_directory"]?.string ?? "/var/lib/pterodactyl/backups")
        config.source = path
        config.backupDirectoryIsImplicit = yaml["system.backup_directory"]?.string == nil
        config.nodeUUID = yaml["uuid"]?.string
        config.tokenID = yaml["token_id"]?.string
        config.host = yaml["api.host"]?.string ?? "0.0.0.0"
        if let port = yaml["api.port"] {
            guard let value = port.int, (0...65535).contains(value) else {
                throw TransferError(.invalidInput, .config, "\(path): api.port must be a port number")
            }
            config.port = UInt16(value)
        }
        config.tlsEnabled = yaml["api.ssl.enabled"]?.bool ?? false
        config.tlsCertificatePath = yaml["api.ssl.cert"]?.string
        config.tlsKeyPath = yaml["api.ssl.key"]?.string
        if let limit = yaml["api.upload_limit"] {
            // At most 1 TiB: MiB are turned into bytes, which must not overflow.
            guard let value = limit.int, value > 0, value <= 1 << 20 else {
                throw TransferError(.invalidInput, .config, "\(path): api.upload_limit must be a number of MiB from 1 to 1048576")
            }
            config.uploadLimitMiB = value
        }
        config.allowUnscopedTokens = yaml["api.allow_unscoped_tokens"]?.bool ?? false
        config.remote = yaml["remote"]?.string
        config.allowedOrigins = yaml["allowed_origins"]?.strings ?? []
        if yaml["system.user.uid"] != nil || yaml["system.user.gid"] != nil {
            guard let uid = yaml["system.user.uid"]?.int, let gid = yaml["system.user.gid"]?.int,
                let owner = FileOwner.parse("\(uid):\(gid)")
            else {
                throw TransferError(.invalidInput, .config, "\(path): system.user needs both uid and gid, as numbers")
            }
            config.volumeOwner = owner
        }
        NodeTokenFile.warnIfReadableByOthers(path, holding: "the node token")
        if token.utf8.count < NodeTokenFile.shortestUnguessable {
            // It is the HMAC key of every transfer token: a short one falls to an offline search
            // from a single token seen on the wire.
            Log.warning("config: \(path.escapingControlCharacters): the node token is only \(token.utf8.count) characters (panels generate 64); anyone who sees one signed token can search for a short one offline")
        }
        return config
    }

    /// The no-config default: loopback on port 8080, state under `stateDirectory`
    /// (`volumes/`, `backups/`, and `node-token`, generated once and kept 0600).
    public static func embeddedDefault(stateDirectory: String = "transferd-data") throws -> DaemonConfiguration {
        try FileTree.makeDirectories(stateDirectory, mode: 0o700)
        let tokenFile = stateDirectory + "/node-token"
        var config = DaemonConfiguration(
            token: try NodeTokenFile.loadOrCreate(tokenFile), dataDirectory: stateDirectory + "/volumes",
            backupDirectory: stateDirectory + "/backups")
        config.tokenFile = tokenFile
        return config
    }
}

/// A node token kept in a file readable by its owner only.
public enum NodeTokenFile {
    /// Below this many characters a node token is warned about (panels generate 64).
    static let shortestUnguessable = 32

    /// Reads the token in `path`, creating it (64 random characters, mode 0600) if missing.
    public static func loadOrCreate(_ path: String) throws -> String {
        if let existing = FileManager.default.contents(atPath: path) {
            let token = String(decoding: existing, as: UTF8.self).trimmingWhitespace()
            guard !token.isEmpty else { throw TransferError(.invalidInput, .config, "token file \(path) is empty") }
            warnIfReadableByOthers(path, holding: "the node token")
            return token
        }
        let token = SecureRandom.alphanumeric(64)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TransferError.system("open", path: path, stage: .config) }
        defer { close(fd) }
        let bytes = Array((token + "\n").utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw TransferError.system("write", path: path, stage: .config) }
        Log.info("config: generated a node token in \(path) (mode 0600)")
        return token
    }

    /// Anyone who can read the node token can mint transfer tokens for every server here.
    static func warnIfReadableByOthers(_ path: String, holding what: String) {
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & 0o077 != 0 {
            let mode = String(st.st_mode & 0o777, radix: 8)
            Log.warning("config: \(path.escapingControlCharacters) holds \(what) and has mode \(mode) (readable by other users); chmod 600 it")
        }
    }
}
