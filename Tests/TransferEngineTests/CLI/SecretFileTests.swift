import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// A secret file is read to its end whatever kind of file it is, up to 64 KiB.
struct SecretFileTests {
    @Test func aPipeIsReadLikeAFile() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let text = Array("  node-token\n".utf8)
        #expect(write(fds[1], text, text.count) == text.count)
        close(fds[1])
        defer { close(fds[0]) }
        #expect(try SecretFile.read("/proc/self/fd/\(fds[0])") == Array("node-token".utf8))
    }

    @Test func moreThanTheLimitIsRefused() throws {
        try TempDirectory.with { dir in
            let path = dir.appending("big")
            try Data(repeating: 0x61, count: SecretFile.limit + 1).write(to: URL(fileURLWithPath: path))
            #expect { _ = try SecretFile.read(path) } throws: {
                ($0 as? TransferError)?.message.contains("more than 64 KiB") == true
            }
            try Data(repeating: 0x61, count: SecretFile.limit).write(to: URL(fileURLWithPath: path))
            #expect(try SecretFile.read(path).count == SecretFile.limit)
        }
    }

    @Test func aDirectoryAMissingFileAndAnEmptyOneAreClearErrors() throws {
        try TempDirectory.with { dir in
            let empty = dir.appending("empty")
            try Data(" \n".utf8).write(to: URL(fileURLWithPath: empty))
            for (path, code, words) in [
                (dir.path, TransferError.Code.invalidInput, "is a directory"),
                (dir.appending("none"), .notFound, "cannot read"), (empty, .invalidInput, "is empty"),
            ] {
                #expect { _ = try SecretFile.read(path) } throws: { error in
                    let error = error as? TransferError
                    return error?.code == code && error!.message.hasPrefix("--secret-file: ")
                        && error!.message.contains(words)
                }
            }
        }
    }
}
