import Testing
@testable import TransferEngine

/// How a transfer's end is listed (`GET /api/transfers`) and published to websockets.
struct TransferRegistryTests {
    /// Records the `transfer status` events of one server.
    private static func watch(_ events: TransferEvents, _ server: String) -> Locked<[String]> {
        let seen = Locked<[String]>([])
        _ = events.subscribe(server: server) { event, args in
            if event == "transfer status", let status = args.first?.stringValue { seen.set(seen.get() + [status]) }
        }
        return seen
    }

    @Test(arguments: [
        (TransferError.Code.timeout, "stalled", "failed"), (.cancelled, "cancelled", "cancelled"), (.io, "failed", "failed"),
    ])
    func aStalledTransferIsListedAsStalledAndIsAFailureForPanels(code: TransferError.Code, listed: String, published: String) {
        let events = TransferEvents()
        let registry = TransferRegistry(events: events)
        let server = "0b5c1f0e-3f4d-4c55-9a6e-2d0f6e1f7a01"
        let seen = Self.watch(events, server)
        let id = registry.begin(direction: .incoming, server: server) { _ in }
        registry.finish(id, error: TransferError(code, .transfer, "why"))
        #expect(registry.all.first?.state == listed)
        #expect(registry.all.first?.error == "why")
        // Panels know only Wings' statuses: a stall is a failure there.
        #expect(seen.get() == ["processing", published, "failure"])
    }

    /// A DELETE and the shutdown reach the transfer with their reason.
    @Test func cancellersAreToldWhy() {
        let registry = TransferRegistry(events: TransferEvents())
        let reasons = Locked<[TransferRegistry.CancelReason]>([])
        let server = "0b5c1f0e-3f4d-4c55-9a6e-2d0f6e1f7a01"
        _ = registry.begin(direction: .incoming, server: server) { reasons.set(reasons.get() + [$0]) }
        #expect(registry.cancel(server: server, direction: .incoming))
        registry.cancelAll()
        #expect(reasons.get() == [.request, .shutdown])
    }
}
