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
