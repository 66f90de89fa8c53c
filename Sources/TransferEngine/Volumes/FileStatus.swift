#if canImport(Glibc)
import Glibc
#endif

/// A point in time as stored in file metadata.
public struct FileTime: Sendable, Equatable {
    public var seconds: Int64
    public var nanoseconds: Int
    public init(seconds: Int64, nanoseconds: Int = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }
    var timespec: Glibc.timespec { Glibc.timespec(tv_sec: Int(seconds), tv_nsec: nanoseconds) }
}

/// The metadata of one file system object that an archive keeps.
public struct FileStatus: Sendable {
    /// `S_IFMT` bits.
    public var fileType: UInt32
    public var permissions: UInt32
    public var size: Int64
    public var mtime: FileTime
    public var uid: Int64
    public var gid: Int64

    init(_ st: stat) {
        fileType = UInt32(st.st_mode & S_IFMT)
        permissions = UInt32(st.st_mode & 0o7777)
        size = (st.st_mode & S_IFMT) == S_IFREG ? Int64(st.st_size) : 0
        mtime = FileTime(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: st.st_mtim.tv_nsec)
        uid = Int64(st.st_uid)
        gid = Int64(st.st_gid)
    }
}
