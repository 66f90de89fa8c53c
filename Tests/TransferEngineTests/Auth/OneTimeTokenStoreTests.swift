import Testing
@testable import TransferEngine

/// A token's first use, an allowed resume (same client, same resource, a range past byte 0) and
/// every other replay, told apart so the daemon can limit what a resume gets.
struct OneTimeTokenStoreTests {
    @Test func claimsAreFirstThenResumeOnlyForTheSameClientAndResource() {
        let store = OneTimeTokenStore(clock: WallClock { 100 })
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: true) == .first)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: true) == .resume)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: false) == nil)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "b", resource: "r", isResume: true) == nil)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "s", isResume: true) == nil)
        #expect(store.claim(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: true))
        #expect(!store.claim(uniqueID: "u", expires: 200, client: "a", resource: "r"))
        #expect(store.claimUse(uniqueID: "v", expires: 200, client: "a", resource: "r") == .first)
    }
}
