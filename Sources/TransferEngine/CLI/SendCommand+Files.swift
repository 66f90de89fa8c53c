#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// `transfer-send download` and `transfer-send upload`.
extension SendCommand {
    static func download(_ argv: [String]) throws -> Int32 {
        guard let args = try commandArguments(
            argv, valued: ["url", "token", "secret", "secret-file", "server", "file", "backup", "output"],
            booleans: ["resume", "insecure", "quiet"], help: help)
        else { return 0 }
        let node = try nodeURL(args)
        let isBackup = args["backup"] != nil
        guard isBackup != (args["file"] != nil) else { throw Arguments.usage("give exactly one of --file PATH or --backup UUID") }
        // The backup's UUID also names the output file: nothing else may become a path.
        if let backup = args["backup"], !VolumeStore.isValidServerID(backup) {
            throw Arguments.usage("--backup '\(backup)' is not a backup UUID (8-4-4-4-12 hex digits)")
        }
        let token: String
        if let given = args["token"] {
            token = try validatedToken(given)
            try checkDownloadToken(token, file: args["file"], backup: args["backup"])
            try checkTokenClaims(token, args, [("server", "server_uuid")])
        } else if let secret = try secret(args) {
            let server = try serverArgument(args)
            var claims: [String: JSONValue] = ["server_uuid": .string(server)]
            if isBackup { claims["backup_uuid"] = .string(args["backup"]!) } else { claims["file_path"] = .string(args["file"]!) }
            token = TokenMinter(secret: secret, audience: Redaction.removingCredentials(node))
                .mint(scope: isBackup ? .backupDownload : .fileDownload, ttl: 900, claims: claims)
        } else {
            throw Arguments.usage("give --token, or --secret/--secret-file with --server to mint one")
        }
        let endpoint = isBackup ? "/download/backup" : "/download/file"
        let lastComponent = args["file"].flatMap { $0.split(separator: "/").last.map(String.init) }
        let fileName = lastComponent.flatMap { $0 == "." || $0 == ".." ? nil : $0 } ?? "download"
        let defaultName = isBackup ? "\(args["backup"]!).tar.gz" : fileName
        // Checked before anything is fetched: a directory here would only fail at the end, with
        // the partial file left beside it.
        var output = args["output"] ?? defaultName
        if FileTree.isDirectory(output) {
            output += "/" + defaultName
        } else if output.hasSuffix("/") {
            // Meant as a directory; without this the error would name "DIR/.part".
            throw TransferError(.notFound, .cli, "--output \(output.escapingControlCharacters): no such directory")
        }
        let client = DownloadClient(url: "\(node)\(endpoint)?token=\(percentEncodeQuery(token))", output: output)
        client.resume = args.has("resume")
        client.insecureTLS = args.has("insecure")
        let bar = ProgressBar(enabled: !args.has("quiet") && isatty(2) == 1)
        client.onProgress = { done, total, seconds in bar.update(done: done, total: total, seconds: seconds) }
        SignalWaiter.onSignal(program: "transfer-send") { _ in client.cancel() }
        defer { bar.finish() }
        let result = try client.run()
        bar.finish()
        if result.restarted {
            StandardError.write(
                "transfer-send: note: the remote file changed since \(client.partialPath.escapingControlCharacters) was started; "
                    + "it was downloaded again from the start\n")
        }
        let resumed = result.resumedFrom > 0 ? " (resumed at \(ByteCount.format(result.resumedFrom)))" : ""
        print("downloaded \(ByteCount.format(result.bytes)) to \(client.output.escapingControlCharacters)\(resumed) in \(ByteCount.fixed(result.seconds, 2)) s "
            + "(\(ByteCount.rate(bytes: result.bytes - result.resumedFrom, seconds: result.seconds)))")
        return 0
    }

    /// A panel's download token names its file (or backup); `--file`/`--backup` name the output.
    /// They must agree, or the token's file would be saved under another file's name.
    static func checkDownloadToken(_ token: String, file: String?, backup: String?) throws {
        guard let claims = JWT.unverifiedClaims(token) else { return }  // the node will refuse it
        func plain(_ path: String) -> String { String(path.drop(while: { $0 == "/" })) }
        if let file {
            if let tokenFile = claims["file_path"]?.stringValue, plain(tokenFile) != plain(file) {
                throw Arguments.usage("the token is for file '\(tokenFile)', not --file '\(file)'")
            }
            if claims["file_path"] == nil, claims["backup_uuid"] != nil {
                throw Arguments.usage("the token is for a backup download: use --backup, not --file")
            }
        }
        if let backup {
            if let tokenBackup = claims["backup_uuid"]?.stringValue, tokenBackup.lowercased() != backup.lowercased() {
                throw Arguments.usage("the token is for backup \(tokenBackup), not --backup \(backup)")
            }
            if claims["backup_uuid"] == nil, claims["file_path"] != nil {
                throw Arguments.usage("the token is for a file download: use --file, not --backup")
            }
        }
    }

