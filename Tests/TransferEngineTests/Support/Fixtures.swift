import Foundation
import Testing

/// Test inputs: bundled fixture files (`Tests/TransferEngineTests/Fixtures`, copied as a resource)
/// and the repository's fixture scripts (`fixtures/*.py`), found from this file's path.
enum Fixtures {
    /// The repository root (this file is `Tests/TransferEngineTests/Support/Fixtures.swift`).
    static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The bytes of a bundled fixture, e.g. `bytes("hostile/dotdot.tar.gz")`.
    static func bytes(_ relativePath: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: url(relativePath)))
    }

    /// The URL of a bundled fixture.
    static func url(_ relativePath: String) throws -> URL {
        let base = try #require(Bundle.module.resourceURL, "test bundle has no resources")
        let url = base.appendingPathComponent("Fixtures").appendingPathComponent(relativePath)
        try #require(FileManager.default.fileExists(atPath: url.path), "missing fixture \(relativePath)")
        return url
    }

    /// Runs `fixtures/<script>` with python3.
    static func runScript(_ script: String, _ arguments: [String]) throws -> ProcessResult {
        try ProcessResult.run("/usr/bin/env", ["python3", repositoryRoot + "/fixtures/" + script] + arguments)
    }

    /// Creates the standard sample volume at `path` (which must not exist yet).
    static func makeSampleVolume(at path: String) throws {
        let result = try runScript("make_sample_volume.py", [path])
        try #require(result.status == 0, "make_sample_volume.py failed: \(result.stderr)")
    }

    /// Compares two trees with `fixtures/treecmp.py`: exit 0 means equal contents, types, symlink
    /// targets, modes and whole-second mtimes.
    static func compareTrees(_ a: String, _ b: String) throws -> ProcessResult {
        try runScript("treecmp.py", [a, b])
    }
}

/// The outcome of a child process.
struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String

    /// Runs `executable` to completion. Output goes through temp files, so a chatty child can never
    /// block on a full pipe.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil,
        currentDirectory: String? = nil
    ) throws -> ProcessResult {
        try TempDirectory.with { temp in
            let outPath = temp.appending("stdout")
            let errPath = temp.appending("stderr")
            _ = FileManager.default.createFile(atPath: outPath, contents: nil)
            _ = FileManager.default.createFile(atPath: errPath, contents: nil)
            let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
            let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            if let environment {
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
            }
            if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            try out.close()
            try err.close()
            return ProcessResult(
                status: process.terminationStatus,
                stdout: String(decoding: try Data(contentsOf: URL(fileURLWithPath: outPath)), as: UTF8.self),
                stderr: String(decoding: try Data(contentsOf: URL(fileURLWithPath: errPath)), as: UTF8.self))
        }
    }
}

extension Fixtures {
    /// The bytes of any file.
    static func bytes(atPath path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}
