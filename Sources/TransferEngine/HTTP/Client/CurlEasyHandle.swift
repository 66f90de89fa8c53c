#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
private import CCurl
private import CTransferShims

/// A libcurl easy handle set up for one request that streams its body from a pull callback.
///
/// ```
///  perform() ─▶ libcurl ─read callback─▶ bodySource(buffer) ─▶ chunked request body
///                        ◀─write callback── response body (kept up to 1 MiB)
/// ```
/// One request per handle. Callbacks run on the thread that calls `perform()`.
final class CurlEasyHandle {
    private static let globalInit: Bool = { curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK }()

    private let handle: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private var bodySource: ((UnsafeMutableRawBufferPointer) throws -> Int)?
    private var bodyError: (any Error)?
    /// libcurl writes its detailed message here; it must outlive the handle's requests.
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    private(set) var responseBody: [UInt8] = []
    /// Headers of the final response, names lowercased.
    private(set) var responseHeaders: [String: String] = [:]
    /// Checked about every second and on each callback; returning true aborts the request.
    var shouldCancel: (() -> Bool)?
    /// Receives the body of a successful (2xx) response; error bodies still go to `responseBody`.
    var successSink: ((UnsafeRawBufferPointer) throws -> Void)?
    private var sinkError: (any Error)?
    /// Bytes (downloaded so far, expected total or 0, uploaded so far), from libcurl's progress callback.
    var onProgress: ((Int64, Int64, Int64) -> Void)?
    /// The URL's `user:password`, kept out of libcurl's messages (see `error(for:)`).
    private let userinfo: String?

