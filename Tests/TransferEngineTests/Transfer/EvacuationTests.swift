import Foundation
import Testing
@testable import TransferEngine

/// What `Evacuation.plan` moves and what it leaves alone, with why.
struct EvacuationTests {
    @Test func entriesThatAreNotVolumesAreSkippedWithAReason() throws {
        try TempDirectory.with { temp in
            let server = "0b5c1f0e-3f4d-4c55-9a6e-2d0f6e1f7a01"
            try temp.makeDirectory("data/\(server)/world")
            try Data(count: 10).write(to: URL(fileURLWithPath: temp.appending("data/\(server)/world/level.dat")))
            try temp.makeDirectory("data/lost+found")
            try Data().write(to: URL(fileURLWithPath: temp.appending("data/notes.txt")))
            try Data().write(to: URL(fileURLWithPath: temp.appending("data/1b5c1f0e-3f4d-4c55-9a6e-2d0f6e1f7a01")))
            let plan = try Evacuation.plan(dataDirectory: temp.appending("data"), only: nil)
            #expect(plan.volumes.map(\.server) == [server])
            #expect(plan.bytes == 10)
            #expect(!plan.directoryIsEmpty)
            #expect(plan.skipped == [
                Evacuation.Skipped(name: "1b5c1f0e-3f4d-4c55-9a6e-2d0f6e1f7a01", reason: "not a directory"),
                Evacuation.Skipped(name: "lost+found", reason: "not named by a server UUID"),
                Evacuation.Skipped(name: "notes.txt", reason: "not a directory"),
            ])
        }
    }

    /// A server UUID is the same server in any case: `only` finds a directory spelt otherwise,
    /// and the volume keeps the directory's own name (its path, and what its token names).
    @Test func serversMatchDirectoriesInAnyCase() throws {
        try TempDirectory.with { temp in
            let upper = "0B5C1F0E-3F4D-4C55-9A6E-2D0F6E1F7A01"
            let lower = "1b5c1f0e-3f4d-4c55-9a6e-2d0f6e1f7a01"
            try temp.makeDirectory("data/\(upper)")
            try temp.makeDirectory("data/\(lower)")
            let data = temp.appending("data")
            let plan = try Evacuation.plan(dataDirectory: data, only: [upper.lowercased(), lower.uppercased()])
            #expect(Set(plan.volumes.map(\.server)) == [upper, lower])
            #expect(Set(plan.volumes.map(\.path)) == ["\(data)/\(upper)", "\(data)/\(lower)"])
            let one = try Evacuation.plan(dataDirectory: data, only: [lower.uppercased()])
            #expect(one.volumes.map(\.server) == [lower])
        }
    }

    /// Two directories for one server (differing in case) are not guessed between.
    @Test func twoDirectoriesForOneServerAreRefused() throws {
        try TempDirectory.with { temp in
            let server = "0b5c1f0e-3f4d-4c55-9a6e-2d0f6e1f7a01"
            let other = "2b5c1f0e-3f4d-4c55-9a6e-2d0f6e1f7a01"
            for name in [server, server.uppercased(), other] { try temp.makeDirectory("data/\(name)") }
            let data = temp.appending("data")
            for only in [nil, [server]] as [[String]?] {
                let error = #expect(throws: TransferError.self) { try Evacuation.plan(dataDirectory: data, only: only) }
                #expect(error?.code == .invalidInput)
                #expect(error?.message.contains(server.uppercased()) == true)
            }
            #expect(try Evacuation.plan(dataDirectory: data, only: [other]).volumes.map(\.server) == [other])
        }
    }

    @Test func anEmptyDirectoryIsAPlanWithNothingInIt() throws {
        try TempDirectory.with { temp in
            let plan = try Evacuation.plan(dataDirectory: try temp.makeDirectory("data"), only: nil)
            #expect(plan.volumes.isEmpty && plan.skipped.isEmpty && plan.directoryIsEmpty)
        }
    }
}
