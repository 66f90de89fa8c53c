#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// The source half of a transfer: pushes a volume to a destination's `POST /api/transfers`, as a
/// Wings source node does, and succeeds only when the destination answers 200 with a
/// confirmation: our nodes' JSON echoing the same SHA-256, or a Wings node's empty body (see
/// `Confirmation`). Any other 200 (an HTML page, a stub, a proxy's text) is a failure.
///
/// ```
///  archive thread:  VolumeArchiver (plain tar) ─▶ BoundedChunkBuffer
///  compress thread: GzipEncoder (ISA-L) / zstd / none ─▶ SHA256Hasher ─▶ BoundedChunkBuffer
///  curl thread:     "archive" part header · archive chunks · "checksum" part (hex) · closing ─▶ chunked POST
/// ```
/// The checksum part is written after the archive, when the digest is known; the whole body is
/// streamed, so memory stays at the buffer's capacity whatever the volume's size.
public final class OutgoingTransfer: @unchecked Sendable {
    public struct Options: Sendable {
        public var volume: String
        /// The destination: a node URL (`https://node:8080`) or the full `/api/transfers` URL.
        public var url: String
        /// The JWT, with or without the `Bearer ` prefix (panels send it prefixed).
        public var token: String
        /// gzip for Wings peers; zstd or none only between our own nodes.
        public var compression: StreamCompression = .gzip
        /// Send files linked more than once as tar hardlinks (only to a node that keeps them).
        public var preservesHardlinks = false
        public var insecureTLS = false
        public var caCertificate: String?
        /// The server this push is for, as log lines name it; nil: the token's `sub` (the
        /// server whose volume the destination replaces), or else the volume directory.
        public var server: String?

        public init(volume: String, url: String, token: String) {
            self.volume = volume
            self.url = url
            self.token = token
        }

        /// How log lines about this push name it: `server <uuid>`, or the volume directory when
        /// neither `server` nor the token names a server.
        public var subject: String {
            let bare = token.prefix(7).lowercased() == "bearer " ? String(token.dropFirst(7)) : token
            if let server = server ?? JWT.unverifiedClaims(bare)?["sub"]?.stringValue,
                VolumeStore.isValidServerID(server)
            {
                return "server \(server)"
            }
            return volume
        }

        /// Takes what the negotiation chose for this destination.
        public mutating func apply(_ choice: CompressionNegotiator.Choice) {
            compression = choice.compression
            preservesHardlinks = choice.preservesHardlinks
        }
    }

    /// What the destination's 200 tells about the archive.
    public enum Confirmation: Sendable, Equatable {
        /// It answered with the SHA-256 it computed over the archive it received, and that is the
        /// one sent (our nodes answer `{"success": true, "checksum": …}`).
        case checksumEchoed
        /// It answered with an empty body, as a Wings node does: Wings answers 200 only after the
        /// checksum it was sent matched the archive it received, but it does not say which
        /// checksum that was, so this end has nothing to compare.
        case acceptedWithoutEcho
    }

    /// What a finished push reports.
    public struct Result: Sendable {
        public var checksum: String
        public var confirmation: Confirmation
        /// The server the destination says it committed (our nodes name it; nil from Wings).
        public var server: String?
        public var volumeBytes: Int64
        /// Sizes with sparse files' holes (equal to `volumeBytes` when there are none).
        public var apparentBytes: Int64
        public var archiveBytes: Int64
        public var files: Int
        public var seconds: Double
        /// Entries of the volume left out of the archive (a FIFO, a link out of the volume): how
        /// many, and the first `VolumeArchiver.skippedListLimit` with why.
        public var skipped = 0
        public var skippedEntries: [VolumeArchiver.Skipped] = []

        /// One line per listed skipped entry, and one for those beyond the list.
        public var skipWarnings: [String] {
            var lines = skippedEntries.map { "skipped \($0.path): \($0.reason)" }
            if skipped > skippedEntries.count { lines.append("skipped \(skipped - skippedEntries.count) more entries (see the log)") }
            return lines
        }

        /// `{"count": N, "entries": [{"path", "reason"}, …]}` for `--json` reports.
        public var skippedJSON: JSONValue {
            .object([
                "count": .number(Double(skipped)),
                "entries": .array(skippedEntries.map { .object(["path": .string($0.path), "reason": .string($0.reason)]) }),
            ])
        }
    }

