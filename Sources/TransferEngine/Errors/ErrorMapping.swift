/// Maps error codes to what the edges speak: HTTP statuses for the daemon, sysexits for the CLI.
/// One place for each, so call sites never pick numbers themselves.
public enum ErrorMapping {
    /// The HTTP status for an error code.
    public static func httpStatus(for code: TransferError.Code) -> Int {
        switch code {
        case .invalidInput: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict: 409
        case .tooLarge: 413
        case .integrity: 422
        case .unsupported: 415
        case .timeout: 408
        case .cancelled: 409
        default: 500
        }
    }

    /// The process exit status for an error code (sysexits.h values).
    public static func exitStatus(for code: TransferError.Code) -> Int32 {
        switch code {
        case .invalidInput, .integrity, .tooLarge, .unsupported: 65  // EX_DATAERR
        case .unauthorized, .forbidden: 77  // EX_NOPERM
        case .network, .timeout: 69  // EX_UNAVAILABLE
        case .io, .notFound: 74  // EX_IOERR
        case .cancelled: 130
        case .conflict: 75  // EX_TEMPFAIL: busy now, try again later
        default: 1
        }
    }
}
