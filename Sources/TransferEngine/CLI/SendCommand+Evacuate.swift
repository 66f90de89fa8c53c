#if canImport(Glibc)
import Glibc
#endif

/// `transfer-send evacuate`.
extension SendCommand {
    static let evacuateHelp = """
        usage: transfer-send evacuate --data DIR --url URL (--secret S | --secret-file F)
                                      [--servers UUID,...] [--parallel 2] [--compression auto]
                                      [--dry-run] [--json] [--quiet] [--insecure] [--cacert FILE]

        Pushes every server volume in --data (directories named by a server UUID, e.g.
        /var/lib/pterodactyl/volumes) to the node at --url, --parallel at a time, largest first.
        Each is its own verified push with a transfer token minted from the destination's node
        token; one that fails does not stop the others. A server counts as moved only when the
        destination confirmed it as push requires (see `transfer-send push --help`): any other
        200 answer is a failure. The volumes here are left as they are: remove them once the
        panel has moved the servers.
        Prints one line per server as it ends, then a summary. Meant to run unattended (cron,
        systemd timers): no prompt, a progress bar only on a terminal, SIGINT/SIGTERM abort the
        running pushes (nothing half-sent is committed) and start no more.

          --data DIR          the node's volumes directory
          --url URL           destination node (http(s)://host:port)
          --secret S          the destination's node token (--secret-file F reads it from a file)
          --servers LIST      only these server UUIDs (comma-separated); default: every volume
          --parallel N        pushes at once, 1-16 (default 2)
          --compression MODE  auto (default) | gzip | zstd | none, as for push
          --dry-run           list what would be moved (sizes, files) and send nothing
          --json              print the outcome as one JSON object on stdout
          --quiet             no progress bar

        Exit status: 0 when every server was moved; otherwise the status push would give for the
        first server that failed (130 when cancelled).
        """

    static func evacuate(_ argv: [String]) throws -> Int32 {
        guard let args = try commandArguments(
            argv, valued: ["data", "url", "secret", "secret-file", "servers", "parallel", "compression", "cacert"],
            booleans: ["dry-run", "json", "quiet", "insecure"], help: evacuateHelp)
        else { return 0 }
        let data = try args.required("data")
        guard FileTree.isDirectory(data) else { throw TransferError(.notFound, .cli, "--data \(data) is not a directory") }
        let url = try validatedURL(try args.required("url"))
        guard let secret = try secret(args) else { throw Arguments.usage("give --secret or --secret-file (the destination's node token)") }
        var options = Evacuation.Options(dataDirectory: data, url: url, secret: secret)
        if let list = args["servers"] {
            let servers = list.split(separator: ",").map { String($0).trimmingWhitespace().lowercased() }
            guard !servers.isEmpty, servers.allSatisfy(VolumeStore.isValidServerID) else {
                throw Arguments.usage("--servers must be a comma-separated list of server UUIDs")
            }
            options.servers = Array(Set(servers))
        }
        if let text = args["parallel"] {
            guard let value = Int(text), (1...16).contains(value) else { throw Arguments.usage("--parallel must be 1 to 16") }
            options.parallel = value
        }
        let modeName = args["compression"] ?? "auto"
        guard let mode = CompressionNegotiator.Mode(rawValue: modeName) else {
            throw Arguments.usage("--compression must be auto, gzip, zstd or none")
        }
        options.mode = mode
        options.insecureTLS = args.has("insecure")
        options.caCertificate = args["cacert"]

        let plan = try Evacuation.plan(dataDirectory: data, only: options.servers)
        let totalBytes = plan.reduce(0) { $0 + $1.bytes }
        if args.has("dry-run") {
            for volume in plan {
                print("would move \(volume.server)  \(ByteCount.format(volume.bytes)) in \(volume.files) files")
            }
            print("\(plan.count) server(s), \(ByteCount.format(totalBytes)), to \(OutgoingTransfer.transfersURL(url)) (dry run: nothing sent)")
            return 0
        }
        guard !plan.isEmpty else { throw TransferError(.notFound, .cli, "no server volumes (UUID-named directories) in \(data)") }

        let evacuation = Evacuation(options: options)
        let started = MonotonicClock.now()
        let bar = ProgressBar(enabled: !args.has("quiet") && !args.has("json") && isatty(2) == 1)
        if bar.enabled {
            evacuation.onProgress = { done in bar.update(done: done, total: totalBytes, seconds: MonotonicClock.now() - started) }
        }
        let json = args.has("json")
        if !json {
            StandardError.write("transfer-send: evacuating \(plan.count) server(s), \(ByteCount.format(totalBytes)), "
                + "\(options.parallel) at a time, to \(OutgoingTransfer.transfersURL(url))\n")
            evacuation.onFinished = { outcome in
                bar.finish()
                print(Self.line(for: outcome))
            }
        }
        let interrupted = SignalBox()
        SignalWaiter.onSignal(program: "transfer-send") { name in
            interrupted.name = name
            evacuation.cancel()
        }
        let outcomes = evacuation.run(plan)
        bar.finish()
        let seconds = MonotonicClock.now() - started
        let moved = outcomes.filter { $0.error == nil }
        let movedBytes = moved.reduce(Int64(0)) { $0 + ($1.result?.volumeBytes ?? 0) }
        let failed = outcomes.filter { $0.error != nil }
        if json {
            print(String(decoding: Self.json(outcomes, seconds: seconds).serialized(), as: UTF8.self))
        } else {
            var summary = "evacuated \(moved.count) of \(outcomes.count) server(s), \(ByteCount.format(movedBytes)) in "
                + "\(ByteCount.fixed(seconds, 1)) s (\(ByteCount.rate(bytes: movedBytes, seconds: seconds)))"
            if !failed.isEmpty { summary += "; failed: " + failed.map(\.volume.server).joined(separator: ", ") }
            print(summary)
        }
        if interrupted.name != nil { return 130 }
        return failed.first.map { ErrorMapping.exitStatus(for: $0.error!.code) } ?? 0
    }

