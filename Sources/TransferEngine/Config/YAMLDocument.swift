private import CYAML

/// A YAML document parsed with libyaml into plain values. Enough for configuration files:
/// mappings, sequences and scalars (anchors/aliases resolve to nothing).
public indirect enum YAMLNode: Sendable, Equatable {
    case scalar(String)
    case mapping([(String, YAMLNode)])
    case sequence([YAMLNode])
    case null

    public static func == (a: YAMLNode, b: YAMLNode) -> Bool {
        switch (a, b) {
        case (.scalar(let x), .scalar(let y)): x == y
        case (.sequence(let x), .sequence(let y)): x == y
        case (.null, .null): true
        case (.mapping(let x), .mapping(let y)): x.map(\.0) == y.map(\.0) && x.map(\.1) == y.map(\.1)
        default: false
        }
    }

    /// The value at a dotted path of mapping keys ("api.ssl.enabled").
    public subscript(path: String) -> YAMLNode? {
        var node = self
        for key in path.split(separator: ".") {
            guard case .mapping(let pairs) = node, let next = pairs.last(where: { $0.0 == key })?.1 else { return nil }
            node = next
        }
        return node
    }

    public var string: String? {
        if case .scalar(let s) = self { return s }
        return nil
    }

    /// YAML 1.1/1.2 booleans as Go's yaml.v2/v3 (which Wings uses) read them.
    public var bool: Bool? {
        switch string?.lowercased() {
        case "true", "yes", "on", "y": true
        case "false", "no", "off", "n": false
        default: nil
        }
    }

    public var int: Int? { string.flatMap { Int($0) } }

    public var strings: [String]? {
        if case .sequence(let items) = self { return items.compactMap(\.string) }
        return nil
    }

    /// Parses YAML text. Throws `.invalidInput` with libyaml's line and problem on a syntax error.
    static let maximumDepth = 64

    public static func parse(_ text: String) throws -> YAMLNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw TransferError(.internal, .config, "libyaml: out of memory") }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBufferPointer { input in
            yaml_parser_set_input_string(&parser, input.baseAddress, input.count)
            var stack: [Builder] = []
            var root: YAMLNode = .null
            var documents = 0
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let problem = parser.problem.map { String(cString: $0) } ?? "syntax error"
                    throw TransferError(
                        .invalidInput, .config, "YAML line \(parser.problem_mark.line + 1): \(problem)")
                }
                defer { yaml_event_delete(&event) }
                var finished: YAMLNode?
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return root
                case YAML_DOCUMENT_START_EVENT:
                    // Which of several documents is "the" config is a guess; Wings reads the first,
                    // a reader may take the last. Refuse instead of picking one silently.
                    documents += 1
                    guard documents == 1 else {
                        throw TransferError(.invalidInput, .config, "YAML line \(event.start_mark.line + 1): a second document (---); a config is one document")
                    }
                case YAML_MAPPING_START_EVENT, YAML_SEQUENCE_START_EVENT:
                    // A config is a few levels deep; tens of thousands of levels would overflow
                    // the stack when the tree is freed (and take seconds to parse).
                    guard stack.count < Self.maximumDepth else {
                        throw TransferError(.invalidInput, .config, "YAML line \(event.start_mark.line + 1): nested deeper than \(Self.maximumDepth) levels")
                    }
                    stack.append(Builder(isMapping: event.type == YAML_MAPPING_START_EVENT))
                case YAML_MAPPING_END_EVENT, YAML_SEQUENCE_END_EVENT:
                    finished = stack.removeLast().node
                case YAML_SCALAR_EVENT:
                    let scalar = event.data.scalar
                    let value = String(
                        decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
                    let plainNull = scalar.style == YAML_PLAIN_SCALAR_STYLE && ["", "~", "null", "Null", "NULL"].contains(value)
                    finished = plainNull ? .null : .scalar(value)
                case YAML_ALIAS_EVENT:
                    finished = .null
                default:
                    break
                }
                if let node = finished {
                    if stack.isEmpty {
                        root = node
                    } else if !stack[stack.count - 1].add(node) {
                        // As Wings' yaml.v3 does: which of two values was meant is a guess.
                        throw TransferError(.invalidInput, .config, "YAML line \(event.start_mark.line + 1): key '\(node.string ?? "")' appears twice in one mapping")
                    }
                }
            }
        }
    }

    private struct Builder {
        let isMapping: Bool
        var pairs: [(String, YAMLNode)] = []
        var items: [YAMLNode] = []
        var pendingKey: String?

        init(isMapping: Bool) { self.isMapping = isMapping }

        /// Adds an item, a key or a value; false for a key the mapping already has.
        mutating func add(_ node: YAMLNode) -> Bool {
            if !isMapping {
                items.append(node)
            } else if let key = pendingKey {
                pairs.append((key, node))
                pendingKey = nil
            } else {
                let key = node.string ?? ""
                guard !pairs.contains(where: { $0.0 == key }) else { return false }
                pendingKey = key
            }
            return true
        }

        var node: YAMLNode { isMapping ? .mapping(pairs) : .sequence(items) }
    }
}
