#if canImport(Glibc)
import Glibc
#endif

/// The open directories of a depth-first walk, kept on the heap instead of the call stack: a game
/// server's user can nest directories thousands of levels deep, more than a thread's stack holds
/// frames for. The one traversal the walker, tree removal and the owner walk share.
///
/// ```
///  push(root) ─▶ next(): .entry(parent fd, label, name, type) … push(child) … .left(child's label) …
/// ```
/// Each directory carries a caller's `Label` (its path, its name). Every pushed descriptor is
/// owned here: closed when its directory is left, or by `closeAll()` after an error.
struct DirectoryStack<Label> {
    enum Step {
        /// An entry of the directory open at `parent`.
        case entry(parent: Int32, label: Label, name: [UInt8], type: UInt8)
        /// The directory with this label has been walked and closed; `topDescriptor` is its parent.
        case left(Label)
    }

    private var frames: [(fd: Int32, label: Label, entries: [(name: [UInt8], type: UInt8)], next: Int)] = []

    /// Directories open, the root included.
    var depth: Int { frames.count }
    /// The directory whose entries come next (after `.left`, the parent of the one left).
    var topDescriptor: Int32? { frames.last?.fd }

    /// Takes `fd` and reads its entries (closing `fd` if that fails); names sorted if asked.
    mutating func push(_ fd: Int32, label: Label, display: String, sorted: Bool = false) throws {
        var entries: [(name: [UInt8], type: UInt8)]
        do {
            entries = try FileTree.entries(ofDirectory: fd, display: display)
        } catch {
            close(fd)
            throw error
        }
        if sorted { entries.sort { $0.name.lexicographicallyPrecedes($1.name) } }
        frames.append((fd, label, entries, 0))
    }

    /// The next step of the walk; nil when every directory has been left.
    mutating func next() -> Step? {
        guard let top = frames.indices.last else { return nil }
        guard frames[top].next < frames[top].entries.count else {
            let done = frames.removeLast()
            close(done.fd)
            return .left(done.label)
        }
        let entry = frames[top].entries[frames[top].next]
        frames[top].next += 1
        return .entry(parent: frames[top].fd, label: frames[top].label, name: entry.name, type: entry.type)
    }

    /// Closes every directory still open (after an error).
    mutating func closeAll() {
        for frame in frames { close(frame.fd) }
        frames.removeAll()
    }
}