    /// One line per server: `ok     <uuid>  1.2 GiB in 3.40 s (350 MB/s, gzip, sha256 …)` or
    /// `failed <uuid>  <why>`; a Wings destination's `ok` line says its checksum was not answered.
    static func line(for outcome: Evacuation.Outcome) -> String {
        let server = outcome.volume.server
        guard let result = outcome.result, outcome.error == nil else {
            return "failed \(server)  \((outcome.error?.message ?? "unknown error").escapingControlCharacters)"
        }
        return "ok     \(server)  \(ByteCount.format(result.volumeBytes)) in \(result.files) files, "
            + "\(ByteCount.fixed(result.seconds, 2)) s (\(ByteCount.rate(bytes: result.volumeBytes, seconds: result.seconds)), "
            + "\(outcome.compression?.rawValue ?? "?"), sha256 \(result.checksum))"
            + (result.confirmation == .checksumEchoed
                ? "" : "; accepted after the node checked it, not answered back (Wings)")
    }

    static func json(_ outcomes: [Evacuation.Outcome], seconds: Double) -> JSONValue {
        let servers: [JSONValue] = outcomes.map { outcome in
            var entry: [String: JSONValue] = [
                "server": .string(outcome.volume.server), "success": .bool(outcome.error == nil),
                "volume_bytes": .number(Double(outcome.result?.volumeBytes ?? outcome.volume.bytes)),
                "files": .number(Double(outcome.result?.files ?? outcome.volume.files)),
            ]
            if let result = outcome.result {
                entry["checksum"] = .string(result.checksum)
                entry["confirmed_checksum"] = .bool(result.confirmation == .checksumEchoed)
                entry["seconds"] = .number(result.seconds)
                entry["compression"] = .string(outcome.compression?.rawValue ?? "")
            }
            if let error = outcome.error {
                entry["error"] = .string(error.message)
                entry["exit_status"] = .number(Double(ErrorMapping.exitStatus(for: error.code)))
            }
            return .object(entry)
        }
        let succeeded = outcomes.filter { $0.error == nil }.count
        return .object([
            "servers": .array(servers), "succeeded": .number(Double(succeeded)),
            "failed": .number(Double(outcomes.count - succeeded)), "seconds": .number(seconds),
        ])
    }
}
