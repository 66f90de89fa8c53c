import Foundation
import Testing
@testable import TransferEngine

/// The volumes directories carry the "unrelated subdirectories" hint wherever the file system has
/// inode flags, and setting it never fails a store or touches anything but the flag.
struct DirectoryAllocationTests {
    @Test func volumeStoreMarksStagingAndDataDirectories() throws {
        try TempDirectory.with { temp in
            let data = temp.appending("volumes")
            do {
                let store = try VolumeStore(dataDirectory: data)
                guard let supported = DirectoryAllocation.subdirectoriesAreMarkedUnrelated(temp.path) else {
                    // No inode flags here (tmpfs, overlay): the store still opened; nothing to check.
                    #expect(FileTree.isDirectory(store.stagingDirectory))
                    return
                }
                #expect(supported == false, "a fresh directory starts without the hint")
                #expect(DirectoryAllocation.subdirectoriesAreMarkedUnrelated(store.stagingDirectory) == true)
                #expect(DirectoryAllocation.subdirectoriesAreMarkedUnrelated(data) == true)
                // Staging trees made below it work as before, and do not inherit the hint themselves.
                let staging = try store.makeStaging(for: "0b7e4d4e-2d5c-4a8c-9a59-1f0e8f5d9c11")
                #expect(FileTree.isDirectory(staging))
                #expect(DirectoryAllocation.subdirectoriesAreMarkedUnrelated(staging) == false)
                // While it is open, no second store may use the directory (one daemon per directory).
                #expect(throws: TransferError.self) { _ = try VolumeStore(dataDirectory: data) }
            }
            // Reopening the store (a daemon restart) keeps the hint and is not an error.
            _ = try VolumeStore(dataDirectory: data)
            #expect(DirectoryAllocation.subdirectoriesAreMarkedUnrelated(data + "/.staging") == true)
        }
    }

    @Test func markingIsIdempotentAndKeepsOtherFlags() throws {
        try TempDirectory.with { temp in
            let dir = temp.appending("d")
            try FileTree.makeDirectories(dir)
            guard DirectoryAllocation.subdirectoriesAreMarkedUnrelated(dir) != nil else { return }
            #expect(DirectoryAllocation.markSubdirectoriesUnrelated(dir))
            #expect(DirectoryAllocation.markSubdirectoriesUnrelated(dir))
            #expect(DirectoryAllocation.subdirectoriesAreMarkedUnrelated(dir) == true)
            // lsattr (e2fsprogs) reads the same flag: 'T' among the attributes.
            let lsattr = try ProcessResult.run("/usr/bin/env", ["lsattr", "-d", dir])
            #expect(lsattr.status == 0)
            #expect(lsattr.stdout.split(separator: " ").first?.contains("T") == true, "lsattr: \(lsattr.stdout)")
        }
    }

    @Test func refusesWhatIsNotADirectory() throws {
        try TempDirectory.with { temp in
            #expect(!DirectoryAllocation.markSubdirectoriesUnrelated(temp.appending("missing")))
            let file = temp.appending("file")
            try Data("x".utf8).write(to: URL(fileURLWithPath: file))
            #expect(!DirectoryAllocation.markSubdirectoriesUnrelated(file))
            #expect(DirectoryAllocation.subdirectoriesAreMarkedUnrelated(file) == nil)
            // A symlink to a directory is not followed.
            try FileManager.default.createSymbolicLink(atPath: temp.appending("link"), withDestinationPath: temp.path)
            #expect(!DirectoryAllocation.markSubdirectoriesUnrelated(temp.appending("link")))
        }
    }
}
