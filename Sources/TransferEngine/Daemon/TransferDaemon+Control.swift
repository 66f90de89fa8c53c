#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// Panel → node control of transfers (node token), and the transfer list.
///
/// `POST /api/servers/:uuid/transfer` `{"url", "token", "server": {"uuid", "start_on_completion"}}`
/// starts pushing the volume to `url` (202); `DELETE` cancels it. `DELETE /api/transfers/:uuid`
/// cancels an incoming one. `GET /api/transfers` lists running and recent transfers.
extension TransferDaemon {
    func startOutgoingTransfer(_ request: HTTPRequest, server: String) -> RouteResult {
        do {
            try requireNodeToken(request, server: server)
        } catch {
            return .respond(.error(error))
        }
        return .consumeBody(
            BufferedBody { [self] body in
                do {
                    guard let json = try? JSONValue.parse(body), let url = json["url"]?.stringValue, !url.isEmpty,
                        let token = json["token"]?.stringValue, !token.isEmpty
                    else {
                        throw TransferError(.invalidInput, .http, "expected JSON {\"url\", \"token\", \"server\": {\"uuid\"}}")
                    }
                    guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                        throw TransferError(.invalidInput, .http, "url must be an http(s) URL")
                    }
                    // The endpoint path is appended to it, and both go into request lines and headers.
                    guard url.isSingleHeaderWord, !url.contains("?"), !url.contains("#") else {
                        throw TransferError(.invalidInput, .http, "url must be a node URL without spaces, a query string or a fragment")
                    }
                    guard (token.hasPrefix("Bearer ") ? token.dropFirst(7) : Substring(token)).isSingleHeaderWord else {
                        throw TransferError(.invalidInput, .http, "token must be a JWT (no spaces or control characters)")
                    }
                    if let named = json["server"]?["uuid"]?.stringValue, named != server {
                        throw TransferError(.invalidInput, .http, "server.uuid does not match the URL")
                    }
                    let id = try pushInBackground(server: server, url: url, token: token)
                    return .json(202, ["id": .string(id), "server": .string(server), "state": "processing"])
                } catch {
                    return .error(error)
                }
            })
    }

    /// Runs an outgoing transfer on its own thread. Only failure is reported to the panel: the
    /// destination reports success once it has verified and committed.
    func pushInBackground(server: String, url: String, token: String) throws -> String {
        guard store.reserve(server) else { throw TransferError(.conflict, .transfer, "server \(server) is already transferring") }
        let handle = PushHandle()
        let id = registry.begin(direction: .outgoing, server: server) { handle.cancel($0) }
        events.log(server, "sending transfer to \(url)")
        Log.info("transfer \(server): pushing to \(url)")
        spawnThread(name: "push-\(server.prefix(8))") { [self] in
            // The server is free before the transfer is listed as finished: whoever saw it end
            // (a DELETE that waited for it, the panel) may start the next one at once.
            var released = false
            defer { if !released { store.release(server) } }
            do {
                var options = OutgoingTransfer.Options(volume: store.volumePath(server), url: url, token: token)
                options.server = server
                // Negotiated here, after the 202: a destination that does not answer must not hold up the panel.
                // Wings destinations do not answer the probe and get gzip; our own nodes negotiate.
                if let choice = try? CompressionNegotiator.choose(
                    mode: .auto, url: url, token: token, volume: options.volume, cancelled: { handle.isCancelled })
                {
                    options.apply(choice)
                    Log.info("transfer \(server): compression \(choice.compression.rawValue) (\(choice.reason))")
                }
                let transfer = OutgoingTransfer(options: options)
                transfer.onProgress = { [registry] progress in
                    registry.progress(id, bytes: progress.volumeBytes, total: progress.totalBytes)
                }
                guard handle.attach(transfer) else { throw TransferError(.cancelled, .transfer, "cancelled") }
                let result = try transfer.run()
                registry.progress(id, bytes: result.volumeBytes, total: result.volumeBytes)
                Log.info(
                    "transfer \(server): pushed \(ByteCount.format(result.volumeBytes)) in \(ByteCount.fixed(result.seconds, 2)) s "
                        + "(\(ByteCount.rate(bytes: result.volumeBytes, seconds: result.seconds))), destination committed")
                events.log(
                    server,
                    result.confirmation == .checksumEchoed
                        ? "destination verified and committed the volume"
                        : "destination accepted the volume after checking its checksum (it does not answer one back)")
                store.release(server)
                released = true
                registry.finish(id, error: nil)
            } catch {
                var failure = error as? TransferError ?? TransferError(.internal, .transfer, "\(error)")
                // curl's abort says only "cancelled": say by whom.
                if failure.code == .cancelled, let cancellation = handle.cancellation { failure = cancellation }
                Log.error("transfer \(server): push failed, source volume untouched: \(failure.message)")
                store.release(server)
                released = true
                registry.finish(id, error: failure)
                panel?.reportTransfer(server: server, successful: false)
            }
        }
        return id
    }

    /// How long a DELETE waits for the cancelled transfer to end before answering "cancelling".
    static let cancelWait = 5.0

    func cancelTransfer(_ request: HTTPRequest, server: String, direction: TransferRegistry.Direction) -> HTTPResponse {
        do {
            try requireNodeToken(request)
            guard let server = VolumeStore.canonicalServerID(server) else {
                throw TransferError(.invalidInput, .http, "'\(server)' is not a server UUID")
            }
            guard registry.cancel(server: server, direction: direction) else {
                throw TransferError(.conflict, .transfer, "no \(direction.rawValue) transfer is running for \(server)")
            }
            Log.info("transfer \(server): \(direction.rawValue) transfer cancelled by request")
            // An outgoing push notices within about a second (curl's progress callback): wait for
            // it, so a panel that cancels and starts again is not told the server is still busy.
            let ended = registry.waitUntilEnded(server: server, direction: direction, timeout: Self.cancelWait)
            return .json(202, ["server": .string(server), "state": .string(ended ? "cancelled" : "cancelling")])
        } catch {
            return .error(error)
        }
    }

    func listTransfers(_ request: HTTPRequest) -> HTTPResponse {
        do {
            try requireNodeToken(request)
            let now = MonotonicClock.now()
            let items: [JSONValue] = registry.all.map { entry in
                let seconds = max(0.001, (entry.finished ?? now) - entry.started)
                var item: [String: JSONValue] = [
                    "id": .string(entry.id), "direction": .string(entry.direction.rawValue), "server": .string(entry.server),
                    "state": .string(entry.state), "bytes": .number(Double(entry.bytes)), "total": .number(Double(entry.total)),
                    "rate": .number((Double(entry.bytes) / seconds).rounded()), "seconds": .number((seconds * 1000).rounded() / 1000),
                ]
                if let error = entry.error { item["error"] = .string(error) }
                return .object(item)
            }
            return .json(200, ["transfers": .array(items)])
        } catch {
            return .error(error)
        }
    }

    // MARK: - Websocket

    func openWebsocket(_ request: HTTPRequest, server: String) -> HTTPResponse {
        // DESIGN §2: the server must be on this node (Wings answers 404 before the upgrade). A
        // server still arriving has no volume yet but has a running incoming transfer.
        let receiving = { self.registry.all.contains { $0.server == server && $0.finished == nil } }
        if !(VolumeStore.isValidServerID(server) && receiving()) {
            do { try store.requireVolume(server) } catch { return .error(error) }
        }
        switch WebSocketHandshake.validate(request, allowOrigin: isAllowedOrigin) {
        case .failure(let box):
            return box.response
        case .success(let accept):
            let session: @Sendable (UpgradedConnection) -> Void = { [self] upgraded in
                let connection = WebSocketConnection(upgraded)
                let key = ObjectIdentifier(connection)
                let stopping = websockets.withLock { state -> Bool in
                    state.open[key] = connection
                    return state.stopping
                }
                defer { _ = websockets.withLock { $0.open.removeValue(forKey: key) } }
                if stopping {
                    connection.closeAndFlush(code: 1001, reason: "node shutting down")
                    return
                }
                WingsEventSession(
                    server: server, connection: connection, verifier: verifier, denyList: denyList, events: events
                ).run()
            }
            return HTTPResponse(
                status: 101, headers: [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", accept)], body: .upgrade(session))
        }
    }

    /// Browsers send `Origin`; only the panel's and `allowed_origins` may connect. Without a panel
    /// and with no list (the embedded default) any origin may.
    func isAllowedOrigin(_ origin: String) -> Bool {
        let allowed = configuration.allowedOrigins
        if allowed.contains("*") || allowed.contains(origin) { return true }
        if let remote = configuration.remote, !remote.isEmpty {
            return Self.origin(of: remote) == origin
        }
        return allowed.isEmpty
    }

    static func origin(of url: String) -> String {
        guard let parts = URLComponents(string: url), let scheme = parts.scheme, let host = parts.host else { return url }
        return parts.port.map { "\(scheme)://\(host):\($0)" } ?? "\(scheme)://\(host)"
    }

    func denyWebsocketTokens(_ request: HTTPRequest) -> RouteResult {
        do {
            try requireNodeToken(request)
        } catch {
            return .respond(.error(error))
        }
        return .consumeBody(
            BufferedBody { [denyList] body in
                guard let json = try? JSONValue.parse(body), let jtis = json["jtis"]?.arrayValue?.compactMap(\.stringValue) else {
                    return .error(TransferError(.invalidInput, .http, "expected JSON {\"jtis\": [...]}"))
                }
                denyList.deny(jtis)
                return HTTPResponse(status: 204)
            })
    }
}

/// Lets a DELETE cancel an outgoing push before and after its transfer object exists.
final class PushHandle: @unchecked Sendable {
    private let lock = Condition()
    private var transfer: OutgoingTransfer?
    private var reason: TransferRegistry.CancelReason?

    func cancel(_ reason: TransferRegistry.CancelReason) {
        let running = lock.withLock { () -> OutgoingTransfer? in
            if self.reason == nil { self.reason = reason }
            return transfer
        }
        running?.cancel()
    }

    var isCancelled: Bool { lock.withLock { reason != nil } }

    /// Why the push was cancelled, as its log line and the transfer list say it (nil: it was not).
    var cancellation: TransferError? {
        switch lock.withLock({ reason }) {
        case .request?: TransferError(.cancelled, .transfer, "cancelled by request")
        case .shutdown?: TransferError(.cancelled, .transfer, "cancelled: this node is shutting down")
        case nil: nil
        }
    }

    /// Registers the transfer; false if it was cancelled already.
    func attach(_ transfer: OutgoingTransfer) -> Bool {
        lock.withLock {
            self.transfer = transfer
            return reason == nil
        }
    }
}
