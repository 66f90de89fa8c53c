import Testing
@testable import TransferEngine

/// The engine's own JSON reader and writer (RFC 8259): what panels, Wings and our tools send.
struct JSONValueTests {
    @Test func parsesEveryKindOfValue() throws {
        let text = #" { "s": "a\"b\\c\/d\n\t\u00e9\ud83d\ude00", "n": -12.5e2, "i": 1700000000, "z": 0, "t": true, "f": false, "x": null, "a": [1, [2, {}], []] } "#
        let value = try JSONValue.parse(Array(text.utf8))
        #expect(value["s"] == .string("a\"b\\c/d\n\té😀"))
        #expect(value["n"] == .number(-1250))
        #expect(value["i"] == .number(1_700_000_000))
        #expect(value["z"] == .number(0))
        #expect(value["t"] == .bool(true) && value["f"] == .bool(false) && value["x"] == .null)
        #expect(value["a"] == .array([.number(1), .array([.number(2), .object([:])]), .array([])]))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", ".5", "-", "1e", "\"\u{01}\"", "\"\\ud800\"", "\"\\udc00x\"",
        "\"abc", "{\"a\" 1}", "{1:2}", "[1 2]", "tru", "nul", "1 2", "\"\\x\"", "\"\\u12g4\"",
        String(repeating: "[", count: 70) + String(repeating: "]", count: 70),
    ])
    func refusesWhatIsNotJSON(text: String) {
        #expect(throws: TransferError.self) { try JSONValue.parse(Array(text.utf8)) }
    }

    @Test func serialisationIsSortedCompactAndRoundTrips() throws {
        let value: JSONValue = [
            "b": [1, .number(2.5), "x\"y\\z\n\u{01}"], "a": ["nested": true, "none": .null], "big": .number(1e300), "neg": -3,
        ]
        let text = String(decoding: value.serialized(), as: UTF8.self)
        #expect(text.hasPrefix(#"{"a":{"nested":true,"none":null},"b":[1,2.5,"x\"y\\z\n\u0001"],"big":"#))
        #expect(try JSONValue.parse(value.serialized()) == value)
    }

    @Test func invalidUTF8InAStringIsRefused() {
        #expect(throws: TransferError.self) { try JSONValue.parse([0x22, 0xff, 0xfe, 0x22]) }
    }
}

/// Header parameters with an unterminated quoted value end the value at the end of the header
/// (found by a crash: the parser stepped past the end looking for the closing quote).
struct HeaderParametersRobustnessTests {
    @Test(arguments: ["form-data; name=\"files", "form-data; name=\"a\\", "form-data; filename=\"x\"; name=\"", "a; b=\"", "a;=\"\""])
    func unterminatedQuotesDoNotCrash(header: String) {
        let params = HeaderParameters.parse(header)
        #expect(params.type == header.split(separator: ";").first.map { String($0).lowercased() })
    }
}