    /// Progress as the archive is produced.
    public struct Progress: Sendable {
        public var volumeBytes: Int64
        public var totalBytes: Int64
        public var archiveBytes: Int64
        public var seconds: Double
    }

    public let options: Options
    /// Called from the producer thread, at most 4 times a second.
    public var onProgress: (@Sendable (Progress) -> Void)?
    private let cancelled = Condition()
    private var isCancelled = false
    /// The whole archive has been handed to the connection and the checksum part is going out:
    /// the destination may commit from here on, so a cancel no longer stops the push (see `cancel`).
    private var bodySent = false

    public init(options: Options) {
        self.options = options
    }

    /// Aborts a running push from any thread; `run` then throws `.cancelled`. Returns false when
    /// the whole archive has already been sent: the destination may be committing it, so the push
    /// waits for its answer instead (aborting then would leave the outcome unknown).
    @discardableResult
    public func cancel() -> Bool {
        cancelled.withLock {
            if bodySent { return false }
            isCancelled = true
            return true
        }
    }

    /// True once the whole archive has been sent (a cancel no longer stops the push).
    public var wholeArchiveSent: Bool { cancelled.withLock { bodySent } }

    private func markBodySent() {
        cancelled.withLock { if !isCancelled { bodySent = true } }
    }

    private var wasCancelled: Bool { cancelled.withLock { isCancelled } }

    /// The endpoint URL for `options.url`.
    public static func transfersURL(_ url: String) -> String {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        return base.hasSuffix("/api/transfers") ? base : base + "/api/transfers"
    }

    public func run() throws -> Result {
        guard FileTree.isDirectory(options.volume) else {
            throw TransferError(.notFound, .volumes, "volume directory \(options.volume) does not exist")
        }
        // The stat-only pass is there for progress reports; without a listener it is skipped (on a
        // volume of small files it costs as much CPU as a tenth of the transfer).
        let totalBytes = onProgress == nil ? 0 : try VolumeWalker(root: options.volume).totals().bytes
        let started = MonotonicClock.now()
        // Three threads, so both cores work: archive (walk + tar), compress + hash, send (curl).
        let tarBuffer = BoundedChunkBuffer(capacity: 1 << 20)
        let buffer = BoundedChunkBuffer(capacity: 1 << 20)
        let hasher = SHA256Hasher()
        let summaryBox = SummaryBox()

        var archiver = VolumeArchiver(root: options.volume, compression: .none)
        archiver.skipsLinksOutOfVolume = true
        archiver.preservesHardlinks = options.preservesHardlinks
        archiver.logLabel = "archive of \(options.subject)"
        let throttle = Throttle(interval: 0.25)  // also bounds websocket progress events to 4 per second
        archiver.progress = { [onProgress] bytes in
            guard throttle.ready() else { return }
            let now = MonotonicClock.now()
            onProgress?(Progress(volumeBytes: bytes, totalBytes: totalBytes, archiveBytes: hasher.byteCount, seconds: now - started))
        }
        let producer = StageThread(name: "archive") { [archiver] in
            do {
                // Tar output in chunks of one size (headers, small files, large reads): a flat heap.
                var assembler = ChunkAssembler()
                summaryBox.summary = try archiver.run { bytes in try assembler.append(bytes) { try tarBuffer.send($0) } }
                try assembler.flush { try tarBuffer.send($0) }
                tarBuffer.finish()
            } catch {
                tarBuffer.fail(error)
                buffer.fail(error)
                throw error
            }
        }
        let compressor = CodecStage.start(
            name: "compress", input: tarBuffer, codec: try options.compression.makeEncoder(), output: buffer,
            tap: { bytes in hasher.update(bytes) })

        var body = OutgoingBody(buffer: buffer, hasher: hasher)
        let easy = try CurlEasyHandle(url: Self.transfersURL(options.url))
        let bearer = options.token.lowercased().hasPrefix("bearer ") ? options.token : "Bearer \(options.token)"
        easy.addHeader("Authorization: \(bearer)")
        easy.addHeader("Content-Type: \(body.encoder.contentType)")
        easy.addHeader("Accept: application/json")
        if options.insecureTLS { easy.allowInsecureTLS() }
        if let ca = options.caCertificate { easy.setCACertificate(ca) }
        easy.shouldCancel = { [weak self] in self?.wasCancelled ?? true }
        easy.setStreamingPOST { [self] out in
            let count = try body.read(into: out)
            // From the checksum part on the destination may complete the form and commit.
            if body.checksum != nil { markBodySent() }
            return count
        }

        let status: Int
        do {
            status = try easy.perform()
        } catch {
            // Stop the other stages, then report the root cause: a local read error explains a
            // broken upload better than the upload's own error does.
            buffer.fail(error)
            tarBuffer.fail(error)
            let local = producer.join() ?? compressor.join()
            if let local = local as? TransferError, local.code != .cancelled, (error as? TransferError)?.code != .cancelled {
                throw local
            }
            throw error
        }
        // The answer is in. A node may answer before it has read the whole archive (a refusal, a
        // full disk): the stages are then blocked on full buffers nobody reads, so stop them
        // before waiting for them. After a complete upload they have already ended.
        let early = TransferError(.network, .transfer, "the node answered \(status) before the whole archive was sent")
        buffer.fail(early)
        tarBuffer.fail(early)
        let stageError = producer.join() ?? compressor.join()
        guard status == 200 else { throw Self.remoteError(status: status, body: easy.responseBody) }
        if let stageError { throw stageError }
        // A small archive fits in the buffers: the stages can end cleanly while the body was not
        // all read, and a 200 then answers something other than the whole archive.
        guard let checksum = body.checksum else { throw early }
        let (confirmation, server) = try Self.confirmation(
            status: status, reply: easy.responseBody, checksum: checksum, endpoint: Self.transfersURL(options.url))
        let summary = summaryBox.summary ?? VolumeArchiver.Summary()
        return Result(
            checksum: checksum, confirmation: confirmation, server: server,
            volumeBytes: summary.volumeBytes, apparentBytes: summary.apparentBytes,
            archiveBytes: hasher.byteCount, files: summary.files,
            seconds: MonotonicClock.now() - started, skipped: summary.skipped, skippedEntries: summary.skippedEntries)
    }

