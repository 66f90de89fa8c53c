/// What a failed `transfer-send` command reports as JSON when `--json` was given: the command
/// fills in what it has established (`known`) as it goes, and the one place that reports errors
/// prints `json(for:)` on standard output beside the usual line on standard error.
///
/// ```
/// {"ok": false, "success": false, "command": "push", "error": "the node answered 404: …",
///  "exit_status": 66, "http_status": 404, "url": "…", "server": "…", "compression": "gzip"}
/// ```
final class FailureReport {
    let command: String
    /// Whether a failure is printed as JSON (`--json` was given to a command that prints JSON).
    var json: Bool
    /// Facts the command had established when it failed (`url`, `server`, `volume`, …).
    var known: [String: JSONValue] = [:]

    init(command: String, json: Bool) {
        self.command = command
        self.json = json
    }

    /// The failure as one object: `ok`/`success` false, the message, the exit status, the HTTP
    /// status when a node answered, and what was known.
    func json(for error: TransferError) -> JSONValue {
        var object = known
        object["ok"] = .bool(false)
        object["success"] = .bool(false)
        object["command"] = .string(command)
        object["error"] = .string(error.message)
        object["exit_status"] = .number(Double(SendCommand.exitStatus(for: error)))
        if let answer = error.cause as? NodeAnswer { object["http_status"] = .number(Double(answer.status)) }
        return .object(object)
    }
}
