#if canImport(Glibc)
import Glibc
#endif

/// The data regions of a file with holes, so the archive carries only the data (a pax sparse
/// entry, GNU.sparse 1.0, which GNU tar, Go's archive/tar and libarchive all read) instead of
/// every zero of a 3 GiB sparse image.
enum SparseRegions {
    struct Region: Equatable {
        var offset: Int64
        var length: Int64
    }

    // lseek(2) whences (GNU; not visible through Swift's Glibc module).
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4

    /// The data regions of the open file `fd` of `size` bytes, or nil when it has no holes (or the
    /// file system cannot tell): then it is archived as an ordinary file.
    static func of(_ fd: Int32, size: Int64, allocatedBytes: Int64) -> [Region]? {
        // Fewer bytes allocated than the size is the cheap sign of holes; most files skip the seeks.
        guard size > 0, allocatedBytes < size else { return nil }
        var regions: [Region] = []
        var position: Int64 = 0
        while position < size {
            let data = lseek(fd, off_t(position), seekData)
            if data < 0 {
                if errno == ENXIO { break }  // only a hole up to the end
                return nil
            }
            guard Int64(data) < size else { break }
            var hole = Int64(lseek(fd, data, seekHole))
            if hole < 0 { return nil }
            hole = min(hole, size)
            regions.append(Region(offset: Int64(data), length: hole - Int64(data)))
            position = hole
        }
        if regions.count == 1 && regions[0] == Region(offset: 0, length: size) { return nil }
        // All hole: an empty region at the end still makes it a sparse entry (as GNU tar writes it).
        return regions.isEmpty ? [Region(offset: size, length: 0)] : regions
    }
}