    /// What a 200 answer to a complete push confirms.
    ///
    /// - an empty body: a Wings node, which answers 200 only once the checksum it was sent
    ///   matched (`.acceptedWithoutEcho`);
    /// - `{"success": true, "checksum": <hex>}` (our nodes; `server` too): the checksum must be
    ///   the one sent (`.checksumEchoed`), otherwise `.integrity`;
    /// - anything else (an HTML or text page, JSON without a checksum, `"success": false`): not a
    ///   transfer confirmation, whatever answered is not a node we can talk to (`.network`).
    /// - Returns: the confirmation, and the server the destination names (if it does).
    static func confirmation(status: Int, reply: [UInt8], checksum: String, endpoint: String) throws -> (
        Confirmation, server: String?
    ) {
        if reply.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0d || $0 == 0x0a }) {
            return (.acceptedWithoutEcho, nil)
        }
        let json = (try? JSONValue.parse(reply))?.objectValue
        let success: Bool? = if case .bool(let value) = json?["success"] { value } else { nil }
        guard let json, success != false, let theirs = json["checksum"]?.stringValue else {
            var excerpt = Self.oneLine(String(decoding: reply.prefix(4096), as: UTF8.self))
            if excerpt.isEmpty { excerpt = "(unreadable)" }
            throw TransferError(
                .network, .transfer,
                "the answer from \(endpoint) (\(status): \(excerpt)) is not a transfer "
                    + "confirmation, nothing says the volume was committed; is the URL pointing at a node?")
        }
        guard theirs.lowercased() == checksum.lowercased() else {
            throw TransferError(
                .integrity, .transfer,
                "the destination confirmed sha256 \(String(theirs.prefix(64))) but the archive sent hashes to "
                    + "\(checksum): do not trust the copy there")
        }
        return (.checksumEchoed, json["server"]?.stringValue.flatMap(VolumeStore.canonicalServerID))
    }

    /// A body that is not our JSON (an HTML error page, a proxy's text) as one short line: tags
    /// dropped (each counts as a space: `<title>Down</title><p>OK` is "Down OK"), whitespace runs
    /// and control bytes folded into single spaces, at most 200 characters.
    static func oneLine(_ text: String) -> String {
        var out = ""
        var inTag = false
        var lastWasSpace = true
        for scalar in text.unicodeScalars {
            if scalar == "<" {
                if !lastWasSpace { out.unicodeScalars.append(" ") }
                lastWasSpace = true
                inTag = true
                continue
            }
            if inTag { if scalar == ">" { inTag = false }; continue }
            if scalar.properties.isWhitespace || scalar.value < 0x20 || scalar.value == 0x7f {
                if !lastWasSpace { out.unicodeScalars.append(" ") }
                lastWasSpace = true
            } else {
                out.unicodeScalars.append(scalar)
                lastWasSpace = false
            }
            if out.unicodeScalars.count >= 200 { break }
        }
        return out.trimmingWhitespace()
    }

    /// Turns a non-200 answer into an error carrying the destination's own message (and the
    /// status, as its cause).
    ///
    /// A 409 is `.exists` when the node says what was to be created is already there (our
    /// nodes' `"code": "exists"`, or a message saying "already exists"): trying again cannot
    /// help. Any other 409 is `.conflict`: busy now (the server is transferring).
    static func remoteError(status: Int, body: [UInt8]) -> TransferError {
        let json = try? JSONValue.parse(body)
        let message = json?["error"]?.stringValue
            ?? Self.oneLine(String(decoding: body.prefix(4096), as: UTF8.self))
        let exists = json?["code"]?.stringValue == TransferError.Code.exists.description
            || message.lowercased().contains("already exists")
        let code: TransferError.Code =
            switch status {
            case 401, 403: .forbidden
            case 404: .notFound
            case 409: exists ? .exists : .conflict
            case 413: .tooLarge
            case 422: .integrity
            case 400..<500: .invalidInput
            // A node saying in its JSON error that it is only unavailable for now (`"code":
            // "unavailable"`: ours shutting down): busy, try again later, as a 409 is (exit 75).
            case 503 where json?["code"]?.stringValue == "unavailable": .conflict
            // The node could not serve this at all (not implemented there, a gateway that did not
            // reach it, a proxy's unavailable page): "unreachable" in effect.
            case 501, 502, 503, 504, 505: .network
            // The node answered and failed while doing it (500 "No space left on device", 507
            // Insufficient Storage): an I/O failure at the other end, not an unreachable node.
            case 500..<600: .io
            // Anything else (a redirect, an informational status): not a node we can talk to.
            default: .network
            }
        return TransferError(
            code, .transfer, "the node answered \(status): \(message.isEmpty ? "(no message)" : message)",
            cause: NodeAnswer(status: status))
    }
}

