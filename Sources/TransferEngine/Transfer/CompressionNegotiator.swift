/// Picks the archive stream's compression for a push.
///
/// ```
///  requested gzip ─────────────────────────────────────────────▶ gzip (what every Wings node takes)
///  auto / zstd / none ─▶ GET /api/transfers/capabilities ── no answer (Wings) ─▶ gzip (auto) or error
///                                 │ answered
///                                 ▼
///             time POST /api/transfers/probe (link MB/s)  ‖  compress a sample of the volume (zstd MB/s, ratio)
///             auto: zstd if min(zstd rate, link rate ÷ ratio) beats the link rate by 10 %, else none
/// ```
public enum CompressionNegotiator {
    public enum Mode: String, Sendable, CaseIterable { case auto, gzip, zstd, none }

    public struct Choice: Sendable {
        public var compression: StreamCompression
        public var reason: String
        public var linkMBps: Double?
        public var zstdMBps: Double?
        public var zstdRatio: Double?
        /// The destination keeps hardlinks (one of ours, which says so): linked files go as links.
        public var preservesHardlinks = false
    }

    /// - Parameter cancelled: polled while waiting on the network (a DELETE on a panel-driven push).
    public static func choose(
        mode: Mode, url: String, token: String, volume: String, insecureTLS: Bool = false, caCertificate: String? = nil,
        cancelled: @escaping () -> Bool = { false }
    ) throws -> Choice {
        let tls = TLSOptions(insecure: insecureTLS, caCertificate: caCertificate)
        if mode == .gzip { return Choice(compression: .gzip, reason: "gzip requested") }
        let base = baseURL(url)
        let bearer = token.lowercased().hasPrefix("bearer ") ? token : "Bearer \(token)"
        guard let (offered, features) = try capabilities(base: base, bearer: bearer, tls: tls, cancelled: cancelled) else {
            if mode == .auto {
                return Choice(compression: .gzip, reason: "the destination does not negotiate (a Wings node?): gzip")
            }
            throw TransferError(
                .unsupported, .transfer,
                "the destination does not announce \(mode.rawValue) support (a Wings node takes only gzip; use --compression gzip)")
        }
        if mode != .auto {
            let wanted = StreamCompression(rawValue: mode.rawValue)!
            guard offered.contains(wanted.rawValue) else {
                throw TransferError(.unsupported, .transfer, "the destination does not accept \(mode.rawValue)")
            }
            return Choice(compression: wanted, reason: "\(mode.rawValue) requested", preservesHardlinks: features.contains("hardlinks"))
        }
        // The two measurements use different resources (the link, the disk and a core), so they
        // run side by side: the stream starts after the slower of the two, not after both.
        nonisolated(unsafe) var sample = ZstdSample()
        let measuredLink = LinkRateBox()
        let sampler = StageThread(name: "zstd-sample") { sample = zstdSample(volume: volume, link: measuredLink) }
        let link = linkRate(base: base, bearer: bearer, tls: tls, cancelled: cancelled)
        measuredLink.set(link)
        _ = sampler.join()
        if cancelled() { throw TransferError(.cancelled, .transfer, "cancelled") }
        let (zstdRate, ratio) = (sample.rate, sample.ratio)
        var choice = Choice(
            compression: .none, reason: "", linkMBps: link, zstdMBps: zstdRate, zstdRatio: ratio,
            preservesHardlinks: features.contains("hardlinks"))
        guard offered.contains("zstd"), let link, let zstdRate, let ratio, ratio > 0 else {
            choice.compression = offered.contains("none") ? .none : .gzip
            choice.reason = "could not measure the link or the data: \(choice.compression.rawValue)"
            return choice
        }
        let withZstd = min(zstdRate, link / ratio)
        if withZstd > link * 1.1 || !offered.contains("none") {
            choice.compression = .zstd
            choice.reason = "link \(ByteCount.fixed(link, 0)) MB/s < zstd \(ByteCount.fixed(withZstd, 0)) MB/s effective (ratio \(ByteCount.fixed(ratio, 2)))"
        } else {
            choice.compression = .none
            choice.reason = "link \(ByteCount.fixed(link, 0)) MB/s ≥ zstd \(ByteCount.fixed(withZstd, 0)) MB/s effective: no compression"
        }
        return choice
    }

    /// The node URL without `/api/transfers`.
    static func baseURL(_ url: String) -> String {
        var base = OutgoingTransfer.transfersURL(url)
        base.removeLast("/api/transfers".count)
        return base
    }

