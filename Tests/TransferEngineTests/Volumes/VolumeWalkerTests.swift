import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

struct VolumeWalkerTests {
    /// Entries as (path, kind), with and without the per-file stat the archiver skips.
    private static func listing(_ root: String, statsRegularFiles: Bool) throws -> [String] {
        var walker = VolumeWalker(root: root)
        walker.statsRegularFiles = statsRegularFiles
        var seen: [String] = []
        try walker.walk(
            visit: { entry in
                if statsRegularFiles || entry.kind != .file {
                    #expect(entry.status.st_mode & S_IFMT != 0)
                }
                seen.append("\(entry.path) \(entry.kind)")
            },
            skipped: { path, what in seen.append("\(path) skipped \(what)") })
        return seen
    }

    /// Skipping the stat of regular files changes no kind, order or skip: the directory entry's
    /// type says "regular file" exactly when the stat would, and everything else is still stat'ed.
    @Test func directoryEntryTypesMatchStat() throws {
        try TempDirectory.with { temp in
            let root = temp.appending("volume")
            try Fixtures.makeSampleVolume(at: root)
            #expect(mkfifo(root + "/pipe", 0o600) == 0)
            #expect(symlink("missing-target", root + "/dangling") == 0)
            let full = try Self.listing(root, statsRegularFiles: true)
            let fast = try Self.listing(root, statsRegularFiles: false)
            #expect(full == fast)
            #expect(full.contains { $0.hasSuffix("pipe skipped FIFO") })
            #expect(full.contains { $0.hasSuffix("dangling symlink") })
            #expect(full.filter { $0.hasSuffix(" file") }.count == VolumeArchiverTests.sampleFiles)
        }
    }

    /// A regular file swapped for a FIFO after the walk listed it is skipped, not waited on forever.
    @Test func fileReplacedByFIFOIsSkippedWithoutHanging() throws {
        try TempDirectory.with { temp in
            let root = try temp.makeDirectory("volume")
            for name in ["a", "b", "c"] {
                try Data(name.utf8).write(to: URL(fileURLWithPath: "\(root)/\(name)"))
            }
            var archiver = VolumeArchiver(root: root, compression: .none)
            archiver.reportsSkipped = false
            let swapped = Locked(false)
            // Swap "b" for a FIFO as soon as "a" has been read (the walk has listed "b" by then).
            archiver.progress = { _ in
                guard !swapped.get() else { return }
                swapped.set(true)
                unlink("\(root)/b")
                mkfifo("\(root)/b", 0o600)
            }
            let summary = try archiver.run { _ in }
            #expect(swapped.get())
            #expect(summary.files == 2)
            #expect(summary.skipped == 1)
        }
    }
}

/// Reading a volume to send or back it up leaves every access time as it was (`O_NOATIME`).
struct AccessTimeTests {
    private static func accessTime(_ path: String) -> Int {
        var st = stat()
        guard lstat(path, &st) == 0 else { return -1 }
        return st.st_atim.tv_sec
    }

    /// Sets atime two days back and mtime three (so `relatime` would update atime on any read).
    private static func age(_ path: String) {
        let now = time(nil)
        var times = [timespec(tv_sec: now - 2 * 86_400, tv_nsec: 0), timespec(tv_sec: now - 3 * 86_400, tv_nsec: 0)]
        utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
    }

    @Test func archivingLeavesAccessTimesAlone() throws {
        try TempDirectory.with { temp in
            let root = temp.appending("volume")
            try Fixtures.makeSampleVolume(at: root)
            var paths: [String] = []
            try VolumeWalker(root: root).walk { entry in
                if entry.kind != .symlink { paths.append(root + "/" + entry.path.description) }
            }
            let control = root + "/control"
            try Data("read the ordinary way".utf8).write(to: URL(fileURLWithPath: control))
            for path in paths + [control, root] { Self.age(path) }
            let before = Dictionary(uniqueKeysWithValues: paths.map { ($0, Self.accessTime($0)) })

            // The control shows that this file system records access times at all (not `noatime`).
            let fd = open(control, O_RDONLY)
            var byte: UInt8 = 0
            #expect(read(fd, &byte, 1) == 1)
            close(fd)
            #expect(Self.accessTime(control) > before.values.max()!)

            var archiver = VolumeArchiver(root: root, compression: .none)
            archiver.reportsSkipped = false
            let summary = try archiver.run { _ in }
            #expect(summary.files >= VolumeArchiverTests.sampleFiles)
            for path in paths {
                #expect(Self.accessTime(path) == before[path], "\(path) was read with its access time updated")
            }
        }
    }
}

struct BackgroundFlusherTests {
    /// Enough small files trigger flushes on the helper thread; `stop` waits for it and may be repeated.
    @Test func flushesWhenThresholdIsCrossed() throws {
        try TempDirectory.with { temp in
            let fd = open(temp.path, O_RDONLY | O_DIRECTORY)
            defer { close(fd) }
            let flusher = BackgroundFlusher(descriptor: fd, thresholdBytes: 64 << 10)
            for _ in 0..<10 {  // 10 × (1000 + perFileCost) < 64 KiB
                flusher.noteWritten(bytes: 1000)
                flusher.noteFile()
            }
            #expect(flusher.flushes == 0)
            for _ in 0..<200 {
                flusher.noteWritten(bytes: 1000)
                flusher.noteFile()
            }
            // The flush runs on the helper thread, not in noteWritten.
            let deadline = Date().addingTimeInterval(10)
            while flusher.flushes == 0 && Date() < deadline { usleep(1000) }
            flusher.stop()
            flusher.stop()
            #expect(flusher.flushes >= 1)
            flusher.noteWritten(bytes: 1 << 30)  // after stop: ignored
            #expect(flusher.flushes >= 1)
        }
    }

    @Test func belowThresholdNeverStartsAThread() throws {
        try TempDirectory.with { temp in
            let fd = open(temp.path, O_RDONLY | O_DIRECTORY)
            defer { close(fd) }
            let flusher = BackgroundFlusher(descriptor: fd, thresholdBytes: 1 << 30)
            for _ in 0..<100 {
                flusher.noteWritten(bytes: 100)
                flusher.noteFile()
            }
            flusher.stop()
            #expect(flusher.flushes == 0)
        }
    }
}
