import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// One transfer per server; a new one waits only for a failed one that is cleaning up.
struct VolumeStoreReservationTests {
    static let server = "7bb8312c-bbeb-4445-86c7-c010597f9c13"

    @Test func aServerHeldByARunningTransferIsRefusedAtOnce() throws {
        try TempDirectory.with { temp in
            let store = try VolumeStore(dataDirectory: temp.appending("data"))
            #expect(store.reserve(Self.server))
            #expect(!store.reserve(Self.server.uppercased()))
            let started = MonotonicClock.now()
            #expect(!store.reserve(Self.server, waitingForCleanup: 5))
            #expect(MonotonicClock.now() - started < 1, "waited for a transfer that is still running")
            store.release(Self.server)
            #expect(store.reserve(Self.server, waitingForCleanup: 5))
        }
    }

    @Test func aServerWhoseTransferIsCleaningUpIsWaitedFor() throws {
        try TempDirectory.with { temp in
            let store = try VolumeStore(dataDirectory: temp.appending("data"))
            #expect(store.reserve(Self.server))
            store.markEnding(Self.server)
            let releaser = Thread { usleep(200_000); store.release(Self.server) }
            releaser.start()
            let started = MonotonicClock.now()
            #expect(store.reserve(Self.server, waitingForCleanup: 5))
            #expect(MonotonicClock.now() - started >= 0.15)
            // Held again, by the new transfer, which is not ending: the next one is refused.
            #expect(!store.reserve(Self.server, waitingForCleanup: 0.2))
        }
    }

    @Test func cleanupThatNeverEndsIsWaitedForOnlyUntilTheTimeout() throws {
        try TempDirectory.with { temp in
            let store = try VolumeStore(dataDirectory: temp.appending("data"))
            #expect(store.reserve(Self.server))
            store.markEnding(Self.server)
            let started = MonotonicClock.now()
            #expect(!store.reserve(Self.server, waitingForCleanup: 0.3))
            #expect(MonotonicClock.now() - started >= 0.25)
        }
    }

    @Test func markingAServerNobodyHoldsLeavesNoTrace() throws {
        try TempDirectory.with { temp in
            let store = try VolumeStore(dataDirectory: temp.appending("data"))
            store.markEnding(Self.server)
            #expect(store.reserve(Self.server))
            let started = MonotonicClock.now()
            #expect(!store.reserve(Self.server, waitingForCleanup: 5))
            #expect(MonotonicClock.now() - started < 1)
        }
    }
}

/// Writes from outside a transfer (uploads) land only while no transfer holds the server.
struct VolumeStoreWriteTests {
    static let server = VolumeStoreReservationTests.server

    @Test func aWriteIsRefusedWhileATransferHoldsTheServer() throws {
        try TempDirectory.with { temp in
            let store = try VolumeStore(dataDirectory: temp.appending("data"))
            #expect(store.reserve(Self.server))
            #expect(throws: TransferError.self) { try store.beginWrite(Self.server.uppercased()) }
            store.release(Self.server)
            var landed = false
            try store.beginWrite(Self.server).land { landed = true }
            #expect(landed)
        }
    }

    @Test func aWriteDuringWhichATransferRanDoesNotLand() throws {
        try TempDirectory.with { temp in
            let store = try VolumeStore(dataDirectory: temp.appending("data"))
            let running = try store.beginWrite(Self.server)
            let ended = try store.beginWrite(Self.server)
            #expect(store.reserve(Self.server))
            var landed = false
            let conflict = #expect(throws: TransferError.self) { try running.land { landed = true } }
            #expect(conflict?.code == .conflict && conflict?.message.contains("is transferring") == true)
            // The transfer has ended, but the volume the write began in may be gone (replaced).
            store.release(Self.server)
            #expect(throws: TransferError.self) { try ended.land { landed = true } }
            #expect(!landed)
        }
    }

    @Test func anotherServersTransferDoesNotStopAWrite() throws {
        try TempDirectory.with { temp in
            let store = try VolumeStore(dataDirectory: temp.appending("data"))
            let write = try store.beginWrite(Self.server)
            #expect(store.reserve("00000000-0000-4000-8000-000000000000"))
            var landed = false
            try write.land { landed = true }
            #expect(landed)
        }
    }
}

/// A data directory that disappears under the daemon is a node fault (500, named), not a 404.
struct VolumeStoreRootTests {
    static let server = VolumeStoreReservationTests.server

    @Test func aRemovedDataDirectoryIsNamed() throws {
        try TempDirectory.with { temp in
            let data = temp.appending("data")
            let store = try VolumeStore(dataDirectory: data)
            #expect(store.rootProblem == nil)
            #expect(throws: TransferError.self) { try store.requireVolume(Self.server) }
            #expect((try? store.requireVolume(Self.server)) == nil)
            try FileTree.remove(data)
            for attempt in [{ try store.requireVolume(Self.server) }, { _ = try store.makeStaging(for: Self.server) }] {
                let error = #expect(throws: TransferError.self) { try attempt() }
                #expect(error?.code == .internal)
                #expect(error?.message.contains("volumes directory \(data) is missing") == true)
                #expect(error?.message.contains(".staging") == false)
            }
        }
    }

    @Test func aDirectoryReplacedAtThePathIsNotTakenForTheDataDirectory() throws {
        try TempDirectory.with { temp in
            let data = temp.appending("data")
            let store = try VolumeStore(dataDirectory: data)
            // What an unmounted data disk leaves: an (empty) directory of the same name.
            try FileTree.remove(data)
            try FileTree.makeDirectories(data + "/.staging")
            let error = #expect(throws: TransferError.self) { try store.requireVolume(Self.server) }
            #expect(error?.code == .internal)
            #expect(error?.message.contains("not the one transferd opened") == true)
        }
    }

    @Test func aMissingVolumeUnderAHealthyRootIsNotFound() throws {
        try TempDirectory.with { temp in
            let store = try VolumeStore(dataDirectory: temp.appending("data"))
            let error = #expect(throws: TransferError.self) { try store.requireVolume(Self.server) }
            #expect(error?.code == .notFound)
            try FileTree.makeDirectories(store.volumePath(Self.server))
            try store.requireVolume(Self.server)
        }
    }
}