    init(url: String) throws {
        _ = Self.globalInit
        guard let handle = curl_easy_init() else { throw TransferError(.internal, .http, "libcurl: cannot create a handle") }
        self.handle = handle
        self.userinfo = Redaction.userinfo(of: url).flatMap { $0.isEmpty ? nil : $0 }
        tx_curl_easy_setopt_string(handle, CURLOPT_URL, url)
        tx_curl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        tx_curl_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, 30)
        // Abort when less than 1 byte/s moves for 120 s: a dead peer, not a slow one.
        tx_curl_easy_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1)
        tx_curl_easy_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, 120)
        errorBuffer.initialize(to: 0)
        tx_curl_easy_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)
        let context = Unmanaged.passUnretained(self).toOpaque()
        tx_curl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, context)
        tx_curl_easy_setopt_write_function(handle) { data, size, count, context in
            let easy = Unmanaged<CurlEasyHandle>.fromOpaque(context!).takeUnretainedValue()
            let n = size * count
            if let sink = easy.successSink, let data, (200..<300).contains(easy.statusSoFar) {
                do {
                    try sink(UnsafeRawBufferPointer(start: data, count: n))
                    return n
                } catch {
                    easy.sinkError = error
                    return 0  // anything but n aborts the transfer
                }
            }
            if easy.responseBody.count < 1 << 20, let data {
                easy.responseBody.append(contentsOf: UnsafeRawBufferPointer(start: data, count: min(n, (1 << 20) - easy.responseBody.count)))
            }
            return n
        }
        tx_curl_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, context)
        tx_curl_easy_setopt_header_function(handle) { data, size, count, context in
            let easy = Unmanaged<CurlEasyHandle>.fromOpaque(context!).takeUnretainedValue()
            let n = size * count
            guard let data else { return n }
            let line = String(decoding: UnsafeRawBufferPointer(start: data, count: n), as: UTF8.self)
            if line.hasPrefix("HTTP/") {
                easy.responseHeaders = [:]  // a new response (after 100 Continue or a redirect)
            } else if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                easy.responseHeaders[name] = line[line.index(after: colon)...].trimmingWhitespace()
            }
            return n
        }
        tx_curl_easy_setopt_pointer(handle, CURLOPT_XFERINFODATA, context)
        tx_curl_easy_setopt_xferinfo_function(handle) { context, downloadTotal, downloaded, _, uploaded in
            let easy = Unmanaged<CurlEasyHandle>.fromOpaque(context!).takeUnretainedValue()
            easy.onProgress?(Int64(downloaded), Int64(downloadTotal), Int64(uploaded))
            return easy.shouldCancel?() == true ? 1 : 0
        }
        tx_curl_easy_setopt_long(handle, CURLOPT_NOPROGRESS, 0)
    }

    deinit {
        curl_slist_free_all(headerList)
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    func addHeader(_ line: String) {
        headerList = curl_slist_append(headerList, line)
    }

    /// Skips TLS certificate checks (self-signed test nodes); never the default.
    func allowInsecureTLS() {
        tx_curl_easy_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0)
        tx_curl_easy_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0)
    }

    func setCACertificate(_ path: String) {
        tx_curl_easy_setopt_string(handle, CURLOPT_CAINFO, path)
    }

    /// POSTs a body of unknown length (chunked) pulled from `source`, which fills the buffer and
    /// returns the count, 0 at the end.
    func setStreamingPOST(_ source: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        bodySource = source
        tx_curl_easy_setopt_long(handle, CURLOPT_POST, 1)
        tx_curl_easy_setopt_long(handle, CURLOPT_UPLOAD_BUFFERSIZE, 512 * 1024)
        addHeader("Transfer-Encoding: chunked")
        tx_curl_easy_setopt_pointer(handle, CURLOPT_READDATA, Unmanaged.passUnretained(self).toOpaque())
        tx_curl_easy_setopt_read_function(handle) { buffer, size, count, context in
            let easy = Unmanaged<CurlEasyHandle>.fromOpaque(context!).takeUnretainedValue()
            if easy.shouldCancel?() == true { return Int(CURL_READFUNC_ABORT) }
            do {
                return try easy.bodySource!(UnsafeMutableRawBufferPointer(start: buffer, count: size * count))
            } catch {
                easy.bodyError = error
                return Int(CURL_READFUNC_ABORT)
            }
        }
    }

    /// The response status as far as libcurl knows it (0 before the status line arrived).
    var statusSoFar: Int {
        var status = 0
        tx_curl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return status
    }

    /// POSTs a small in-memory body with a Content-Length (panel callbacks).
    func setBodyPOST(_ bytes: [UInt8]) {
        tx_curl_easy_setopt_long(handle, CURLOPT_POST, 1)
        tx_curl_easy_setopt_offset(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count))
        _ = bytes.withUnsafeBytes { tx_curl_easy_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!)) }
    }

    /// Gives up on the whole request after `seconds`.
    func setTimeout(seconds: Int) {
        tx_curl_easy_setopt_long(handle, CURLOPT_TIMEOUT, seconds)
    }

    func setMethod(_ method: String) {
        tx_curl_easy_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)
    }

    /// Runs the request. Returns the HTTP status; throws on transport errors (or the body source's error).
    func perform() throws -> Int {
        tx_curl_easy_setopt_pointer(handle, CURLOPT_HTTPHEADER, headerList.map { UnsafeMutableRawPointer($0) })
        let code = curl_easy_perform(handle)
        if let bodyError { throw bodyError }
        if let sinkError { throw sinkError }
        guard code == CURLE_OK else {
            // A node that refuses mid-upload answers and closes; the rest of the body may then
            // hit a reset connection. Its answer says more than the broken pipe does.
            if code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR, statusSoFar >= 400 { return statusSoFar }
            throw error(for: code)
        }
        var status = 0
        tx_curl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return status
    }

    /// Maps a libcurl failure to a TransferError (the one place libcurl codes are interpreted).
    private func error(for code: CURLcode) -> TransferError {
        var detail = errorBuffer.pointee != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(code))
        // libcurl may quote the URL, or the part it could not parse, with the credentials in it.
        detail = detail.redactingURLCredentials
        if let userinfo { detail = detail.replacing(userinfo, with: Redaction.placeholder) }
        switch code {
        case CURLE_ABORTED_BY_CALLBACK:
            return TransferError(.cancelled, .http, "cancelled")
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_PROXY:
            return TransferError(.network, .http, "cannot reach the destination: \(detail)")
        case CURLE_OPERATION_TIMEDOUT:
            return TransferError(.timeout, .http, "the destination stopped responding: \(detail)")
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE:
            return TransferError(.network, .http, "the connection to the destination broke: \(detail)")
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE:
            return TransferError(.network, .http, "TLS failed: \(detail)")
        case CURLE_WEIRD_SERVER_REPLY:
            return TransferError(.network, .http, "the destination's answer is not HTTP: \(detail)")
        case CURLE_UNSUPPORTED_PROTOCOL where detail.contains("HTTP/0.9"):
            // What libcurl says of bytes that are not an HTTP status line.
            return TransferError(.network, .http, "the destination's answer is not HTTP: \(detail)")
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            return TransferError(.invalidInput, .http, "bad URL: \(detail)")
        default:
            return TransferError(.network, .http, "HTTP request failed: \(detail)")
        }
    }
}
