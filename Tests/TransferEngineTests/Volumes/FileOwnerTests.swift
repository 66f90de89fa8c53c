import Foundation
import Testing
@testable import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

/// Every entry of a received tree gets the configured owner; nothing outside the tree does, even
/// through symlinks.
struct FileOwnerTests {
    @Test func wholeTreeChangedSymlinksNotFollowed() throws {
        try TempDirectory.with { temp in
            let outside = temp.appending("outside.txt")
            try Data("keep".utf8).write(to: URL(fileURLWithPath: outside))
            let root = try temp.makeDirectory("volume")
            var deep = root
            for level in 0..<40 { deep += "/d\(level)" }
            try FileManager.default.createDirectory(atPath: deep, withIntermediateDirectories: true)
            try Data("x".utf8).write(to: URL(fileURLWithPath: deep + "/leaf"))
            try Data("y".utf8).write(to: URL(fileURLWithPath: root + "/file"))
            #expect(link(root + "/file", root + "/hard") == 0)
            try FileManager.default.createSymbolicLink(atPath: root + "/out", withDestinationPath: outside)
            try FileManager.default.createSymbolicLink(atPath: root + "/dangling", withDestinationPath: "nowhere")
            try FileManager.default.createSymbolicLink(atPath: root + "/dirlink", withDestinationPath: temp.path)
            try FileManager.default.createDirectory(atPath: root + "/empty", withIntermediateDirectories: false)

            let owner = FileOwner(uid: 1234, gid: 5678)
            try owner.apply(toTree: root)

            var count = 0
            let walker = FileManager.default.enumerator(atPath: root)!
            for case let relative as String in walker {
                var st = stat()
                #expect(lstat(root + "/" + relative, &st) == 0)
                #expect(st.st_uid == 1234 && st.st_gid == 5678, "\(relative): \(st.st_uid):\(st.st_gid)")
                count += 1
            }
            #expect(count == 40 + 1 + 1 + 1 + 3 + 1)  // dirs, leaf, file, hard, three links, empty
            var st = stat()
            #expect(lstat(root, &st) == 0 && st.st_uid == 1234)
            // The symlinks' targets outside the tree keep their owner.
            #expect(lstat(outside, &st) == 0 && st.st_uid == getuid())
            #expect(lstat(temp.path, &st) == 0 && st.st_uid == getuid())
        }
    }

    @Test(arguments: [("988:988", true), ("0:0", true), ("988", false), ("a:b", false), (":1", false), ("1:", false),
                      ("-1:2", false), ("4294967295:1", false), ("1:2:3", false), ("", false)])
    func parse(text: String, valid: Bool) {
        #expect((FileOwner.parse(text) != nil) == valid, "\(text)")
    }
}
