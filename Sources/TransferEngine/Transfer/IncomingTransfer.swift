#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// The destination half of a transfer: one `POST /api/transfers` body, streamed into staging and
/// committed only after the archive's SHA-256 matches the `checksum` part.
///
/// ```
///  HTTP body ─▶ MultipartDecoder ─▶ "archive" ─▶ SHA256Hasher ─▶ buffer ═▶ decompress thread (gzip/zstd/none,
///                                                                          detected) ─▶ buffer ═▶ extract thread:
///                                                                          ArchiveReader ─▶ SafeExtractor ─▶ staging
///                                └▶ "checksum" / "checksum_archive" (must follow the archive)
///  finish: closing boundary seen · extractor done · checksum equal ─▶ VolumeStore.commit
/// ```
/// Both cores work: the connection thread parses (and hashes a compressed archive), one thread
/// decompresses (ISA-L, CRC-checked; it hashes a plain tar), one writes files. Any failure, or the connection closing early, discards staging: nothing is committed.
public final class IncomingTransfer: RequestBodyHandler, @unchecked Sendable {
    private enum Part { case archive, checksum, backup, ignored }

    public let server: String
    private let store: VolumeStore
    private let staging: String
    private let client: String
    private var decoder: MultipartDecoder
    /// Hashes the archive part, on whichever thread has less to do (see `HashPlacement`).
    private let hasher = SHA256Hasher()
    private let hashPlacement = HashPlacement()
    private var receivedArchiveBytes: Int64 = 0
    private let buffer = BoundedChunkBuffer(capacity: 1 << 20)
    /// Archive bytes gathered into chunks of one size before they are queued.
    private var assembler = ChunkAssembler()
    private var part: Part = .ignored
    private var archiveStarted = false
    private var archiveEnded = false
    private var checksum: [UInt8]?
    /// A checksum part came while no archive part had: an ordering error if an archive follows,
    /// else the missing archive is the error to report.
    private var checksumBeforeArchive = false
    /// The names of the parts seen, in order (the first few, for the missing-archive error).
    private var partNames: [String] = []
    private var partCount = 0
    private var decompressor: StageThread?
    private var extractor: StageThread?
    /// Written by the extractor thread before it ends; read after `join()`.
    nonisolated(unsafe) private var extracted: (files: Int, bytes: Int64)?
    private let started = MonotonicClock.now()
    private var closed = false
    /// Guards `finished`: the outcome is decided once, by the connection thread or by `cancel()`.
    private let outcome = Condition()
    private var finished = false
    /// Why `cancel` stopped the transfer (under `outcome`), so every path answers the source alike.
    private var cancelReason: TransferRegistry.CancelReason?
    /// Answers the source at once, before its body has ended (set by the daemon; the HTTP layer's
    /// `EarlyAnswer`): `cancel()` tells the source why, even if it has stalled.
    public var answerNow: (@Sendable (HTTPResponse) -> Void)?
    private let progressThrottle = Throttle(interval: 0.25)
    /// Called once with the outcome (for the transfer list, websocket events and panel callbacks).
    public var onFinish: (@Sendable (Result<String, TransferError>) -> Void)?
    /// Archive bytes received so far, at most four times a second.
    public var onProgress: (@Sendable (Int64) -> Void)?

    /// Pelican's backup parts, kept only when the transfer commits.
    private let backups: IncomingBackups?

    /// `backups`: where Pelican's backup parts go (nil: they are ignored like other unknown parts).
    public init(
        server: String, boundary: String, store: VolumeStore, staging: String, client: String,
        backups: BackupService? = nil
    ) {
        self.backups = backups.map { IncomingBackups(service: $0, server: server) }
        self.server = server
        self.store = store
        self.staging = staging
        self.client = client
        self.decoder = MultipartDecoder(boundary: boundary)
        Log.info("transfer \(server): receiving from \(client)")
    }

    public func receive(_ bytes: UnsafeRawBufferPointer) throws {
        try decoder.feed(bytes) { event in
            switch event {
            case .partBegin(let headers):
                try begin(headers)
            case .partData(let data):
                switch part {
                case .archive:
                    if !hashPlacement.decided, !data.isEmpty { hashPlacement.decide(head: Array(data.prefix(4))) }
                    if hashPlacement.onConnectionThread { hasher.update(data) }
                    try assembler.append(data) { try buffer.send($0) }
                    receivedArchiveBytes += Int64(data.count)
                    if progressThrottle.ready() { onProgress?(receivedArchiveBytes) }
                case .checksum:
                    checksum!.append(contentsOf: data)
                    guard checksum!.count <= 512 else { throw invalid("checksum part is too long") }
                case .backup:
                    try backups?.data(data)
                case .ignored:
                    break
                }
            case .partEnd:
                if part == .archive {
                    archiveEnded = true
                    try assembler.flush { try buffer.send($0) }
                    buffer.finish()
                } else if part == .backup {
                    try backups?.end()
                }
                part = .ignored
            }
        }
    }

