#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// `transfer-send`: push a volume to a node, mint tokens. Parsing, validation and output live
/// here so they can be tested; the executable only calls `main`.
public enum SendCommand {
    public static let usage = """
        usage: transfer-send push --volume DIR --url URL (--token JWT | --secret S | --secret-file F) [--server UUID]
               transfer-send token (--secret S | --secret-file F) --scope SCOPE --server UUID [--ttl 15m]
               transfer-send download --url URL (--token JWT | --secret-file F --server UUID) (--file PATH | --backup UUID)
               transfer-send upload --url URL (--token JWT | --secret-file F --server UUID --user UUID) FILE...
               transfer-send evacuate --data DIR --url URL (--secret S | --secret-file F) [--servers UUID,...] [--parallel N]
               transfer-send bench [--corpus mixed,large,tiny] [--scale S] [--runs N] [--modes gzip,auto] [--json F] [--chart F.svg]
        """

    public static let help = """
        transfer-send — move game-server volumes between nodes (Wings/Pelican wire protocol)

        \(usage)

        Commands
          push     stream a volume to a node's POST /api/transfers as a tar archive + SHA-256 (gzip
                   for a Wings node; zstd or plain tar when both ends are ours); the destination
                   commits it only after the checksum matches. Exit 0 only when the node confirmed:
                   ours answers the SHA-256 it computed, which must be the one sent ("verified"); a
                   Wings node answers an empty 200 after checking the checksum it was sent
                   ("accepted", --json "confirmed_checksum": false). Any other 200 (a web page, a
                   stub) is no confirmation: exit 69. The volume goes to the server the token names.
          token    mint a JWT signed with a node's token, shaped like a panel's, with a scope.
          download fetch a file of a server's volume (/download/file) or a backup (/download/backup)
                   into --output (default: its own name); --resume continues a partial download.
          upload   send files into a server's volume (/upload/file), into --directory (default /).
                   A file named twice (a.txt a.txt, or the same file by another path) is sent
                   once, with a note; two different files with the same name are refused (64).
          evacuate push every server volume of this node to another node, several at once, each
                   verified on its own; one line per server and a summary
                   (`transfer-send evacuate --help` for its options).
          bench    measure verified transfers on this machine next to baselines in the same run
                   (`transfer-send bench --help` for its options).

        push options
          --volume DIR        the server's volume directory to send
          --url URL           destination node (http(s)://host:port) or its full /api/transfers URL
                              (no query string or fragment)
          --token JWT         transfer token from the panel ("Bearer " prefix optional); its sub claim
                              is the server whose volume the destination replaces
          --secret S          or mint one here with the destination's node token
          --secret-file F     ... read from a file (keeps it out of `ps`): any readable file, also
                              /dev/stdin, a pipe (<(pass show node)) or a FIFO; at most 64 KiB.
                              --token, --secret and --secret-file exclude each other (64)
          --server UUID       the server's UUID (needed when minting; defaults to the volume
                              directory's name when that is a UUID). With --token, a --server (or,
                              without it, a UUID-named volume directory) that is not the token's
                              server is refused (exit 64): pass --server <the token's sub> to move
                              the volume to that server on purpose
          --insecure          skip TLS certificate checks (self-signed test nodes only)
          --cacert FILE       trust this CA certificate for TLS (not with --insecure)
          --compression MODE  auto (default) | gzip | zstd | none. gzip is what Wings speaks; auto
                              asks the destination and, when it is one of ours, measures the link
                              and picks zstd or none; a node that does not answer gets gzip
          --json              print the result as one JSON object on stdout (entries left out,
                              a FIFO or a link out of the volume: "skipped" {"count", "entries":
                              [{"path", "reason"}] (the first 20)} and "warnings"); a failure too:
                              {"ok": false, "success": false, "error", "exit_status", "http_status"
                              (when a node answered), and what was known: "url", "server", ...}
          --quiet             no progress bar

        download / upload options
          --url URL           the node (http(s)://host:port; its /api/transfers URL works too)
          --token JWT         a signed-URL token from the panel, or --secret/--secret-file + --server to mint one
                              (with --token, a --server or --user other than the token's is refused)
          --file PATH         (download) the file inside the volume, e.g. /logs/latest.log
          --backup UUID       (download) a backup instead of a file
          --output PATH       (download) where to write it (into it, if a directory); the name appears only when complete
          --resume            (download) continue FILE.part from where it stopped, if the file is unchanged
                              (If-Range with the validator kept in FILE.part.etag; a changed file is
                              fetched again from the start; a FILE.part without one is refused)
          --user UUID         (upload) the panel user the token is for (default: a random UUID)
          --directory DIR     (upload) target directory inside the volume (default /)
          --insecure, --quiet as for push

        token options
          --scope SCOPE       transfer | file-download | backup-download | file-upload | websocket
          --server UUID       the server (sub for transfer, server_uuid for the others)
          --user UUID         user_uuid (file-upload, websocket)
          --file PATH         file_path (file-download only)
          --backup UUID       backup_uuid (backup-download only)
          --permissions LIST  comma-separated websocket permissions (default websocket.connect; websocket only)
          --ttl DURATION      lifetime, with its unit: 90s, 15m (default), 2h, 1d (at most 365d);
                              a bare number is refused, not taken as seconds
          --no-scope          leave out the scope claim, as panels before 2026 do
          --issuer URL        iss claim (default transfer-send)
          --audience URL      aud claim

        Exit status: 0 ok, 64 usage (a token for another server, options that exclude each other
        included), 65 rejected data (or a node confirming a checksum other than the one sent), 66
        not found (the node answered 404: no such file, backup or server, or a spent one-time link;
        or a volume, FILE or secret file that is not there), 69 destination unreachable, HTTP
        501-505, or an answer that is not a node's (a 200 that is no transfer confirmation), 73
        the destination already exists and is not replaced (an upload onto a directory's name: a
        409 saying so), 74 I/O error (here, or the node's: a 500 such as a full disk; or standard
        output could not be written), 75 busy, try again later (another 409: the server is
        transferring; or a 503 "unavailable": the node is shutting down), 77 token refused, 130
        cancelled, 1 other. Ctrl-C once the whole archive is sent waits for the destination's answer
        (it may be committing); a second Ctrl-C stops waiting, outcome unknown.
        """

