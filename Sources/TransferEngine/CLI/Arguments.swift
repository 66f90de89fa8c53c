/// A small command-line parser: `--name value`, `--name=value`, boolean `--flag`s and positionals.
/// Unknown options are usage errors (exit 64), never silently ignored.
public struct Arguments {
    public private(set) var values: [String: String] = [:]
    public private(set) var flags: Set<String> = []
    public private(set) var positionals: [String] = []

    /// Parses `argv` (without the program name). `valued` names options that take a value,
    /// `booleans` those that do not.
    public init(_ argv: [String], valued: Set<String>, booleans: Set<String>) throws {
        var index = 0
        while index < argv.count {
            let arg = argv[index]
            index += 1
            if arg == "--" {
                positionals += argv[index...]
                break
            }
            guard arg.hasPrefix("-"), arg != "-" else {
                positionals.append(arg)
                continue
            }
            var name = String(arg.drop(while: { $0 == "-" }))
            var inline: String?
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            if arg == "-h" { name = "help" }
            if booleans.contains(name) {
                guard inline == nil else { throw Self.usage("--\(name) takes no value") }
                flags.insert(name)
            } else if valued.contains(name) {
                let value: String
                if let inline {
                    value = inline
                } else {
                    guard index < argv.count else { throw Self.usage("--\(name) needs a value") }
                    value = argv[index]
                    index += 1
                }
                // An empty value is never meant: as a directory it would become "/" once a
                // file name is appended ("" + "/.staging").
                guard !value.isEmpty else { throw Self.usage("--\(name) needs a value (got an empty one)") }
                // Two different values: one would be silently dropped. (Values are not echoed: it
                // may be a secret.)
                if let earlier = values[name], earlier != value {
                    throw Self.usage("--\(name) is given twice, with different values: give it once")
                }
                values[name] = value
            } else {
                throw Self.usage("unknown option \(arg)")
            }
        }
    }

    public subscript(_ name: String) -> String? { values[name] }
    public func has(_ flag: String) -> Bool { flags.contains(flag) }

    /// For commands that take no positionals: a stray word (a typo, an option's value given twice,
    /// a missing `--`) is a usage error naming it, never silently ignored.
    public func checkNoPositionals() throws {
        guard let stray = positionals.first else { return }
        let hint = positionals.count > 1 ? " (and \(positionals.count - 1) more)" : ""
        throw Self.usage("unexpected argument '\(stray.escapingControlCharacters)'\(hint): this command takes only options")
    }

    public func required(_ name: String) throws -> String {
        guard let value = values[name], !value.isEmpty else { throw Self.usage("--\(name) is required") }
        return value
    }

    public static func usage(_ message: String) -> TransferError {
        TransferError(.invalidInput, .cli, message, cause: UsageMarker())
    }

    static let maximumDuration: Int64 = 365 * 86400

    /// Parses a duration with its unit, `90s`, `15m`, `2h` or `1d`, into seconds (at most a
    /// year). A bare number is refused rather than taken as seconds: `--ttl 15` meant as minutes
    /// would otherwise mint a token that is dead within seconds.
    /// - Parameter option: the option it was given to, named in the error (`--ttl`).
    public static func duration(_ text: String, option: String = "--ttl") throws -> Int64 {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) {
            throw usage("\(option) needs a unit: 90s, 15m, 2h, 1d (got '\(text)')")
        }
        guard let last = text.last, let scale = units[last], let value = Int64(text.dropLast()), value > 0 else {
            throw usage("\(option) '\(text.escapingControlCharacters)' is not a duration (e.g. 90s, 15m, 2h, 1d)")
        }
        let (seconds, overflow) = value.multipliedReportingOverflow(by: scale)
        // A year is far beyond any token's use, and keeps `now + ttl` from overflowing.
        guard !overflow, seconds <= maximumDuration else {
            throw usage("\(option) '\(text)' is too long (at most 365d)")
        }
        return seconds
    }
}

/// Marks a TransferError as a usage error, so the CLI exits 64 and prints the usage line.
public struct UsageMarker: Error, Sendable {}

extension TransferError {
    public var isUsageError: Bool { cause is UsageMarker }
}