    private func begin(_ headers: PartHeaders) throws {
        partCount += 1
        if partNames.count < 8 { partNames.append(headers.name ?? "(unnamed)") }
        switch headers.name {
        case "archive":
            guard !archiveStarted else { throw invalid("the body has two archive parts") }
            guard !checksumBeforeArchive else { throw invalid("the checksum part came before the archive part") }
            archiveStarted = true
            part = .archive
            startExtractor()
        case "checksum", "checksum_archive":
            guard archiveEnded else {
                // Judged when the archive part comes (or the body ends without one).
                checksumBeforeArchive = true
                part = .ignored
                return
            }
            guard checksum == nil else { throw invalid("the body has two checksum parts") }
            checksum = []
            part = .checksum
        case let name? where backups != nil && (name.hasPrefix("backup_") || name.hasPrefix("checksum_backup_")):
            _ = try backups!.begin(name)
            part = .backup
        default:
            // install_logs and anything newer: not ours to interpret.
            Log.debug("transfer \(server): ignoring part \(headers.name ?? "(unnamed)")")
            part = .ignored
        }
    }

    private func startExtractor() {
        let tarBuffer = BoundedChunkBuffer(capacity: 1 << 20)
        // Stages start under the outcome lock so a concurrent cancel() sees them (or sees none).
        outcome.lock()
        defer { outcome.unlock() }
        guard !finished else { return }
        decompressor = CodecStage.start(
            name: "decompress-\(server.prefix(8))", input: buffer, codec: DetectingDecoder(), output: tarBuffer,
            inputTap: { [hasher, hashPlacement] bytes in
                if !hashPlacement.onConnectionThread { hasher.update(bytes) }
            })
        extractor = StageThread(name: "extract-\(server.prefix(8))") { [buffer, staging] in
            do {
                let reader = try ArchiveReader(source: { try tarBuffer.receive() })
                reader.logLabel = "transfer \(self.server): archive"
                let extractor = try SafeExtractor(root: staging)
                try extractor.extractAll(from: reader)
                // Bytes after the tar end marker must still be read, or the stages before would block.
                try reader.drain()
                if let owner = self.store.owner { try owner.apply(toTree: staging) }
                self.extracted = (extractor.files, extractor.bytes)
            } catch {
                // Wake the stages before if they are blocked sending into a buffer nobody reads.
                tarBuffer.fail(error)
                buffer.fail(error)
                throw error
            }
        }
    }

    public func finish(error: (any Error)?) -> HTTPResponse {
        do {
            if let error { throw error }
            try decoder.finish()
            guard archiveStarted else { throw invalid(missingArchive) }
            guard let checksum else { throw invalid("the body has no checksum part (checksum or checksum_archive)") }
            let (files, volumeBytes) = try waitForExtractor()
            let sent = String(decoding: checksum, as: UTF8.self).trimmingWhitespace().lowercased()
            let actual = hasher.finalizeHex()
            guard sent == actual else {
                throw TransferError(.integrity, .transfer, "checksum mismatch: the sender says \(sent.prefix(64)), the archive received hashes to \(actual)")
            }
            try backups?.verify()
            guard claimOutcome() else {
                throw Self.cancellation(outcome.withLock { cancelReason } ?? .request)
            }
            try store.commit(staging: staging, server: server)
            if let stored = backups?.commit(), !stored.isEmpty {
                Log.info("transfer \(server): stored backups \(stored.joined(separator: ", "))")
            }
            close()
            let seconds = MonotonicClock.now() - started
            Log.info(
                "transfer \(server): committed \(files) files, \(ByteCount.format(volumeBytes)) "
                    + "(archive \(ByteCount.format(receivedArchiveBytes))) in \(ByteCount.fixed(seconds, 2)) s, "
                    + "\(ByteCount.rate(bytes: volumeBytes, seconds: seconds)), sha256 \(actual)")
            onFinish?(.success(actual))
            return .json(200, [
                "success": true, "server": .string(server), "checksum": .string(actual),
                "archive_bytes": .number(Double(receivedArchiveBytes)), "volume_bytes": .number(Double(volumeBytes)),
                "files": .number(Double(files)),
            ])
        } catch {
            let failure = fail(error)
            return Self.answer(for: failure, cancelled: outcome.withLock { cancelReason })
        }
    }

    /// Archive bytes received (final once the transfer has finished).
    public var archiveBytes: Int64 { receivedArchiveBytes }

    /// Stops the transfer from another thread (`DELETE /api/transfers/:uuid`, shutdown): the
    /// connection thread's next step fails with `.cancelled`, staging is discarded, the server is
    /// freed, and then the source is answered with the reason (under TLS, where the answer cannot
    /// be written before the body ends, the connection is cut instead): 409 "the transfer was
    /// cancelled on this node" for a request, 503 "the destination node is shutting down" for a
    /// shutdown, which the source may take as temporary (`transfer-send` exits 75 for both).
    public func cancel(_ reason: TransferRegistry.CancelReason = .request) {
        let error = Self.cancellation(reason)
        outcome.withLock { if cancelReason == nil { cancelReason = reason } }
        buffer.fail(error)
        // Decide the outcome here, so the server is free and staging gone even if the source has
        // stalled and the connection thread is waiting on the socket; then answer the source.
        _ = fail(error)
        answerNow?(Self.answer(for: error, cancelled: reason))
    }

