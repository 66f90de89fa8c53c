import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// A game server's user can nest directories thousands of levels deep in its volume (with
/// `mkdirat`, past PATH_MAX). Every tree walk runs on a daemon thread with a 1 MiB stack, as the
/// daemon's own do: it must end with a result or a clear error, never a stack overflow.
struct DeepTreeTests {
    /// `levels` directories named "d" below `root`, then a file "f" at the bottom.
    static func makeDeepTree(_ root: String, levels: Int) {
        var fd = open(root, O_RDONLY | O_DIRECTORY)
        for _ in 0..<levels {
            mkdirat(fd, "d", 0o755)
            let child = openat(fd, "d", O_RDONLY | O_DIRECTORY)
            close(fd)
            fd = child
        }
        let file = openat(fd, "f", O_WRONLY | O_CREAT, 0o644)
        close(file)
        close(fd)
    }

    /// Runs `body` on a thread with the daemon's 1 MiB stack and returns its error, if any.
    static func onDaemonThread(_ body: @escaping @Sendable () throws -> Void) -> (any Error)? {
        StageThread(name: "deep-tree", body).join()
    }

    @Test func walkingBelowTheLimitVisitsEverything() throws {
        try TempDirectory.with { temp in
            let root = try temp.makeDirectory("volume")
            Self.makeDeepTree(root, levels: VolumeWalker.maximumDepth - 1)
            let counts = Locked((directories: 0, files: 0))
            let error = Self.onDaemonThread {
                try VolumeWalker(root: root).walk { entry in
                    var value = counts.get()
                    if entry.kind == .directory { value.directories += 1 } else { value.files += 1 }
                    counts.set(value)
                }
            }
            #expect(error == nil)
            #expect(counts.get().directories == VolumeWalker.maximumDepth - 1 && counts.get().files == 1)
        }
    }

    @Test(arguments: [VolumeWalker.maximumDepth + 1, 10_000])
    func walkingPastTheLimitIsAClearError(levels: Int) throws {
        try TempDirectory.with { temp in
            let root = try temp.makeDirectory("volume")
            Self.makeDeepTree(root, levels: levels)
            let error = Self.onDaemonThread { try VolumeWalker(root: root).walk { _ in } }
            let refused = try #require(error as? TransferError)
            #expect(refused.code == .invalidInput && refused.message.contains("nested deeper than \(VolumeWalker.maximumDepth) levels"))
            // The same tree is removed whole, and given to an owner, on the same small stack.
            #expect(Self.onDaemonThread { try FileOwner(uid: getuid(), gid: getgid()).apply(toTree: root) } == nil)
            #expect(Self.onDaemonThread { try FileTree.remove(root) } == nil)
            #expect(!FileTree.exists(root))
        }
    }
}