    /// With `--token`, the node acts on the server (and user) the token names: a `--server` or
    /// `--user` that names another one would be silently ignored, so it is a usage error. Case
    /// does not matter; a token whose claim cannot be read is left to the node.
    static func checkTokenClaims(
        _ token: String, _ args: Arguments, _ pairs: [(option: String, claim: String)]
    ) throws {
        guard let claims = JWT.unverifiedClaims(token) else { return }
        for (option, claim) in pairs {
            guard let given = args[option], let named = claims[claim]?.stringValue else { continue }
            guard given.lowercased() == named.lowercased() else {
                throw Arguments.usage(
                    "--\(option) \(given.escapingControlCharacters) does not match the token, which is for "
                        + "\(option) \(named.escapingControlCharacters)")
            }
        }
    }

    static func upload(_ argv: [String]) throws -> Int32 {
        guard let args = try commandArguments(
            argv, valued: ["url", "token", "secret", "secret-file", "server", "user", "directory"],
            booleans: ["insecure", "quiet"], positionals: true, help: help)
        else { return 0 }
        let node = try nodeURL(args)
        guard !args.positionals.isEmpty else { throw Arguments.usage("name at least one FILE to upload") }
        let (files, repeated) = try UploadClient.distinctFiles(args.positionals)
        for path in repeated {
            StandardError.write(
                "transfer-send: note: \(path.escapingControlCharacters) is named more than once; it is uploaded once\n")
        }
        let token: String
        if let given = args["token"] {
            token = try validatedToken(given)
            try checkTokenClaims(token, args, [("server", "server_uuid"), ("user", "user_uuid")])
        } else if let secret = try secret(args) {
            let claims: [String: JSONValue] = [
                "server_uuid": .string(try serverArgument(args)), "user_uuid": .string(args["user"] ?? SecureRandom.uuid()),
            ]
            token = TokenMinter(secret: secret, audience: Redaction.removingCredentials(node))
                .mint(scope: .fileUpload, ttl: 900, claims: claims)
        } else {
            throw Arguments.usage("give --token, or --secret/--secret-file with --server to mint one")
        }
        var url = "\(node)/upload/file?token=\(percentEncodeQuery(token))"
        if let directory = args["directory"] { url += "&directory=\(percentEncodeQuery(directory))" }
        let client = UploadClient(url: url, files: files)
        client.insecureTLS = args.has("insecure")
        let bar = ProgressBar(enabled: !args.has("quiet") && isatty(2) == 1)
        client.onProgress = { done, total, seconds in bar.update(done: done, total: total, seconds: seconds) }
        SignalWaiter.onSignal(program: "transfer-send") { _ in client.cancel() }
        defer { bar.finish() }
        let started = MonotonicClock.now()
        let (bytes, _) = try client.run()
        bar.finish()
        let seconds = MonotonicClock.now() - started
        print("uploaded \(files.count) file\(files.count == 1 ? "" : "s"), \(ByteCount.format(bytes)) in "
            + "\(ByteCount.fixed(seconds, 2)) s "
            + "(\(ByteCount.rate(bytes: bytes, seconds: seconds)))")
        return 0
    }

    /// The node's base URL: `--url` validated, without trailing slashes or the `/api/transfers`
    /// path a push is given (so the same URL works for both).
    static func nodeURL(_ args: Arguments) throws -> String {
        CompressionNegotiator.baseURL(try validatedURL(try args.required("url")))
    }

    static func serverArgument(_ args: Arguments) throws -> String {
        let server = try args.required("server")
        guard VolumeStore.isValidServerID(server) else { throw Arguments.usage("--server must be a UUID") }
        return server
    }

    /// Percent-encodes a query value (RFC 3986 unreserved characters pass).
    static func percentEncodeQuery(_ value: String) -> String {
        PercentEncoding.encode(value, allowed: PercentEncoding.unreserved)
    }
}
