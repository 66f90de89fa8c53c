import Synchronization

/// Remembers the `unique_id` of download and upload tokens until they expire, so each token
/// works once (Wings answers a replay with 404; so do we).
///
/// One exception keeps large downloads resumable (`curl -C -`): the same client may present a
/// download token again with a `Range` that starts past byte 0, for the same file — but only
/// while no download with that token has delivered the file through its last byte, only one use
/// at a time, and at most `maxResumes` times. A link that was downloaded to the end is spent for
/// good; a resume can only fetch the rest of a download that was cut.
/// Memory stays bounded: entries are dropped once their token has expired.
public final class OneTimeTokenStore: Sendable {
    private struct Use {
        let expires: Int64
        let client: String
        let resource: String
        /// A response with this token sent the file through its last byte.
        var finished = false
        /// A response with this token is being sent.
        var inFlight = false
        var resumes = 0
    }

    /// Resumes one token allows: enough for a flaky connection, few enough that cutting each
    /// resume just before the end is no way to fetch the file over and over.
    public static let maxResumes = 8

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

    /// Why a replay was refused.
    public enum Refusal: Error, Sendable, Equatable {
        /// Used before, and this is no allowed resume (or the file was already delivered whole).
        case spent
        /// A resume while another use of the token is still being answered.
        case busy
    }

    /// Records a use of `uniqueID` and says whether it was the first or an allowed resume; nil when
    /// it is refused (see `attempt`).
    public func claimUse(uniqueID: String, expires: Int64, client: String, resource: String, isResume: Bool = false) -> Claim? {
        try? attempt(uniqueID: uniqueID, expires: expires, client: client, resource: resource, isResume: isResume).get()
    }

    /// Records a use of `uniqueID`: its first, or a resume (same client and resource, a range past
    /// byte 0, nothing delivered through the end yet, no other use in flight, resumes left).
    /// A use that sends a file must be ended with `end(uniqueID:deliveredToEnd:)`.
    public func attempt(uniqueID: String, expires: Int64, client: String, resource: String, isResume: Bool = false)
        -> Result<Claim, Refusal>
    {
        let now = clock.now()
        return uses.withLock { table in
            if table.count > 1024 {
                table = table.filter { $0.value.expires >= now }
            }
            guard var previous = table[uniqueID], previous.expires >= now else {
                table[uniqueID] = Use(expires: expires, client: client, resource: resource, inFlight: true)
                return .success(.first)
            }
            guard isResume, !previous.finished, previous.client == client, previous.resource == resource,
                previous.resumes < Self.maxResumes
            else { return .failure(.spent) }
            guard !previous.inFlight else { return .failure(.busy) }
            previous.inFlight = true
            previous.resumes += 1
            table[uniqueID] = previous
            return .success(.resume)
        }
    }

    /// A use claimed with `attempt` ended; `deliveredToEnd` when its response sent the file
    /// through the last byte (the token then allows no resume).
    public func end(uniqueID: String, deliveredToEnd: Bool) {
        uses.withLock { table in
            guard var use = table[uniqueID] else { return }
            use.inFlight = false
            use.finished = use.finished || deliveredToEnd
            table[uniqueID] = use
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

    /// Whether `uniqueID` was used but may still be resumed (HEAD before a resume).
    public func isResumable(uniqueID: String) -> Bool {
        uses.withLock { table in
            guard let previous = table[uniqueID] else { return true }
            return !previous.finished && previous.resumes < Self.maxResumes
        }
    }

    /// How many ids are remembered (for tests of the bound).
    public var count: Int { uses.withLock { $0.count } }
}