/// Lets through at most one event per `interval` seconds; used from one thread at a time.
final class Throttle: @unchecked Sendable {
    private let interval: Double
    private var last = 0.0
    init(interval: Double) { self.interval = interval }
    func ready() -> Bool {
        let now = MonotonicClock.now()
        guard now - last >= interval else { return false }
        last = now
        return true
    }
}

/// Written by the producer thread, read after it signalled completion.
private final class SummaryBox: @unchecked Sendable {
    var summary: VolumeArchiver.Summary?
}

/// The multipart body as a pull source for libcurl: archive part, then the checksum part.
struct OutgoingBody {
    private enum Stage { case archiveHeader, archive, checksum, done }
    var encoder = MultipartEncoder()
    private let buffer: BoundedChunkBuffer
    private let hasher: SHA256Hasher
    private var stage = Stage.archiveHeader
    private var pending: [UInt8] = []
    private var offset = 0
    private(set) var checksum: String?

    init(buffer: BoundedChunkBuffer, hasher: SHA256Hasher) {
        self.buffer = buffer
        self.hasher = hasher
    }

    /// Copies the next bytes into `out`; 0 at the end of the body.
    mutating func read(into out: UnsafeMutableRawBufferPointer) throws -> Int {
        while offset == pending.count {
            offset = 0
            switch stage {
            case .archiveHeader:
                pending = encoder.partHeader(name: "archive", filename: "archive.tar.gz", contentType: "application/octet-stream")
                stage = .archive
            case .archive:
                if let chunk = try buffer.receive() {
                    pending = chunk
                } else {
                    let digest = hasher.finalizeHex()
                    checksum = digest
                    pending = encoder.partHeader(name: "checksum") + Array(digest.utf8) + encoder.closing()
                    stage = .checksum
                }
            case .checksum:
                stage = .done
                pending = []
                return 0
            case .done:
                pending = []
                return 0
            }
        }
        let n = min(out.count, pending.count - offset)
        pending.withUnsafeBytes { src in
            out.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
        }
        offset += n
        return n
    }
}
