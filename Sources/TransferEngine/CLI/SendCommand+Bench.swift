#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// `transfer-send bench`.
extension SendCommand {
    static let benchHelp = """
        usage: transfer-send bench [--corpus mixed,large,tiny] [--scale 0.25] [--runs 3] [--modes gzip,auto]
                                   [--volume DIR] [--url URL --secret-file F] [--work DIR]
                                   [--json FILE] [--chart FILE.svg] [--no-baselines] [--no-warmup]

        Generates the standard volumes (deterministic; kept in --work for the next run), starts a
        local transferd on loopback (or targets --url), pushes each volume once to warm up and then
        --runs times per mode with the real binaries, and reports medians: MB/s of volume bytes,
        files/s, compression ratio, time to verified commit, CPU seconds and peak RSS of each side.
        In the same run it times baselines on the same volume (tar | openssl sha256, tar | gzip -1,
        igzip -1 and zstd -1 -T0 when installed, and tar | tar -x + syncfs, the durable-write
        floor) and prints our figures as multiples of them.
        Modes: gzip (what a Wings peer gets), auto (negotiated), zstd, none.
        Corpora and the local daemon's state live in --work (default ./transfer-bench). With --url,
        each run commits a volume under a random server UUID on that node, left there; --secret-file
        (the node's token) may be any readable file, a pipe or /dev/stdin too, read once.
        --json FILE gets the report, or, when the run fails after the options were accepted, the
        failure: {"ok": false, "success": false, "error": ..., "exit_status": N}.
        """

    static func bench(_ argv: [String]) throws -> Int32 {
        guard let args = try commandArguments(
            argv, valued: ["corpus", "scale", "runs", "modes", "volume", "url", "secret-file", "work", "json", "chart"],
            booleans: ["no-baselines", "no-warmup"], help: benchHelp)
        else { return 0 }
        var options = BenchRunner.Options()
        if let corpus = args["corpus"] {
            options.corpora = try corpus.split(separator: ",").map {
                guard let kind = BenchCorpus.Kind(rawValue: String($0)) else { throw Arguments.usage("unknown corpus '\($0)' (mixed, large, tiny)") }
                return kind
            }
            guard !options.corpora.isEmpty else { throw Arguments.usage("--corpus names none of mixed, large, tiny") }
        }
        if let scale = args["scale"] {
            guard let value = Double(scale), value > 0, value <= 4 else { throw Arguments.usage("--scale must be in (0, 4]") }
            options.scale = value
        }
        if let runs = args["runs"] {
            guard let value = Int(runs), (1...50).contains(value) else { throw Arguments.usage("--runs must be 1…50") }
            options.runs = value
        }
        if let modes = args["modes"] {
            options.modes = try modes.split(separator: ",").map {
                guard let mode = CompressionNegotiator.Mode(rawValue: String($0)) else { throw Arguments.usage("unknown mode '\($0)'") }
                return mode
            }
            guard !options.modes.isEmpty else { throw Arguments.usage("--modes names no mode (gzip, auto, zstd, none)") }
        }
        options.volume = args["volume"]
        options.url = try args["url"].map(validatedURL)
        // Output paths are checked before minutes of benchmarking, not after.
        for name in ["json", "chart"] {
            if let path = args[name] {
                let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
                guard FileTree.isDirectory(parent) else { throw Arguments.usage("--\(name): directory \(parent) does not exist") }
                guard !FileTree.isDirectory(path) else { throw Arguments.usage("--\(name): \(path) is a directory (give a file name)") }
                // A place that takes no file (/proc, a read-only mount, no permission) is found now too.
                let existed = FileTree.exists(path)
                let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
                guard fd >= 0 else {
                    throw Arguments.usage("--\(name): cannot write \(path): \(String(cString: strerror(errno)))")
                }
                close(fd)
                if !existed { unlink(path) }
            }
        }
        if let file = args["secret-file"] {
            guard options.url != nil else {
                throw Arguments.usage("--secret-file is for --url (the local daemon has its own)")
            }
            // Read now, before minutes of benchmarking, and once: a pipe cannot be read by every push.
            let secret = try SecretFile.read(file)
            var st = stat()
            if stat(file, &st) == 0, st.st_mode & S_IFMT == S_IFREG {
                options.secretFile = file
            } else {
                options.secret = secret
            }
        }
        if options.url != nil && args["secret-file"] == nil { throw Arguments.usage("--url needs --secret-file") }
        options.workDirectory = args["work"] ?? "transfer-bench"
        options.baselines = !args.has("no-baselines")
        options.warmup = !args.has("no-warmup")
        let report: BenchRunner.Report
        do {
            report = try BenchRunner(options: options).run()
        } catch let error as TransferError {
            // The JSON file says it failed, rather than keeping an earlier run's figures.
            if let path = args["json"] {
                let failure = FailureReport(command: "bench", json: true).json(for: error).serialized()
                let text = String(decoding: failure, as: UTF8.self).redactingURLCredentials
                try? Data(text.utf8).write(to: URL(fileURLWithPath: path))
            }
            throw error
        }
        print(BenchReport.table(report))
        for (name, bytes) in [("json", BenchReport.json(report).serialized()), ("chart", Array(BenchReport.svg(report).utf8))] {
            guard let path = args[name] else { continue }
            do {
                try Data(bytes).write(to: URL(fileURLWithPath: path))
            } catch {
                throw TransferError(.io, .cli, "--\(name): could not write \(path) (the table above has the results)")
            }
            print("\(name): \(path)")
        }
        return 0
    }
}