    /// Runs the command line and returns the exit status.
    ///
    /// Whatever the command printed must have reached standard output: if it could not be
    /// written (`> /dev/full`, a closed descriptor), a command that succeeded exits 74 with one
    /// line saying so, instead of 0 with its result lost.
    public static func main(_ argv: [String]) -> Int32 {
        let status = run(argv)
        guard let failure = StandardOutput.flushError() else { return status }
        // A command that failed has said why already; its own status tells more than the lost output.
        guard status == 0 else { return status }
        StandardError.write("transfer-send: error: cannot write standard output: \(failure)\n")
        return 74
    }

    static func run(_ argv: [String]) -> Int32 {
        guard let command = argv.first else {
            StandardError.write("\(usage)\nRun 'transfer-send --help' for all options.\n")
            return 64
        }
        let rest = Array(argv.dropFirst())
        let failure = FailureReport(command: command, json: jsonCommands.contains(command) && asksForJSON(rest))
        do {
            switch command {
            case "push": return try push(rest, failure)
            case "token": return try token(rest)
            case "download": return try download(rest)
            case "upload": return try upload(rest)
            case "evacuate": return try evacuate(rest)
            case "bench": return try bench(rest)
            case "--help", "-h", "help":
                print(help)
                return 0
            case "--version":
                print("transfer-send \(TransferEngineVersion.current)")
                return 0
            default:
                throw Arguments.usage("unknown command '\(command)'")
            }
        } catch let error as TransferError {
            return report(error, failure)
        } catch {
            return report(TransferError(.internal, .cli, "\(error)"), failure)
        }
    }

