#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// `transferd`: the node daemon's command line. Builds the configuration (file or embedded
/// default, then flags), starts the daemon, and stops it gracefully on SIGTERM/SIGINT.
public enum DaemonCommand {
    public static let help = """
        transferd — node daemon that receives game-server volumes (Wings/Pelican wire protocol)

        usage: transferd [--config FILE] [--listen HOST:PORT] [--data DIR] [--backups DIR]
                         [--volume-owner UID:GID] [--state DIR] [--allow-unscoped-tokens]
                         [--idle-timeout SECONDS] [--log-level LEVEL]

        With no --config, runs on the embedded default: 127.0.0.1:8080, state in ./transferd-data
        (volumes/, backups/, and node-token, generated once with mode 0600).

        Options
          --config FILE            a Wings-style config.yml (token, api.host, api.port, api.ssl.*,
                                   api.upload_limit, system.data, system.backup_directory,
                                   system.user.uid/gid, remote)
          --listen HOST:PORT       listen address (port 0 picks a free port); overrides the config
          --data DIR               volumes directory (system.data)
          --backups DIR            backup directory (system.backup_directory)
          --volume-owner UID:GID   owner of every file a transfer or upload writes into a volume
                                   (system.user.uid/gid; default: the daemon's own user)
          --state DIR              embedded default's state directory (default ./transferd-data)
          --allow-unscoped-tokens  accept panel tokens without a scope claim (panels before 2026)
          --idle-timeout SECONDS   close a connection on which nothing moves this long, either
                                   way (default 120): a client that stops sending, or stops
                                   reading a download; a stalled transfer is listed as stalled
          --log-level LEVEL        debug | info (default) | warning | error
          --version                print the version

        Endpoints (DESIGN.md): POST /api/transfers; GET|HEAD /download/file, /download/backup;
        POST /upload/file; GET /api/servers/:uuid/ws (websocket); with the node token:
        POST|DELETE /api/servers/:uuid/transfer, GET /api/transfers, DELETE /api/transfers/:uuid,
        POST /api/servers/:uuid/backup, GET|DELETE /api/servers/:uuid/backup/:backup,
        POST /api/servers/:uuid/ws/deny, GET /api/system. Logs go to stderr; tokens are never logged.
        SIGTERM or SIGINT stops it: running transfers are abandoned and nothing partial is committed
        (a source still sending is answered 503, the node is shutting down: try again later).
        SIGHUP is logged and ignored (nothing is reloaded; restart to read the configuration again).
        """

    /// Parses flags into a configuration (nil when the command only printed help/version).
    public static func configuration(_ argv: [String]) throws -> DaemonConfiguration? {
        let args = try Arguments(
            argv, valued: ["config", "listen", "data", "backups", "volume-owner", "state", "log-level", "idle-timeout"],
            booleans: ["allow-unscoped-tokens", "help", "version"])
        if args.has("help") {
            print(help)
            return nil
        }
        if args.has("version") {
            print("transferd \(TransferEngineVersion.current)")
            return nil
        }
        try args.checkNoPositionals()
        if let level = args["log-level"] {
            switch level {
            case "debug": Log.minimumLevel = .debug
            case "info": Log.minimumLevel = .info
            case "warning": Log.minimumLevel = .warning
            case "error": Log.minimumLevel = .error
            default: throw Arguments.usage("--log-level must be debug, info, warning or error")
            }
        }
        // Every flag is checked before anything is created on disk.
        let listen = try args["listen"].map(parseListen)
        let idleTimeout = try args["idle-timeout"].map { text -> UInt32 in
            guard let seconds = UInt32(text), (1...86_400).contains(seconds) else {
                throw Arguments.usage("--idle-timeout must be a number of seconds from 1 to 86400")
            }
            return seconds
        }
        var config =
            try args["config"].map(DaemonConfiguration.load(file:))
            ?? DaemonConfiguration.embeddedDefault(stateDirectory: args["state"] ?? "transferd-data")
        if let listen {
            config.host = listen.host
            config.port = listen.port
        }
        if let data = args["data"] { config.dataDirectory = data }
        if let backups = args["backups"] {
            config.backupDirectory = backups
            config.backupDirectoryIsImplicit = false
        }
        if let owner = args["volume-owner"] {
            guard let parsed = FileOwner.parse(owner) else { throw Arguments.usage("--volume-owner must be UID:GID (numbers), not '\(owner)'") }
            config.volumeOwner = parsed
        }
        if args.has("allow-unscoped-tokens") { config.allowUnscopedTokens = true }
        if let seconds = idleTimeout { config.idleTimeoutSeconds = seconds }
        return config
    }

    /// `HOST:PORT`, `[v6]:PORT` or `:PORT` (all interfaces); `localhost` means 127.0.0.1.
    static func parseListen(_ listen: String) throws -> (host: String, port: UInt16) {
        guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
            throw Arguments.usage("--listen must be HOST:PORT (e.g. 127.0.0.1:8080)")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" { host = "127.0.0.1" }
        if host.isEmpty { host = "0.0.0.0" }
        var v4 = in_addr()
        var v6 = in6_addr()
        guard inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 else {
            throw Arguments.usage("--listen host must be an IP address (got '\(host)')")
        }
        return (host, port)
    }

    /// Runs the daemon until SIGTERM/SIGINT. Returns the exit status.
    public static func main(_ argv: [String]) -> Int32 {
        do {
            guard let config = try configuration(argv) else { return 0 }
            let daemon = try TransferDaemon(configuration: config)
            try daemon.start()
            // 0.0.0.0 or :: is where the daemon listens, not an address another node can use.
            let reachableURL = daemon.listensOnEveryAddress ? daemon.baseURL(host: "<this node's address>") : daemon.baseURL
            let tokenHint = config.tokenFile.map { "--secret-file \(ShellWord.quoted($0).escapingControlCharacters)" } ?? "--secret-file <file with the node token>"
            print(
                """
                transferd \(TransferEngineVersion.current) listening on \(daemon.baseURL) (config: \(config.source.escapingControlCharacters))
                  volumes: \(config.dataDirectory.escapingControlCharacters)   backups: \(config.backupDirectory.escapingControlCharacters)
                  push a volume here:  transfer-send push --volume DIR --url \(reachableURL) \(tokenHint) --server <uuid>
                  mint a token:        transfer-send token \(tokenHint) --scope transfer --server <uuid>
                """)
            fflush(nil)
            let signal = SignalWaiter.wait(onHangup: {
                Log.info("transferd: SIGHUP received: nothing to reload, still running (restart transferd to read its configuration again)")
            })
            Log.info("transferd: \(signal) received, shutting down (running transfers are abandoned, nothing partial is committed)")
            spawnThread(name: "signals") { SignalWaiter.exitOnNextSignal(program: "transferd") }
            daemon.stop()
            Log.info("transferd: stopped")
            return 0
        } catch let error as TransferError {
            let hint = error.isUsageError ? " (see 'transferd --help')" : ""
            StandardError.write("transferd: error: \(error.message.escapingControlCharacters)\(hint)\n")
            return error.isUsageError ? 64 : ErrorMapping.exitStatus(for: error.code)
        } catch {
            StandardError.write("transferd: error: \(String(describing: error).escapingControlCharacters)\n")
            return 1
        }
    }
}
