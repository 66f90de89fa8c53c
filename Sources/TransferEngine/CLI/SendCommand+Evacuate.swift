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
        First it checks the destination as --dry-run does (GET /api/system with the node token)
        and, when that fails, stops before the first push with that check's error: nothing is
        sent. Then each server is its own verified push with a transfer token minted from the
        destination's node token (naming the server as its directory is spelt; UUIDs match in
        any case); one that fails does not stop the others. A server counts as moved only when the
        destination confirmed it as push requires (see `transfer-send push --help`): any other
        200 answer is a failure. The volumes here are left as they are: remove them once the
        panel has moved the servers.
        Prints one line per server as it ends, then a summary. Meant to run unattended (cron,
        systemd timers): no prompt, a progress bar only on a terminal, SIGINT/SIGTERM abort the
        running pushes (nothing half-sent is committed) and start no more.
        Entries of --data that are not server volumes (lost+found, .staging, files) are left
        alone, one "skipped NAME  WHY" line each. No server volumes is nothing to do (exit 0);
        an --data with nothing at all in it also warns, as an unmounted disk's mount point does.

          --data DIR          the node's volumes directory
          --url URL           destination node (http(s)://host:port)
          --secret S          the destination's node token (--secret-file F reads it from a file)
          --servers LIST      only these server UUIDs (comma-separated, any case); default:
                              every volume
          --parallel N        pushes at once, 1-16 (default 2)
          --compression MODE  auto (default) | gzip | zstd | none, as for push
          --dry-run           send nothing: list what would be moved (sizes, files, total) and
                              check the destination (GET /api/system with the node token): that it
                              is reachable, is a node (ours or Wings) and accepts the token
          --json              print the outcome (or the dry run's report) as one JSON object on stdout
          --quiet             no progress bar

        Exit status: 0 when every server was moved (or there was none to move); 74 when --data
        is missing or not a directory; 65 when two of its directories name one server (in
        different cases); otherwise the status push would give for the first server that failed
        (130 when cancelled). The destination check (in a dry run and before a real one) fails
        with 77 when the node refused the node token, 69 when it cannot be reached or is not a
        node (a 404 or a 200 that is not a node's answer), and otherwise as push would for the
        status it answered; a dry run whose check passed exits 0.
        """

    static func evacuate(_ argv: [String]) throws -> Int32 {
        guard let args = try commandArguments(
            argv, valued: ["data", "url", "secret", "secret-file", "servers", "parallel", "compression", "cacert"],
            booleans: ["dry-run", "json", "quiet", "insecure"], help: evacuateHelp)
        else { return 0 }
        let data = try args.required("data")
        guard FileTree.isDirectory(data) else { throw TransferError(.io, .cli, "--data \(data) is not a directory") }
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

        let json = args.has("json")
        let plan = try Evacuation.plan(dataDirectory: data, only: options.servers)
        let volumes = plan.volumes
        let totalBytes = plan.bytes
        // An empty data directory is not an error: a cron job that runs again after the node was
        // emptied must not fail. But a directory with nothing at all in it (no `lost+found`, no
        // `.staging`) is what the mount point of a disk that is not mounted looks like, so it
        // gets a warning (on stderr, so cron mails it) without failing either; only a --data
        // that is missing or not a directory fails (74 above), as nothing could be judged.
        var warnings: [String] = []
        if plan.directoryIsEmpty {
            warnings.append("\(data) is empty: if a disk should be mounted there, it is not")
        }
        for warning in warnings {
            StandardError.write("transfer-send: warning: \(warning.escapingControlCharacters)\n")
        }
        if !json {
            for entry in plan.skipped { print(Self.line(for: entry)) }
        }
        // SIGINT/SIGTERM from here on: the destination check, then the pushes, end at once.
        let evacuation = Evacuation(options: options)
        let interrupted = SignalBox()
        SignalWaiter.onSignal(program: "transfer-send") { name in
            interrupted.name = name
            evacuation.cancel()
        }
        if args.has("dry-run") {
            return dryRun(plan, options: options, json: json, warnings: warnings, interrupted: interrupted)
        }
        guard !volumes.isEmpty else {
            if json {
                let report = Self.json([], plan: plan, warnings: warnings, seconds: 0)
                print(report)
            } else {
                print(Self.nothingToEvacuate(in: data))
            }
            return 0
        }

        // The check --dry-run makes, before the first push: a wrong --url, an unreachable node or
        // another node's token would otherwise fail every server one by one, each after its
        // negotiation. Nothing is sent and no server touched when it fails.
        let checked = checkDestination(options, interrupted: interrupted)
        if interrupted.name != nil {
            let error = TransferError(.cancelled, .cli, "cancelled before the first push, nothing was sent")
            stoppedBeforeTheFirstPush(plan, json: json, warnings: warnings, error: error, why: error.message)
            return 130
        }
        let node: NodeCheck.Node
        switch checked {
        case .success(let answered):
            node = answered
        case .failure(let error):
            stoppedBeforeTheFirstPush(
                plan, json: json, warnings: warnings, error: error,
                why: "the destination check failed, nothing was sent", destination: checked, url: url)
            return report(error)
        }

        let started = MonotonicClock.now()
        let bar = ProgressBar(enabled: !args.has("quiet") && !args.has("json") && isatty(2) == 1)
        if bar.enabled {
            evacuation.onProgress = { done in bar.update(done: done, total: totalBytes, seconds: MonotonicClock.now() - started) }
        }
        if !json {
            StandardError.write("transfer-send: evacuating \(volumes.count) server(s), \(ByteCount.format(totalBytes)), "
                + "\(options.parallel) at a time, to \(OutgoingTransfer.transfersURL(url)) "
                + "(a \(node.kind) \(node.version.escapingControlCharacters) node)\n")
            evacuation.onFinished = { outcome in
                bar.finish()
                print(Self.line(for: outcome))
            }
        }
        let outcomes = evacuation.run(volumes)
        bar.finish()
        let seconds = MonotonicClock.now() - started
        let moved = outcomes.filter { $0.error == nil }
        let movedBytes = moved.reduce(Int64(0)) { $0 + ($1.result?.volumeBytes ?? 0) }
        let failed = outcomes.filter { $0.error != nil }
        if json {
            let report = Self.json(
                outcomes, plan: plan, warnings: warnings, seconds: seconds, destination: checked, url: url)
            print(report)
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

    static func nothingToEvacuate(in data: String) -> String {
        "nothing to evacuate: no server volumes (UUID-named directories) in \(data.escapingControlCharacters)"
    }

    /// `skipped <name>  <why>`: an entry of --data that is not a server volume.
    static func line(for skipped: Evacuation.Skipped) -> String {
        "skipped \(skipped.name.escapingControlCharacters)  \(skipped.reason)"
    }

    /// `--dry-run`: lists what would be sent, then checks the destination with the node token
    /// (`NodeCheck`); exits with the status that check gives (0 when the node accepted the token).
    static func dryRun(
        _ plan: Evacuation.Plan, options: Evacuation.Options, json: Bool, warnings: [String], interrupted: SignalBox
    ) -> Int32 {
        let target = OutgoingTransfer.transfersURL(options.url)
        if !json {
            for volume in plan.volumes {
                print("would move \(volume.server)  \(ByteCount.format(volume.bytes)) in \(volume.files) files")
            }
        }
        let checked = checkDestination(options, interrupted: interrupted)
        if interrupted.name != nil { return 130 }
        if json {
            let destination = destinationJSON(checked, url: options.url)
            let servers: [JSONValue] = plan.volumes.map {
                .object([
                    "server": .string($0.server), "volume_bytes": .number(Double($0.bytes)),
                    "files": .number(Double($0.files)),
                ])
            }
            let report: JSONValue = .object([
                "dry_run": .bool(true), "destination": destination, "servers": .array(servers),
                "total_bytes": .number(Double(plan.bytes)), "skipped": skippedJSON(plan.skipped),
                "warnings": .array(warnings.map { .string($0) }),
            ])
            print(report)
        } else {
            if case .success(let node) = checked {
                print("destination \(target): reachable, a \(node.kind) \(node.version) node, node token accepted")
            }
            let sent = "dry run: nothing sent" + (checked.isFailure ? "; the destination check failed" : "")
            if plan.volumes.isEmpty {
                print("\(Self.nothingToEvacuate(in: options.dataDirectory)) (\(sent))")
            } else {
                print("\(plan.volumes.count) server(s), \(ByteCount.format(plan.bytes)), to \(target) (\(sent))")
            }
        }
        if case .failure(let error) = checked { return report(error) }
        return 0
    }

    /// `NodeCheck` on the destination with the node token (what `--dry-run` reports, and what a
    /// real run requires before its first push). A signal ends it within about a second.
    static func checkDestination(
        _ options: Evacuation.Options, interrupted: SignalBox
    ) -> Result<NodeCheck.Node, TransferError> {
        do {
            return .success(
                try NodeCheck.check(
                    url: options.url, secret: options.secret, insecureTLS: options.insecureTLS,
                    caCertificate: options.caCertificate, cancelled: { interrupted.name != nil }))
        } catch let error as TransferError {
            return .failure(error)
        } catch {
            return .failure(TransferError(.internal, .transfer, "\(error)"))
        }
    }

    /// The `destination` object of the JSON reports: `url`, `ok`, then `node` and `version`, or
    /// `error` and `exit_status`.
    static func destinationJSON(_ checked: Result<NodeCheck.Node, TransferError>, url: String) -> JSONValue {
        var destination: [String: JSONValue] = ["url": .string(OutgoingTransfer.transfersURL(url))]
        switch checked {
        case .success(let node):
            destination["ok"] = .bool(true)
            destination["node"] = .string(node.kind)
            destination["version"] = .string(node.version)
        case .failure(let error):
            destination["ok"] = .bool(false)
            destination["error"] = .string(error.message)
            destination["exit_status"] = .number(Double(ErrorMapping.exitStatus(for: error.code)))
        }
        return .object(destination)
    }

    /// An evacuation that ends before its first push (a signal during the destination check, or
    /// the check failed): nothing was sent. Prints the summary line, or the JSON report with the
    /// fields every `--json` failure has.
    static func stoppedBeforeTheFirstPush(
        _ plan: Evacuation.Plan, json: Bool, warnings: [String], error: TransferError, why: String,
        destination: Result<NodeCheck.Node, TransferError>? = nil, url: String = ""
    ) {
        if json {
            let report = Self.json([], plan: plan, warnings: warnings, seconds: 0, destination: destination, url: url)
            print(Self.failed(report, error))
        } else {
            print("evacuated 0 of \(plan.volumes.count) server(s): \(why)")
        }
    }

    /// A report of an evacuation that stopped before its first push, with the fields every
    /// `--json` failure has (`ok`, `success`, `command`, `error`, `exit_status`: `FailureReport`).
    static func failed(_ report: JSONValue, _ error: TransferError) -> JSONValue {
        var object = report.objectValue ?? [:]
        let failure = FailureReport(command: "evacuate", json: true).json(for: error)
        for (key, value) in failure.objectValue ?? [:] { object[key] = value }
        return .object(object)
    }

    static func skippedJSON(_ skipped: [Evacuation.Skipped]) -> JSONValue {
        .array(skipped.map { .object(["name": .string($0.name), "reason": .string($0.reason)]) })
    }

    static func json(
        _ outcomes: [Evacuation.Outcome], plan: Evacuation.Plan, warnings: [String], seconds: Double,
        destination: Result<NodeCheck.Node, TransferError>? = nil, url: String = ""
    ) -> JSONValue {
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
                entry["skipped"] = result.skippedJSON
                entry["warnings"] = .array(result.skipWarnings.map { .string($0) })
            }
            if let error = outcome.error {
                entry["error"] = .string(error.message)
                entry["exit_status"] = .number(Double(ErrorMapping.exitStatus(for: error.code)))
            }
            return .object(entry)
        }
        let succeeded = outcomes.filter { $0.error == nil }.count
        var report: [String: JSONValue] = [
            "servers": .array(servers), "succeeded": .number(Double(succeeded)),
            "failed": .number(Double(outcomes.count - succeeded)), "seconds": .number(seconds),
            "skipped": skippedJSON(plan.skipped), "warnings": .array(warnings.map { .string($0) }),
        ]
        if let destination { report["destination"] = destinationJSON(destination, url: url) }
        return .object(report)
    }
}

extension Result {
    fileprivate var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}
