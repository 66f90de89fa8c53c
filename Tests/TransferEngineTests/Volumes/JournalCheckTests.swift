import Foundation
import Testing
@testable import TransferEngine

/// The ext4-without-journal check reads the device's name from sysfs and looks it up among
/// jbd2's journals; other file systems are never flagged.
struct JournalCheckTests {
    @Test func deviceNameComesFromTheSysfsLink() throws {
        try TempDirectory.with { temp in
            let sys = temp.appending("dev-block")
            try FileTree.makeDirectories(sys)
            try FileManager.default.createSymbolicLink(
                atPath: sys + "/259:2", withDestinationPath: "../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2")
            #expect(JournalCheck.deviceName(major: 259, minor: 2, sysDevBlock: sys) == "nvme0n1p2")
            #expect(JournalCheck.deviceName(major: 8, minor: 1, sysDevBlock: sys) == nil)
        }
    }

    @Test func journalsAreMatchedByDeviceNameAndDash() throws {
        try TempDirectory.with { temp in
            let jbd2 = temp.appending("jbd2")
            try FileTree.makeDirectories(jbd2 + "/vda1-8")
            try FileTree.makeDirectories(jbd2 + "/dm-0-8")
            #expect(JournalCheck.journaled(device: "vda1", jbd2Directory: jbd2) == true)
            #expect(JournalCheck.journaled(device: "dm-0", jbd2Directory: jbd2) == true)
            #expect(JournalCheck.journaled(device: "vda", jbd2Directory: jbd2) == false, "vda-… is another device's journal")
            #expect(JournalCheck.journaled(device: "dm-1", jbd2Directory: jbd2) == false)
            #expect(JournalCheck.journaled(device: "vda1", jbd2Directory: temp.appending("missing")) == nil)
        }
    }

    /// On the machine's own file systems the answer agrees with `stat -f` and /proc/fs/jbd2, and
    /// tmpfs (/dev/shm) is never flagged.
    @Test func realFileSystemsAgreeWithStatAndProc() throws {
        #expect(JournalCheck.isExt4WithoutJournal("/dev/shm") == false)
        #expect(JournalCheck.isExt4WithoutJournal("/nonexistent-\(UUID().uuidString)") == nil)
        let dir = FileManager.default.temporaryDirectory.path
        let type = try ProcessResult.run("/usr/bin/env", ["stat", "-f", "-c", "%t", dir])
        let isExt = type.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "ef53"
        let answer = JournalCheck.isExt4WithoutJournal(dir)
        if !isExt { #expect(answer == false) } else { #expect(answer != nil) }
        #expect((JournalCheck.warning(for: dir) != nil) == (answer == true))
    }
}
