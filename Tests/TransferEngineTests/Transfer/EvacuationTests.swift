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

    @Test func anEmptyDirectoryIsAPlanWithNothingInIt() throws {
        try TempDirectory.with { temp in
            let plan = try Evacuation.plan(dataDirectory: try temp.makeDirectory("data"), only: nil)
            #expect(plan.volumes.isEmpty && plan.skipped.isEmpty && plan.directoryIsEmpty)
        }
    }
}
