import Testing
@testable import TransferEngine

/// A token's first use, an allowed resume (same client, same resource, a range past byte 0) and
/// every other replay, told apart so the daemon can limit what a resume gets.
struct OneTimeTokenStoreTests {
    @Test func claimsAreFirstThenResumeOnlyForTheSameClientAndResource() {
        let store = OneTimeTokenStore(clock: WallClock { 100 })
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: true) == .first)
        store.end(uniqueID: "u", deliveredToEnd: false)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: true) == .resume)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: false) == nil)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "b", resource: "r", isResume: true) == nil)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "s", isResume: true) == nil)
        store.end(uniqueID: "u", deliveredToEnd: false)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: true) != nil)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r") == nil)
        #expect(store.claimUse(uniqueID: "v", expires: 200, client: "a", resource: "r") == .first)
    }

    @Test func aUseThatDeliveredTheFileToTheEndEndsTheResumes() {
        let store = OneTimeTokenStore(clock: WallClock { 100 })
        func use(_ resume: Bool = true) -> Result<OneTimeTokenStore.Claim, OneTimeTokenStore.Refusal> {
            store.attempt(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: resume)
        }
        #expect(use(false) == .success(.first))
        #expect(use() == .failure(.busy))  // the first is still being sent
        store.end(uniqueID: "u", deliveredToEnd: false)  // cut
        #expect(use() == .success(.resume))
        store.end(uniqueID: "u", deliveredToEnd: true)
        #expect(use() == .failure(.spent))
        #expect(store.isUnused(uniqueID: "u") == false && store.isResumable(uniqueID: "u") == false)
    }

    @Test func resumesAreCapped() {
        let store = OneTimeTokenStore(clock: WallClock { 100 })
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r") == .first)
        for _ in 0..<OneTimeTokenStore.maxResumes {
            store.end(uniqueID: "u", deliveredToEnd: false)
            #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: true) == .resume)
        }
        store.end(uniqueID: "u", deliveredToEnd: false)
        #expect(store.claimUse(uniqueID: "u", expires: 200, client: "a", resource: "r", isResume: true) == nil)
    }
}