    /// Parses a subcommand's options; nil when `--help` was asked for (and printed). Positionals
    /// are a usage error unless the command takes them (`positionals: true`). Options that
    /// contradict each other (`conflictingOptions`) are a usage error too.
    static func commandArguments(
        _ argv: [String], valued: Set<String>, booleans: Set<String>, positionals: Bool = false, help text: String
    ) throws -> Arguments? {
        let args = try Arguments(argv, valued: valued, booleans: booleans.union(["help"]))
        if args.has("help") {
            print(text)
            return nil
        }
        if !positionals { try args.checkNoPositionals() }
        for (first, second, why) in conflictingOptions {
            let given = { (name: String) in args[name] != nil || args.has(name) }
            if given(first) && given(second) {
                throw Arguments.usage("--\(first) and --\(second) cannot go together: \(why)")
            }
        }
        return args
    }

    /// Pairs of options of which one would be silently ignored if both were given.
    static let conflictingOptions: [(String, String, String)] = [
        ("token", "secret", "the token would be used and the node token ignored; give one of them"),
        ("token", "secret-file", "the token would be used and the node token ignored; give one of them"),
        ("secret", "secret-file", "give the node token once"),
        ("insecure", "cacert", "--insecure skips the certificate check that --cacert is for"),
    ]

    /// Prints one clear line, whatever went wrong (a usage error points at --help in the same
    /// line), and picks the exit status.
    static func report(_ error: TransferError) -> Int32 {
        let hint = error.isUsageError ? " (see 'transfer-send --help')" : ""
        StandardError.write("transfer-send: error: \(error.message.escapingControlCharacters)\(hint)\n")
        return exitStatus(for: error)
    }

    /// `report`, and with `--json` the failure as one JSON object on standard output too
    /// (`FailureReport.json(for:)`), so a script reading the output always gets an object.
    static func report(_ error: TransferError, _ failure: FailureReport) -> Int32 {
        if failure.json { print(failure.json(for: error)) }
        return report(error)
    }

    /// The exit status for an error: 64 for usage errors, otherwise by its code (`ErrorMapping`).
    static func exitStatus(for error: TransferError) -> Int32 {
        error.isUsageError ? 64 : ErrorMapping.exitStatus(for: error.code)
    }

    /// Subcommands whose `--json` flag puts the outcome on standard output (bench's names a file).
    static let jsonCommands: Set<String> = ["push", "evacuate"]

    /// Whether `--json` is among the options (before a `--`): known even when the command line
    /// fails to parse, so a usage error is reported as JSON too.
    static func asksForJSON(_ argv: [String]) -> Bool {
        argv.prefix(while: { $0 != "--" }).contains("--json")
    }

    /// A token as given on the command line, bare: panels hand it over with a "Bearer " prefix,
    /// and a pasted one may end in a newline, so both are dropped. It goes into an HTTP header or
    /// query, so spaces and control characters left inside (which could add headers of their
    /// own) are refused.
    static func validatedToken(_ text: String) throws -> String {
        var token = text.trimmingWhitespace()
        if token.prefix(7).lowercased() == "bearer " { token = token.dropFirst(7).trimmingWhitespace() }
        guard !token.isEmpty, token.lowercased() != "bearer", token.isSingleHeaderWord else {
            throw Arguments.usage("--token must be a JWT (no spaces or control characters)")
        }
        return token
    }

