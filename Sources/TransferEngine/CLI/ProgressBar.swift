#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress bar on standard error, drawn only when standard error is a terminal.
///
/// `[##########··········]  48%  532.1 MiB / 1.1 GiB  312.4 MB/s  ETA 0:02`
public final class ProgressBar: @unchecked Sendable {
    public let enabled: Bool
    private var drawn = false

    public init(enabled: Bool = isatty(2) == 1) {
        self.enabled = enabled
    }

    public func update(done: Int64, total: Int64, seconds: Double) {
        guard enabled else { return }
        let line = Self.render(done: done, total: total, seconds: seconds, width: 24)
        write("\r\u{1B}[K" + line)
        drawn = true
    }

    /// Clears the bar so the final summary starts on a clean line.
    public func finish() {
        guard enabled, drawn else { return }
        write("\r\u{1B}[K")
        drawn = false
    }

    private func write(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }

    public static func render(done: Int64, total: Int64, seconds: Double, width: Int) -> String {
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "#", count: filled) + String(repeating: "·", count: width - filled)
        let percent = Int((fraction * 100).rounded(.down))
        let rate = seconds > 0 ? Double(done) / seconds : 0
        var eta = "--:--"
        if rate > 0, total >= done {
            let left = Int(Double(total - done) / rate)
            eta = "\(left / 60):" + (left % 60 < 10 ? "0" : "") + "\(left % 60)"
        }
        let pad = percent < 10 ? "  " : (percent < 100 ? " " : "")
        return "[\(bar)] \(pad)\(percent)%  \(ByteCount.format(done)) / \(ByteCount.format(total))  "
            + "\(ByteCount.rate(bytes: done, seconds: seconds))  ETA \(eta)"
    }
}
