#if canImport(Glibc)
import Glibc
#endif

/// Seconds from a monotonic clock, for rates and timeouts (never for token times).
public enum MonotonicClock {
    public static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }
}

/// Wall-clock seconds since the epoch, injectable so token checks can be tested at any time.
public struct WallClock: Sendable {
    public var now: @Sendable () -> Int64
    public init(now: @escaping @Sendable () -> Int64) { self.now = now }
    public static let system = WallClock { Int64(time(nil)) }
}