    /// The compressions the destination accepts and the features it announces (`hardlinks`); nil
    /// if it does not negotiate (a Wings node answers 404). A refused token or an unreachable node
    /// throws, as the push itself would.
    static func capabilities(
        base: String, bearer: String, tls: TLSOptions, cancelled: @escaping () -> Bool
    ) throws -> (compressions: [String], features: [String])? {
        let easy = try CurlEasyHandle(url: base + "/api/transfers/capabilities")
        easy.shouldCancel = cancelled
        easy.addHeader("Authorization: \(bearer)")
        tls.apply(to: easy)
        easy.setTimeout(seconds: 10)
        let status: Int
        do {
            status = try easy.perform()
        } catch let error as TransferError where error.code == .timeout {
            return nil  // a node that accepts and never answers is not one of ours
        }
        if status == 401 || status == 403 { throw OutgoingTransfer.remoteError(status: status, body: easy.responseBody) }
        guard status == 200, let json = try? JSONValue.parse(easy.responseBody), json["engine"]?.stringValue == "transfer-engine"
        else { return nil }
        return (json["compression"]?.arrayValue?.compactMap(\.stringValue) ?? [], json["features"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }

    /// MB/s of a 16 MiB upload to the probe endpoint (nil if it failed).
    static func linkRate(base: String, bearer: String, tls: TLSOptions, cancelled: @escaping () -> Bool) -> Double? {
        let total = 16 << 20
        let block = SecureRandom.bytes(64 * 1024)
        var sent = 0
        guard let easy = try? CurlEasyHandle(url: base + "/api/transfers/probe") else { return nil }
        easy.shouldCancel = cancelled
        easy.addHeader("Authorization: \(bearer)")
        easy.addHeader("Content-Type: application/octet-stream")
        tls.apply(to: easy)
        easy.setTimeout(seconds: 60)
        // Timed from the first body byte: connecting and a TLS handshake are not the link's rate.
        var started: Double?
        easy.setStreamingPOST { out in
            if started == nil { started = MonotonicClock.now() }
            let n = min(out.count, total - sent, block.count)
            block.withUnsafeBytes { out.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: n) }
            sent += n
            return n
        }
        let called = MonotonicClock.now()
        guard let status = try? easy.perform(), status == 200 else { return nil }
        return Double(total) / max(MonotonicClock.now() - (started ?? called), 1e-6) / 1e6
    }

    /// zstd rate (MB/s of input, archive reading included) and ratio on up to 32 MiB of the volume's
    /// tar stream, on one thread, as the transfer's compress stage runs it.
    ///
    /// Stops early, after at least 4 MiB, once `link` is known and faster than zstd's rate so far
    /// by the margin `choose` asks for: zstd cannot win then, and on a fast link the sample would
    /// otherwise be most of the negotiation's time (~80 ms for 32 MiB here).
    static func zstdSample(volume: String, link: LinkRateBox? = nil) -> ZstdSample {
        struct SampleFull: Error {}
        let limit = 32 << 20
        let minimum = 4 << 20
        guard let encoder = try? ZstdEncoder(level: 1) else { return ZstdSample() }
        var input = 0
        var output = 0
        let started = MonotonicClock.now()
        do {
            var sampler = VolumeArchiver(root: volume, compression: .none)
            sampler.reportsSkipped = false  // the push itself warns about them
            sampler.skipsLinksOutOfVolume = true
            _ = try sampler.run { bytes in
                try encoder.process(bytes) { output += $0.count }
                input += bytes.count
                if input >= limit { throw SampleFull() }
                if input >= minimum, let link = link?.value {
                    let rate = Double(input) / max(MonotonicClock.now() - started, 1e-6) / 1e6
                    if rate * 1.1 < link { throw SampleFull() }
                }
            }
        } catch is SampleFull {
        } catch {
            return ZstdSample()
        }
        try? encoder.finish { output += $0.count }
        let seconds = max(MonotonicClock.now() - started, 1e-6)
        guard input > 0 else { return ZstdSample() }
        return ZstdSample(rate: Double(input) / seconds / 1e6, ratio: Double(output) / Double(input), bytes: input)
    }

    /// What sampling zstd on the volume found (nil: could not sample).
    struct ZstdSample {
        /// MB/s of input on one thread, as the transfer compresses.
        var rate: Double?
        /// Compressed ÷ input bytes.
        var ratio: Double?
        /// Input bytes sampled.
        var bytes = 0
    }
}

/// TLS settings a request inherits from the command line.
struct TLSOptions {
    var insecure = false
    var caCertificate: String?

    func apply(to easy: CurlEasyHandle) {
        if insecure { easy.allowInsecureTLS() }
        if let caCertificate { easy.setCACertificate(caCertificate) }
    }
}

/// The link rate, once the probe has measured it (read by the zstd sampler on its own thread).
final class LinkRateBox: @unchecked Sendable {
    private let lock = Condition()
    private var rate: Double?
    private var known = false

    func set(_ value: Double?) { lock.withLock { rate = value; known = true } }
    /// The measured rate; nil while unknown or if the probe failed.
    var value: Double? { lock.withLock { known ? rate : nil } }
}
