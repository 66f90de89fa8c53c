#if canImport(Glibc)
import Glibc
#endif

/// A volume-relative path as raw bytes. Linux file names are bytes, not necessarily UTF-8, so
/// paths are kept byte-exact end to end and only turned into `String` for messages.
public struct PathBytes: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    public var isEmpty: Bool { bytes.isEmpty }
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    /// `self/name` (or `name` when self is the root).
    public func appending(_ name: [UInt8]) -> PathBytes {
        bytes.isEmpty ? PathBytes(name) : PathBytes(bytes + [0x2f] + name)
    }

    /// The non-empty components, splitting on `/`.
    public var components: [[UInt8]] {
        bytes.split(separator: 0x2f, omittingEmptySubsequences: true).map(Array.init)
    }

    /// NUL-terminated copy for C calls.
    public var cString: [CChar] { bytes.map { CChar(bitPattern: $0) } + [0] }
}

/// Byte-level helpers shared by path code.
enum CString {
    static func bytes(_ pointer: UnsafePointer<CChar>) -> [UInt8] {
        Array(UnsafeBufferPointer(start: UnsafeRawPointer(pointer).assumingMemoryBound(to: UInt8.self), count: strlen(pointer)))
    }

    static func terminated(_ bytes: [UInt8]) -> [CChar] { bytes.map { CChar(bitPattern: $0) } + [0] }
}
