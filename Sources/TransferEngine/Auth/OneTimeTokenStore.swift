import Synchronization

/// Remembers the `unique_id` of download and upload tokens until they expire, so each token
/// works once (Wings answers a replay with 404; so do we).
///
/// One exception keeps large downloads resumable (`curl -C -`): the same client may present a
/// download token again with a `Range` that starts past byte 0, for the same file. That can only
/// fetch the rest of a file the client already received the start of.
/// Memory stays bounded: entries are dropped once their token has expired.
public final class OneTimeTokenStore: Sendable {
    private struct Use {
        let expires: Int64
        let client: String
        let resource: String
    }

    private let uses = Mutex<[String: Use]>([:])
    private let clock: WallClock

    public init(clock: WallClock = .system) {
        self.clock = clock
    }

    /// How a token's use was allowed.
    public enum Claim: Sendable, Equatable {
        /// Its first use.
        case first
        /// A replay allowed only as the resume of a download: it must get no more than the rest of
        /// the file it asked a range of (never the whole file again).
        case resume
    }

    /// Records a use of `uniqueID`. Returns false if the token was used before (and this is not
    /// an allowed resume of the same resource by the same client).
    public func claim(uniqueID: String, expires: Int64, client: String, resource: String, isResume: Bool = false) -> Bool {
        claimUse(uniqueID: uniqueID, expires: expires, client: client, resource: resource, isResume: isResume) != nil
    }

    /// Records a use of `uniqueID` and says whether it was the first or an allowed resume; nil when
    /// it is refused (used before, and not a resume of the same resource by the same client).
    public func claimUse(uniqueID: String, expires: Int64, client: String, resource: String, isResume: Bool = false) -> Claim? {
        let now = clock.now()
        return uses.withLock { table in
            if table.count > 1024 {
                table = table.filter { $0.value.expires >= now }
            }
            if let previous = table[uniqueID], previous.expires >= now {
                return isResume && previous.client == client && previous.resource == resource ? .resume : nil
            }
            table[uniqueID] = Use(expires: expires, client: client, resource: resource)
            return .first
        }
    }

    /// Whether `uniqueID` is still unused, without spending it (HEAD requests).
    public func isUnused(uniqueID: String) -> Bool {
        let now = clock.now()
        return uses.withLock { table in
            guard let previous = table[uniqueID] else { return true }
            return previous.expires < now
        }
    }

    /// How many ids are remembered (for tests of the bound).
    public var count: Int { uses.withLock { $0.count } }
}
