import Testing
@testable import TransferEngine

@Test func smoke() { #expect(Hex.encode([0xab]) == "ab") }
