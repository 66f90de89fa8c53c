import Testing
@testable import TransferEngine

/// Command lines that would do something other than what was typed are usage errors, and a node
/// that answered is never reported as unreachable because of a failure it had.
struct SendCommandTests {
    private static let secretFlags = ["--secret", "0123456789abcdef"]
    private static let server = "11111111-2222-3333-4444-555555555555"
    // Each command line is otherwise complete: were the stray word ignored, the command would run
    // (print a token, try 127.0.0.1:1, or fail on an option) and say something else.
    private static let commands: [(String, [String])] = [
        ("push", ["--volume", "/", "--url", "http://127.0.0.1:1", "--token", "x.y.z", "--compression", "gzip", "--quiet"]),
        ("token", secretFlags + ["--scope", "transfer", "--server", server]),
        ("download", ["--url", "http://127.0.0.1:1", "--token", "x.y.z", "--file", "/a", "--output", "/nonexistent/x"]),
        ("bench", ["--scale", "0"]),
    ]

    private static func run(_ command: String, _ argv: [String]) throws -> Int32 {
        switch command {
        case "push": try SendCommand.push(argv)
        case "token": try SendCommand.token(argv)
        case "download": try SendCommand.download(argv)
        default: try SendCommand.bench(argv)
        }
    }

    @Test(arguments: ["stray", "x y", "--", "-", "/some/file"])
    func strayPositionalsAreUsageErrorsNamingThem(stray: String) {
        for (command, argv) in Self.commands {
            // At the end, at the start and between options.
            for position in [argv.count, 0, 2] {
                var line = argv
                line.insert(contentsOf: stray == "--" ? ["--", "extra"] : [stray], at: position)
                let named = stray == "--" ? "extra" : stray
                do {
                    let status = try Self.run(command, line)
                    Issue.record("\(command) \(line) ran (exit \(status))")
                } catch let error as TransferError {
                    #expect(error.isUsageError && error.message.contains("unexpected argument '\(named)'"), "\(command) \(line): \(error.message)")
                } catch {
                    Issue.record("\(error)")
                }
            }
        }
    }

