#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Synchronization

/// Fan-out of per-server events (`transfer logs`, `transfer status`, `transfer progress`) to the
/// websocket sessions watching that server. Publishing never blocks on a subscriber: a session's
/// sink only queues the message (`WebSocketConnection.send`), so it runs on the transfer's path.
public final class TransferEvents: Sendable {
    public typealias Sink = @Sendable (_ event: String, _ args: [JSONValue]) -> Void

    private struct Subscriber {
        let server: String
        let sink: Sink
    }

    private let subscribers = Mutex<[Int: Subscriber]>([:])
    private let nextID = Mutex(0)

    public init() {}

    /// Registers `sink` for events of `server`; returns an id for `unsubscribe`.
    public func subscribe(server: String, _ sink: @escaping Sink) -> Int {
        let id = nextID.withLock {
            $0 += 1
            return $0
        }
        subscribers.withLock { $0[id] = Subscriber(server: server, sink: sink) }
        return id
    }

    public func unsubscribe(_ id: Int) {
        _ = subscribers.withLock { $0.removeValue(forKey: id) }
    }

    public func publish(server: String, event: String, args: [JSONValue]) {
        let targets = subscribers.withLock { $0.values.filter { $0.server == server }.map(\.sink) }
        for sink in targets { sink(event, args) }
    }

    /// `transfer logs` with a human line.
    public func log(_ server: String, _ line: String) {
        publish(server: server, event: "transfer logs", args: [.string(line)])
    }

    /// `transfer status` with one of pending|processing|cancelling|cancelled|failed|completed|success|failure.
    public func status(_ server: String, _ status: String) {
        publish(server: server, event: "transfer status", args: [.string(status)])
    }
}

/// The transfers this node is running (and the last finished ones), for `GET /api/transfers`,
/// cancellation, and progress events.
public final class TransferRegistry: Sendable {
    public enum Direction: String, Sendable { case incoming, outgoing }

    /// Why a running transfer is stopped: a `DELETE` asked for it, or the daemon is shutting down.
    public enum CancelReason: Sendable, Equatable { case request, shutdown }

    /// A running or finished transfer as listed by the API.
    public struct Entry: Sendable {
        public let id: String
        public let direction: Direction
        public let server: String
        public let started: Double
        public var state: String
        public var bytes: Int64 = 0
        public var total: Int64 = 0
        public var finished: Double?
        public var error: String?
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let cancellers = Mutex<[String: @Sendable (CancelReason) -> Void]>([:])
    private let events: TransferEvents

    public init(events: TransferEvents) { self.events = events }

    /// Registers a transfer; `cancel` is how a DELETE (or the shutdown) stops it.
    public func begin(
        direction: Direction, server: String, total: Int64 = 0, cancel: @escaping @Sendable (CancelReason) -> Void
    ) -> String {
        let id = SecureRandom.uuid()
        entries.withLock { table in
            // Keep the finished list short: drop the oldest finished entries beyond 50.
            let finished = table.values.filter { $0.finished != nil }.sorted { $0.finished! < $1.finished! }
            for old in finished.dropLast(50) { table.removeValue(forKey: old.id) }
            table[id] = Entry(id: id, direction: direction, server: server, started: MonotonicClock.now(), state: "processing", total: total)
        }
        cancellers.withLock { $0[id] = cancel }
        events.status(server, "processing")
        return id
    }

    /// Updates the byte count and sends a `transfer progress` event (callers throttle).
    public func progress(_ id: String, bytes: Int64, total: Int64? = nil) {
        guard let entry = entries.withLock({ table -> Entry? in
            table[id]?.bytes = bytes
            if let total { table[id]?.total = total }
            return table[id]
        }) else { return }
        let seconds = max(0.001, MonotonicClock.now() - entry.started)
        let rate = Double(bytes) / seconds
        let eta: JSONValue = entry.total > 0 && rate > 0 ? .number((Double(max(0, entry.total - bytes)) / rate).rounded()) : .null
        events.publish(
            server: entry.server, event: "transfer progress",
            args: [
                .string(
                    String(
                        decoding: JSONValue.object([
                            "bytes": .number(Double(bytes)), "total": .number(Double(entry.total)),
                            "rate": .number(rate.rounded()), "eta": eta,
                        ]).serialized(), as: UTF8.self))
            ])
    }

    /// The state a transfer that ended with `error` is listed in: `completed`, `cancelled`,
    /// `stalled` (nothing moved for the idle timeout: `.timeout`) or `failed`.
    static func finalState(_ error: TransferError?) -> String {
        guard let error else { return "completed" }
        switch error.code {
        case .cancelled: return "cancelled"
        case .timeout: return "stalled"
        default: return "failed"
        }
    }

    /// Marks the end; publishes the final statuses (`completed`+`success`, or `failed`/`cancelled`+`failure`;
    /// a stalled transfer is `failed` there, the panels' word for it).
    public func finish(_ id: String, error: TransferError?) {
        guard let entry = entries.withLock({ table -> Entry? in
            let state = Self.finalState(error)
            table[id]?.state = state
            table[id]?.finished = MonotonicClock.now()
            table[id]?.error = error?.message
            return table[id]
        }) else { return }
        _ = cancellers.withLock { $0.removeValue(forKey: id) }
        if let error {
            events.log(entry.server, "transfer \(entry.state == "stalled" ? "stalled" : "failed"): \(error.message)")
            events.status(entry.server, entry.state == "stalled" ? "failed" : entry.state)
            events.status(entry.server, "failure")
        } else {
            events.status(entry.server, "completed")
            events.status(entry.server, "success")
        }
    }

    /// Cancels the running transfer of `server` in `direction`; false if there is none.
    public func cancel(server: String, direction: Direction) -> Bool {
        let running = entries.withLock { $0.values.first { $0.server == server && $0.direction == direction && $0.finished == nil } }
        guard let running, let cancel = cancellers.withLock({ $0[running.id] }) else { return false }
        entries.withLock { $0[running.id]?.state = "cancelling" }
        events.status(server, "cancelling")
        cancel(.request)
        return true
    }

    /// Waits until no transfer of `server` in `direction` is running, up to `timeout` seconds;
    /// true if none is.
    public func waitUntilEnded(server: String, direction: Direction, timeout: Double) -> Bool {
        let deadline = MonotonicClock.now() + timeout
        while true {
            let running = entries.withLock { $0.values.contains { $0.server == server && $0.direction == direction && $0.finished == nil } }
            if !running { return true }
            if MonotonicClock.now() >= deadline { return false }
            usleep(10_000)
        }
    }

    /// Cancels every running transfer (daemon shutdown).
    public func cancelAll() {
        let all = cancellers.withLock { Array($0.values) }
        for cancel in all { cancel(.shutdown) }
    }

    public var all: [Entry] { entries.withLock { Array($0.values) }.sorted { $0.started < $1.started } }
}