    public func abort() {
        abort(.connectionClosed)
    }

    /// The connection ended before the body did: closed by the source, dropped by the server after
    /// the source sent nothing for its idle timeout (a stall: `.timeout`, listed as "stalled", not
    /// as a cancel), or cut by the shutdown.
    public func abort(_ reason: BodyAbortReason) {
        switch reason {
        case .connectionClosed:
            _ = fail(TransferError(.cancelled, .transfer, "the connection closed before the transfer body ended"))
        case .idleTimeout(let seconds):
            _ = fail(
                TransferError(
                    .timeout, .transfer,
                    "the source sent nothing for \(seconds) s, so the connection was closed"))
        case .shutdown:
            outcome.withLock { if cancelReason == nil { cancelReason = .shutdown } }
            _ = fail(Self.cancellation(.shutdown))
        }
    }

    /// The error a cancelled transfer ends with (in the log, the transfer list and, for a request,
    /// the source's answer).
    static func cancellation(_ reason: TransferRegistry.CancelReason) -> TransferError {
        switch reason {
        case .request: TransferError(.cancelled, .transfer, "the transfer was cancelled on this node")
        case .shutdown: TransferError(.cancelled, .transfer, "this node is shutting down")
        }
    }

    /// What the source is answered for `failure`: the JSON error, except after a shutdown, which
    /// is 503 (the node is going away, not refusing this transfer: try again once it is back).
    static func answer(for failure: TransferError, cancelled: TransferRegistry.CancelReason?) -> HTTPResponse {
        guard cancelled == .shutdown, failure.code == .cancelled else { return .error(failure) }
        return .json(
            503, [
                "error": "the destination node is shutting down: nothing was committed; push again once it is back",
                "code": "unavailable",
            ])
    }

    /// Stops the extractor, discards staging, frees the server. Returns the error as a TransferError.
    private func fail(_ error: any Error) -> TransferError {
        let failure =
            error as? TransferError ?? TransferError(.internal, .transfer, "\(error)")
        guard claimOutcome() else { return failure }
        store.markEnding(server)
        buffer.fail(failure)
        backups?.discard()
        _ = try? waitForExtractor()
        store.discard(staging: staging)
        close()
        if failure.code == .cancelled, outcome.withLock({ cancelReason }) == .shutdown {
            Log.warning("transfer \(server): interrupted, nothing committed: \(failure.message)")
        } else if failure.code == .timeout {
            Log.error("transfer \(server): stalled, nothing committed: \(failure.message)")
        } else {
            Log.error("transfer \(server): failed, nothing committed: \(failure.message)")
        }
        onFinish?(.failure(failure))
        return failure
    }

    private func waitForExtractor() throws -> (Int, Int64) {
        let (extractor, decompressor) = outcome.withLock { (self.extractor, self.decompressor) }
        guard let extractor else { throw invalid("the body has no archive part") }
        // The extractor's error is the root cause when both fail (the decoder then only saw a closed buffer).
        if let error = extractor.join() { throw error }
        if let error = decompressor?.join() { throw error }
        return extracted ?? (0, 0)
    }

    /// True for the one caller that gets to decide how the transfer ends.
    private func claimOutcome() -> Bool {
        outcome.withLock {
            if finished { return false }
            finished = true
            return true
        }
    }

    private func close() {
        guard !closed else { return }
        closed = true
        store.release(server)
        if store.busyServers.isEmpty { ProcessSetup.releaseFreeMemory() }
    }

    /// The error for a form without an `archive` part, naming the parts it had instead.
    private var missingArchive: String {
        guard partCount > 0 else { return "no 'archive' part in the form (it has no parts)" }
        var seen = partNames.map { $0.escapingControlCharacters.prefix(64) }.joined(separator: ", ")
        if partCount > partNames.count { seen += ", and \(partCount - partNames.count) more" }
        return "no 'archive' part in the form (parts seen: \(seen))"
    }

    private func invalid(_ message: String) -> TransferError {
        TransferError(.invalidInput, .transfer, message)
    }
}

/// Where the archive's SHA-256 is computed. A compressed archive keeps the decompress thread the
/// busiest (inflate costs more than parsing and hashing together), so it is hashed as it arrives;
/// a plain tar is hashed on the decompress thread, which then has nothing else to do. Decided from
/// the archive's first bytes (the decoder's own format detection), before they are handed on, so
/// the decompress thread reads the decision after the buffer hand-off. A first piece too short to
/// tell counts as tar: that only costs balance, never correctness.
final class HashPlacement: @unchecked Sendable {
    private(set) var decided = false
    private(set) var onConnectionThread = false

    func decide(head: [UInt8]) {
        onConnectionThread = StreamCompression.detect(head) != .none
        decided = true
    }
}