    @Test func uploadStillTakesFiles() throws {
        let args = try #require(
            try SendCommand.commandArguments(
                ["--url", "http://h", "a.jar", "b.jar"], valued: ["url"], booleans: [], positionals: true, help: ""))
        #expect(args.positionals == ["a.jar", "b.jar"])
    }

    @Test(arguments: [
        "http://h:8080/api/transfers?x=1", "http://h:8080?x=1", "http://h:8080/?", "https://h/#frag", "http://h:8080/api/transfers#",
        "http://h?token=abc", "http://h:1/p?a=b#c", "http://[::1]:8080/?x",
    ])
    func urlsWithAQueryOrFragmentAreRefused(url: String) {
        #expect {
            _ = try SendCommand.validatedURL(url)
        } throws: { error in
            (error as? TransferError)?.isUsageError == true && (error as? TransferError)?.message.contains("query string or fragment") == true
        }
    }

    @Test(arguments: [
        ("http://h:8080", "http://h:8080"), ("http://h:8080/", "http://h:8080"),
        ("http://h:8080/api/transfers", "http://h:8080"), ("https://h/prefix/api/transfers/", "https://h/prefix"),
        ("http://[::1]:8080/node", "http://[::1]:8080/node"),
    ])
    func nodeURLDropsTheTransfersPath(url: String, expected: String) throws {
        let args = try Arguments(["--url", url], valued: ["url"], booleans: [])
        #expect(try SendCommand.nodeURL(args) == expected)
    }

    /// Every status a node can answer: failures it had while doing the work (500 "No space left
    /// on device", 507) are I/O errors (74); only "cannot serve this here" (501–505) and answers
    /// that are no node's are unavailable (69); the 4xx codes keep their meaning (404: not found,
    /// 66; a 409 that does not say something already exists: busy, 75). A 503 whose JSON
    /// error has `"code": "unavailable"` (our node shutting down) is temporary, as a 409 is (75).
    @Test func everyStatusMapsToTheDocumentedExitCode() {
        for status in 100..<600 where status != 200 {
            let code = ErrorMapping.exitStatus(for: OutgoingTransfer.remoteError(status: status, body: Array("{\"error\":\"x\"}".utf8)).code)
            let expected: Int32 =
                switch status {
                case 401, 403: 77
                case 404: 66
                case 409: 75
                case 400..<500: 65
                case 501...505: 69
                case 500..<600: 74
                default: 69
                }
            #expect(code == expected, "status \(status)")
        }
        let full = OutgoingTransfer.remoteError(status: 500, body: Array("{\"error\":\"No space left on device\"}".utf8))
        #expect(ErrorMapping.exitStatus(for: full.code) == 74 && full.message.contains("No space left on device"))
        #expect((full.cause as? NodeAnswer)?.status == 500)
        // Only a node's own "unavailable for now" is temporary; any other 503 (a proxy with no node
        // behind it) is unavailable.
        let shuttingDown = #"{"error":"the destination node is shutting down","code":"unavailable"}"#
        let temporary = OutgoingTransfer.remoteError(status: 503, body: Array(shuttingDown.utf8))
        #expect(ErrorMapping.exitStatus(for: temporary.code) == 75 && temporary.message.contains("shutting down"))
        for body in ["", "<html>Service Unavailable</html>", #"{"error":"down"}"#, #"{"error":"x","code":"io"}"#] {
            let code = OutgoingTransfer.remoteError(status: 503, body: Array(body.utf8)).code
            #expect(ErrorMapping.exitStatus(for: code) == 69, "\(body)")
        }
    }

    /// A 409 saying the destination is already there is not worth retrying (73); one saying the
    /// server is busy is (75).
    @Test(arguments: [
        (#"{"error":"'plugins' already exists as a directory","code":"exists"}"#, 73),
        (#"{"error":"taken","code":"exists"}"#, 73),
        (#"{"error":"backup x.tar.gz already exists on this node with other content"}"#, 73),
        (#"{"error":"server 1 is transferring: its files cannot be changed","code":"conflict"}"#, 75),
        (#"{"error":"the transfer was cancelled","code":"cancelled"}"#, 75),
        ("", 75),
    ])
    func aConflictIsRetryableOnlyWhenNothingAlreadyExists(body: String, exit: Int32) {
        let error = OutgoingTransfer.remoteError(status: 409, body: Array(body.utf8))
        #expect(ErrorMapping.exitStatus(for: error.code) == exit, "\(body)")
    }

    /// Options of which one would be silently ignored are refused together, in any order.
    @Test(arguments: [
        ["--token", "a.b.c", "--secret", "s"], ["--secret-file", "f", "--token", "a.b.c"],
        ["--secret", "s", "--secret-file", "f"], ["--insecure", "--cacert", "ca.pem"], ["--url", "http://a", "--url", "http://b"],
    ])
    func conflictingOptionsAreUsageErrors(argv: [String]) {
        #expect {
            _ = try SendCommand.commandArguments(
                argv, valued: ["token", "secret", "secret-file", "cacert", "url"], booleans: ["insecure"], help: "")
        } throws: { ($0 as? TransferError)?.isUsageError == true }
    }

    @Test func theSameValueTwiceIsNoConflict() throws {
        let args = try Arguments(["--url", "http://a", "--url", "http://a"], valued: ["url"], booleans: [])
        #expect(args["url"] == "http://a")
    }

    /// With --json a failure is one object with what was known, the status and the node's answer.
    @Test func aFailureReportCarriesTheStatusAndWhatWasKnown() {
        let failure = FailureReport(command: "push", json: true)
        failure.known["server"] = .string("s")
        let error = OutgoingTransfer.remoteError(status: 404, body: Array(#"{"error":"gone"}"#.utf8))
        let object = failure.json(for: error)
        #expect(object["ok"] == .bool(false) && object["success"] == .bool(false))
        #expect(object["command"] == .string("push"))
        #expect(object["exit_status"] == .number(66) && object["http_status"] == .number(404))
        #expect(object["server"] == .string("s") && object["error"] == .string("the node answered 404: gone"))
        let usage = FailureReport(command: "push", json: true).json(for: Arguments.usage("x"))
        #expect(usage["exit_status"] == .number(64))
    }

    @Test(arguments: [["--json"], ["--quiet", "--json"], ["--volume", "v", "--json", "--bogus"]])
    func jsonIsSeenEvenWhenTheLineDoesNotParse(argv: [String]) {
        #expect(SendCommand.asksForJSON(argv))
    }

    @Test(arguments: [["--json=yes"], ["--", "--json"], ["--jsonx"], []])
    func onlyTheJSONFlagAsksForJSON(argv: [String]) {
        #expect(!SendCommand.asksForJSON(argv))
    }
}

/// The destination replaces the volume of the server the token names, whatever the command line
/// says: a push whose --server, or volume directory, names another server is refused before
/// anything is sent.
struct PushServerCheckTests {
    private static let sub = "12341234-1111-1111-1111-111111111111"
    private static let other = "11111111-1111-1111-1111-111111111111"

    private static func token(_ claims: [String: JSONValue]) -> String {
        JWT.sign(claims: claims, secret: Array("s".utf8))
    }

    private static func check(_ token: String, server: String?, volume: String) throws -> String? {
        try SendCommand.destinationServer(token: token, server: server, volume: volume)
    }

    @Test func aServerOptionNamingAnotherServerIsAUsageError() {
        #expect {
            _ = try Self.check(Self.token(["sub": .string(Self.sub)]), server: Self.other, volume: "/v/\(Self.other)")
        } throws: { error in
            let error = error as? TransferError
            return error?.isUsageError == true && error!.message.contains(Self.sub)
                && error!.message.contains(Self.other)
        }
    }

    @Test(arguments: ["/v/11111111-1111-1111-1111-111111111111", "/v/11111111-1111-1111-1111-111111111111/"])
    func aDirectoryNamedForAnotherServerIsAUsageError(volume: String) {
        #expect {
            _ = try Self.check(Self.token(["sub": .string(Self.sub)]), server: nil, volume: volume)
        } throws: { error in
            let error = error as? TransferError
            return error?.isUsageError == true && error!.message.contains("--server \(Self.sub)")
                && error!.message.contains(Self.other)
        }
    }

    @Test func theTokensServerIsAcceptedWhateverTheCase() throws {
        let upper = Self.token(["sub": .string(Self.sub.uppercased())])
        #expect(try Self.check(upper, server: Self.sub, volume: "/v/\(Self.sub)") == Self.sub)
        #expect(try Self.check(upper, server: nil, volume: "/v/\(Self.sub)") == Self.sub)
        let lower = Self.token(["sub": .string(Self.sub)])
        #expect(try Self.check(lower, server: Self.sub.uppercased(), volume: "/v/x") == Self.sub)
        #expect(try Self.check(lower, server: nil, volume: "/v/\(Self.sub.uppercased())") == Self.sub)
        // Named explicitly, the volume may come from any directory, another server's included.
        #expect(try Self.check(lower, server: Self.sub, volume: "/v/\(Self.other)") == Self.sub)
        #expect(try Self.check(lower, server: nil, volume: "/srv/backup-copy") == Self.sub)
    }

    /// No readable server UUID in `sub`: left to the destination, which refuses such a token.
    @Test(arguments: ["x.y.z", "not-a-jwt", token([:]), token(["sub": "srv1"]), token(["sub": 42]), "a.!!!.c"])
    func aTokenWithoutAServerIsLeftToTheDestination(token: String) throws {
        #expect(try Self.check(token, server: Self.other, volume: "/v/\(Self.sub)") == nil)
        #expect(try Self.check(token, server: nil, volume: "/v/\(Self.other)") == nil)
    }

    @Test func unverifiedClaimsReadsTheMiddlePart() {
        let token = TokenMinter(secret: Array("k".utf8)).mint(scope: .transfer, claims: ["sub": .string(Self.sub)])
        #expect(JWT.unverifiedClaims(token)?["sub"] == .string(Self.sub))
        #expect(JWT.unverifiedClaims("a.b") == nil)
        #expect(JWT.unverifiedClaims("a.\(Base64URL.encode(Array("[1]".utf8))).c") == nil)
    }
}
