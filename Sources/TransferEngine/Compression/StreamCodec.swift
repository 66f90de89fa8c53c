/// A streaming byte transform: a compressor or decompressor between two pipeline stages.
///
/// ```
///  process(chunk) ─emit(bytes)…─▶   finish() ─emit(trailer)…─▶
/// ```
/// Emitted buffers are valid only during the `emit` call. Wrong call order is a programmer error.
public protocol StreamCodec: AnyObject {
    func process(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws
    func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws
    /// True while the codec would emit its input unchanged: a stage may then hand chunks on as
    /// they are instead of copying them through `process`.
    var passesInputThrough: Bool { get }
}

extension StreamCodec {
    public var passesInputThrough: Bool { false }
}

/// The compression of a transfer's archive stream.
public enum StreamCompression: String, Sendable, CaseIterable {
    /// gzip: what Wings sends and expects. Encoded with ISA-L (igzip), decoded with ISA-L.
    case gzip
    /// zstd, multi-threaded: only between our own nodes (negotiated).
    case zstd
    /// Plain tar: only between our own nodes, when the link is faster than compression.
    case none

    /// Recognises a stream by its first bytes (gzip 1f 8b, zstd 28 b5 2f fd; anything else is tar).
    public static func detect(_ head: [UInt8]) -> StreamCompression {
        if head.count >= 2, head[0] == 0x1f, head[1] == 0x8b { return .gzip }
        if head.count >= 4, head[0] == 0x28, head[1] == 0xb5, head[2] == 0x2f, head[3] == 0xfd { return .zstd }
        return .none
    }

    /// A compressor for this format. zstd runs on the calling thread by default: its worker
    /// threads' job buffers raised a push's peak RSS from ~30 to ~45 MiB, for no gain on two cores
    /// that the pipeline's other stages also use (measured: mixed 375–405 MB/s either way).
    public func makeEncoder(level: Int? = nil, threads: Int = 1) throws -> any StreamCodec {
        switch self {
        case .gzip: try GzipEncoder(level: level ?? 1)
        case .zstd: try ZstdEncoder(level: level ?? 1, threads: threads)
        case .none: PassThroughCodec()
        }
    }

    /// A decompressor for this format.
    public func makeDecoder() throws -> any StreamCodec {
        switch self {
        case .gzip: try GzipDecoder()
        case .zstd: try ZstdDecoder()
        case .none: PassThroughCodec()
        }
    }
}

/// Emits its input unchanged.
public final class PassThroughCodec: StreamCodec {
    public init() {}
    public var passesInputThrough: Bool { true }
    public func process(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        if !input.isEmpty { try emit(input) }
    }
    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {}
}

/// Decodes a stream whose format is recognised from its first bytes.
public final class DetectingDecoder: StreamCodec {
    private var head: [UInt8] = []
    private var decoder: (any StreamCodec)?
    /// The format found, once known.
    public private(set) var format: StreamCompression?

    public init() {}

    /// Once the stream is known to be plain tar (the bytes seen so far were emitted).
    public var passesInputThrough: Bool { decoder?.passesInputThrough ?? false }

    public func process(_ input: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        if let decoder { return try decoder.process(input, emit: emit) }
        head.append(contentsOf: input)
        guard head.count >= 4 else { return }
        try start(emit: emit)
    }

    public func finish(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        if decoder == nil { try start(emit: emit) }
        try decoder!.finish(emit: emit)
    }

    private func start(emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        let found = StreamCompression.detect(head)
        format = found
        let decoder = try found.makeDecoder()
        self.decoder = decoder
        let buffered = head
        head = []
        try buffered.withUnsafeBytes { try decoder.process($0, emit: emit) }
    }
}
