import Foundation
import Testing
@testable import TransferEngine

/// An upload command line names each file once: a repeat is dropped (and noted), two files that
/// would land under one name are refused.
struct UploadClientTests {
    @Test func theSameFileNamedAgainIsKeptOnce() throws {
        try TempDirectory.with { dir in
            let a = dir.appending("a.txt")
            let b = dir.appending("b.txt")
            try Data("a".utf8).write(to: URL(fileURLWithPath: a))
            try Data("b".utf8).write(to: URL(fileURLWithPath: b))
            let named = [a, b, a, dir.path + "/./a.txt", dir.path + "//b.txt"]
            let (files, repeated) = try UploadClient.distinctFiles(named)
            #expect(files == [a, b])
            #expect(repeated == [a, dir.path + "/./a.txt", dir.path + "//b.txt"])
        }
    }

    @Test func twoFilesWithOneNameAreAUsageError() throws {
        try TempDirectory.with { dir in
            for sub in ["x", "y"] {
                try dir.makeDirectory(sub)
                try Data(sub.utf8).write(to: URL(fileURLWithPath: dir.appending("\(sub)/a.txt")))
            }
            #expect {
                _ = try UploadClient.distinctFiles([dir.appending("x/a.txt"), dir.appending("y/a.txt")])
            } throws: { error in
                let error = error as? TransferError
                return error?.isUsageError == true && error!.message.contains("would both be uploaded as 'a.txt'")
            }
        }
    }

    /// A symlink lands under its own name: not a repeat of its target.
    @Test func aSymlinkUnderAnotherNameIsAnotherFile() throws {
        try TempDirectory.with { dir in
            let a = dir.appending("a.txt")
            try Data("a".utf8).write(to: URL(fileURLWithPath: a))
            #expect(symlink("a.txt", dir.appending("alias.txt")) == 0)
            let (files, repeated) = try UploadClient.distinctFiles([a, dir.appending("alias.txt")])
            #expect(files.count == 2 && repeated.isEmpty)
        }
    }
}