    /// An http(s) URL with a host and a valid port, or a usage error.
    static func validatedURL(_ text: String) throws -> String {
        guard text.hasPrefix("http://") || text.hasPrefix("https://") else {
            throw Arguments.usage("--url must start with http:// or https://")
        }
        // Endpoint paths are appended to the URL (`/api/transfers`, `/download/file?token=`): after
        // a query or a fragment they would land in it and the request would go to the wrong place.
        guard !text.contains("?"), !text.contains("#") else {
            throw Arguments.usage(
                "--url '\(text.escapingControlCharacters)' has a query string or fragment ('?' or '#'); give the node as "
                    + "http(s)://host[:port] (a path prefix is fine)")
        }
        // Spaces and control characters are not URL characters (curl would refuse them later,
        // as "rejected data"); a port too long for URLComponents comes back as no port at all.
        let authority = text.drop(while: { $0 != "/" }).dropFirst(2).prefix(while: { !"/?#".contains($0) })
        let portText = authority.last == "]" ? "" : authority.split(separator: ":", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        guard text.isSingleHeaderWord,
            let parts = URLComponents(string: text), let host = parts.host, !host.isEmpty,
            parts.port.map({ (1...65535).contains($0) }) ?? (authority.contains(":") && !authority.hasSuffix("]") ? portText.isEmpty : true)
        else { throw Arguments.usage("--url '\(text.escapingControlCharacters)' is not a valid URL (http(s)://host[:port])") }
        return text
    }

    /// The node token given with `--secret` or `--secret-file` (read with `SecretFile`), or nil
    /// when neither was given.
    static func secret(_ args: Arguments) throws -> [UInt8]? {
        if let secret = args["secret"] { return Array(secret.utf8) }
        if let file = args["secret-file"] { return try SecretFile.read(file) }
        return nil
    }

    // MARK: - push

    static func push(
        _ argv: [String], _ failure: FailureReport = FailureReport(command: "push", json: false)
    ) throws -> Int32 {
        guard let args = try commandArguments(
            argv, valued: ["volume", "url", "token", "secret", "secret-file", "server", "cacert", "compression"],
            booleans: ["insecure", "json", "quiet"], help: help)
        else { return 0 }
        failure.json = args.has("json")
        let volume = try args.required("volume")
        failure.known["volume"] = .string(volume)
        let url = try validatedURL(try args.required("url"))
        failure.known["url"] = .string(OutgoingTransfer.transfersURL(url))
        guard FileTree.exists(volume) else { throw TransferError(.notFound, .cli, "volume \(volume) does not exist") }
        guard FileTree.isDirectory(volume) else { throw TransferError(.invalidInput, .cli, "volume \(volume) is not a directory") }
        if let given = args["server"], !VolumeStore.isValidServerID(given) {
            throw Arguments.usage("--server '\(given)' is not a server UUID (8-4-4-4-12 hex digits)")
        }
        let token: String
        if let given = args["token"] {
            token = try validatedToken(given)
        } else if let secret = try secret(args) {
            let server = args["server"] ?? Self.directoryName(volume)
            guard VolumeStore.isValidServerID(server) else {
                throw Arguments.usage("--server UUID is required to mint a token (the volume directory is not named by a UUID)")
            }
            token = TokenMinter(secret: secret, audience: Redaction.removingCredentials(url))
                .mint(scope: .transfer, claims: ["sub": .string(server)])
        } else {
            throw Arguments.usage("give --token, or --secret/--secret-file to mint one")
        }
        let tokenServer = try destinationServer(token: token, server: args["server"], volume: volume)
        if let tokenServer { failure.known["server"] = .string(tokenServer) }
        let modeName = args["compression"] ?? "auto"
        guard let mode = CompressionNegotiator.Mode(rawValue: modeName) else {
            throw Arguments.usage("--compression must be auto, gzip, zstd or none")
        }
        var options = OutgoingTransfer.Options(volume: volume, url: url, token: token)
        options.insecureTLS = args.has("insecure")
        options.caCertificate = args["cacert"]
        let choice = try CompressionNegotiator.choose(
            mode: mode, url: url, token: token, volume: volume, insecureTLS: options.insecureTLS,
            caCertificate: options.caCertificate)
        options.apply(choice)
        failure.known["compression"] = .string(choice.compression.rawValue)
        if !args.has("json") && !args.has("quiet") {
            StandardError.write("transfer-send: compression \(choice.compression.rawValue) (\(choice.reason))\n")
        }
        let transfer = OutgoingTransfer(options: options)
        let bar = ProgressBar(enabled: !args.has("quiet") && !args.has("json") && isatty(2) == 1)
        if bar.enabled {
            transfer.onProgress = { progress in
                bar.update(done: progress.volumeBytes, total: progress.totalBytes, seconds: progress.seconds)
            }
        }
        let interrupted = SignalBox()
        SignalWaiter.onSignal(program: "transfer-send", again: { transfer.wholeArchiveSent ? Self.outcomeUnknown : nil }) { name in
            interrupted.name = name
            if !transfer.cancel() { StandardError.write(Self.waitingForTheAnswer(name)) }
        }
        let result: OutgoingTransfer.Result
        do {
            result = try transfer.run()
        } catch let error as TransferError where error.code == .cancelled {
            bar.finish()
            throw TransferError(.cancelled, .cli, "cancelled (\(interrupted.name ?? "interrupted")): nothing was committed at the destination")
        } catch {
            bar.finish()
            throw error
        }
        bar.finish()
        let ratio = result.volumeBytes > 0 ? Double(result.archiveBytes) / Double(result.volumeBytes) : 0
        let server = result.server ?? tokenServer
        let confirmed = result.confirmation == .checksumEchoed
        if args.has("json") {
            let json: JSONValue = [
                "ok": true, "success": true, "server": server.map(JSONValue.string) ?? .null,
                "checksum": .string(result.checksum), "url": .string(OutgoingTransfer.transfersURL(url)),
                "confirmed_checksum": .bool(confirmed), "volume_bytes": .number(Double(result.volumeBytes)),
                "apparent_bytes": .number(Double(result.apparentBytes)),
                "archive_bytes": .number(Double(result.archiveBytes)), "files": .number(Double(result.files)),
                "seconds": .number(result.seconds), "compression": .string(choice.compression.rawValue),
                "mb_per_second": .number(result.seconds > 0 ? Double(result.volumeBytes) / result.seconds / 1e6 : 0),
                // This process's own high-water mark (a parent's wait4 ru_maxrss can report the parent's).
                "peak_rss_kib": .number(Double(ChildProcess.peakRSSKiB(of: getpid()))),
                // Entries left out (each also a WARN line on stderr): ok, but not the whole volume.
                "skipped": result.skippedJSON, "warnings": .array(result.skipWarnings.map { .string($0) }),
            ]
            print(json)
        } else {
            // Holes in sparse files are not read or sent: say how big the files look, too.
            let holes = result.apparentBytes > result.volumeBytes ? " of data (\(ByteCount.format(result.apparentBytes)) with the holes of sparse files)" : ""
            let target = (server.map { "server \($0) on " } ?? "") + OutgoingTransfer.transfersURL(url)
            print(
                """
                pushed \(ByteCount.format(result.volumeBytes))\(holes) in \(result.files) files to \(target) \
                in \(ByteCount.fixed(result.seconds, 2)) s (\(ByteCount.rate(bytes: result.volumeBytes, seconds: result.seconds)))
                  archive \(ByteCount.format(result.archiveBytes)) (\(ByteCount.fixed(ratio, 2))× the volume), sha256 \(result.checksum)
                  \(Self.confirmationLine(result.confirmation))
                """)
        }
        return 0
    }

    /// What the destination's answer established, in one line of push's and evacuate's output.
    static func confirmationLine(_ confirmation: OutgoingTransfer.Confirmation) -> String {
        switch confirmation {
        case .checksumEchoed:
            "the destination verified the checksum (it answered the same sha256) and committed the volume"
        case .acceptedWithoutEcho:
            "the destination accepted the archive after checking the checksum it was sent; it answered none of its own "
                + "(Wings nodes do not), so none was compared here"
        }
    }

    /// The last component of a volume path (`/srv/volumes/<uuid>/` → `<uuid>`).
    static func directoryName(_ volume: String) -> String {
        URL(fileURLWithPath: volume).standardized.lastPathComponent
    }

    /// The server a push with `token` lands on: the token's `sub` (lowercased), or nil when the
    /// token has no readable `sub` that is a server UUID (the destination refuses such a token
    /// and says why, so it is left to it).
    ///
    /// The destination writes the volume of the server the token names, whatever else the command
    /// line says; so a `--server` naming another server, or, without `--server`, a volume
    /// directory named by another server's UUID, is a usage error: it would replace that other
    /// server's volume. Case differences are not differences. The signature is not checked here
    /// (the destination does that).
    static func destinationServer(token: String, server given: String?, volume: String) throws -> String? {
        guard let sub = JWT.unverifiedClaims(token)?["sub"]?.stringValue.flatMap(VolumeStore.canonicalServerID) else {
            return nil
        }
        if let given {
            guard given.lowercased() == sub else {
                throw Arguments.usage("--server \(given) does not match the token, which is for server \(sub)")
            }
            return sub
        }
        let directory = directoryName(volume)
        if VolumeStore.isValidServerID(directory), directory.lowercased() != sub {
            throw Arguments.usage(
                "the volume directory is named for server \(directory) but the token is for server \(sub); "
                    + "pass --server \(sub) if you mean to move this volume to that server")
        }
        return sub
    }

    // MARK: - token

    static func token(_ argv: [String]) throws -> Int32 {
        guard let args = try commandArguments(
            argv,
            valued: ["secret", "secret-file", "scope", "server", "user", "file", "backup", "permissions", "ttl", "issuer", "audience"],
            booleans: ["no-scope"], help: help)
        else { return 0 }
        guard let secret = try secret(args) else { throw Arguments.usage("--secret or --secret-file is required") }
        let scopeName = try args.required("scope")
        guard let scope = TokenScope(rawValue: scopeName) else {
            throw Arguments.usage("unknown scope '\(scopeName)' (transfer, file-download, backup-download, file-upload, websocket)")
        }
        // An option the scope has no claim for would be silently left out of the token.
        let scopeOnly: [(String, TokenScope)] = [("file", .fileDownload), ("backup", .backupDownload), ("permissions", .websocket)]
        for (option, only) in scopeOnly where args[option] != nil && scope != only {
            throw Arguments.usage("--\(option) is only for --scope \(only.rawValue) tokens, not \(scope.rawValue)")
        }
        let ttl = try args["ttl"].map { try Arguments.duration($0, option: "--ttl") } ?? 900
        var claims: [String: JSONValue] = [:]
        let server = try args.required("server")
        guard VolumeStore.isValidServerID(server) else { throw Arguments.usage("--server must be a UUID") }
        switch scope {
        case .transfer:
            claims["sub"] = .string(server)
        case .fileDownload:
            claims["server_uuid"] = .string(server)
            claims["file_path"] = .string(try args.required("file"))
        case .backupDownload:
            claims["server_uuid"] = .string(server)
            claims["backup_uuid"] = .string(try args.required("backup"))
        case .fileUpload:
            claims["server_uuid"] = .string(server)
            claims["user_uuid"] = .string(try args.required("user"))
        case .websocket:
            claims["server_uuid"] = .string(server)
            claims["user_uuid"] = .string(try args.required("user"))
            let permissions = (args["permissions"] ?? "websocket.connect").split(separator: ",").map { JSONValue.string(String($0)) }
            claims["permissions"] = .array(permissions)
        }
        if let user = args["user"], claims["user_uuid"] == nil { claims["user_uuid"] = .string(user) }
        let minter = TokenMinter(secret: secret, issuer: args["issuer"] ?? "transfer-send", audience: args["audience"] ?? "")
        print(minter.mint(scope: args.has("no-scope") ? nil : scope, ttl: ttl, claims: claims))
        return 0
    }
}

/// The signal that cancelled a command, set on the signal thread, read after the work returned.
extension SendCommand {
    /// Said on the first signal once the whole archive is out: the destination may be committing.
    static func waitingForTheAnswer(_ signal: String) -> String {
        let again = signal == "SIGINT" ? "Ctrl-C" : signal
        return "transfer-send: \(signal): the whole archive has been sent and the destination is verifying it; "
            + "waiting for its answer (\(again) again stops waiting, and the outcome is then unknown)\n"
    }

    static let outcomeUnknown =
        "stopped waiting for the destination's answer: the whole archive was sent, so it may have committed the "
        + "volume; check the server there before acting on either copy"
}

final class SignalBox: @unchecked Sendable {
    private let lock = Condition()
    private var stored: String?
    var name: String? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
