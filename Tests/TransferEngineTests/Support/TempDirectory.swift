import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under the system temp directory, removed (with everything in it) when the
/// closure passed to `with` returns or throws.
///
/// A closure rather than a `deinit`, because Swift may release an object right after its last use,
/// which could be before a child process is done with the path.
struct TempDirectory {
    /// Absolute path, no trailing slash.
    let path: String

    /// Creates the directory (mode 0700, unique name), runs `body`, then removes the tree.
    @discardableResult
    static func with<T>(_ body: (TempDirectory) throws -> T) throws -> T {
        let directory = try TempDirectory()
        defer { directory.remove() }
        return try body(directory)
    }

    private init() throws {
        var template = Array("\(NSTemporaryDirectory())/transfer-engine-tests.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        path = URL(fileURLWithPath: String(cString: made)).standardizedFileURL.path
    }

    /// `path/relative`.
    func appending(_ relative: String) -> String { path + "/" + relative }

    /// Creates `path/relative` (and its parents) and returns it.
    @discardableResult
    func makeDirectory(_ relative: String) throws -> String {
        let full = appending(relative)
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        return full
    }

    /// Every path below the root, relative to it, sorted; symlinks are listed, never followed.
    /// The contents of `excluded` (a relative path) are left out.
    func listing(excludingSubtree excluded: String? = nil) throws -> [String] {
        try Self.listing(of: path, excludingSubtree: excluded)
    }

    /// Every path below `root`, relative to it, sorted; symlinks are listed, never followed.
    static func listing(of root: String, excludingSubtree excluded: String? = nil) throws -> [String] {
        var out: [String] = []
        func walk(_ relative: String) throws {
            let full = relative.isEmpty ? root : root + "/" + relative
            for name in try FileManager.default.contentsOfDirectory(atPath: full).sorted() {
                let child = relative.isEmpty ? name : relative + "/" + name
                out.append(child)
                if child == excluded { continue }
                var st = stat()
                if lstat(root + "/" + child, &st) == 0, st.st_mode & S_IFMT == S_IFDIR { try walk(child) }
            }
        }
        try walk("")
        return out
    }

    private func remove() {
        // Extracted trees may hold directories without write permission; make them removable first.
        for relative in (try? Self.listing(of: path)) ?? [] {
            var st = stat()
            let full = appending(relative)
            if lstat(full, &st) == 0, st.st_mode & S_IFMT == S_IFDIR { chmod(full, 0o700) }
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}
