"""Requests the daemon answers before reading their body (no or bad token, unknown route, wrong
method or content type, busy server): a client still sending a large body must read the JSON
error, never a connection reset.

Closing a socket with unread bytes in its receive buffer makes the kernel send RST; a client that
is still writing then fails its send (curl: "(55) Send failure") before it has read the answer.
Each test sends many rounds, several at once (the race needs a little load to show), with the
curl CLI, Python requests and a raw socket, and lists every round that did not get the answer.
Bodies are a sparse file (curl) or generated 1 MiB blocks (requests, raw): never held in memory.
"""
import concurrent.futures
import http.client
import json
import re
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests

from e2elib import HeldTransfer, mint, new_server_id, push_archive
from http_helpers import MiB, upload_url
from test_tls import TOKEN as TLS_TOKEN, https_url, tls_daemon  # noqa: F401 (tls_daemon is a fixture)

ROUNDS = 24  # per kind of refusal and client
PARALLEL = 4
CURL_BODY = 256 * MiB  # curl stops sending once it reads the answer: size costs nothing
STREAM_BODY = 96 * MiB  # requests and raw send it all before (requests) or while (raw) reading
TLS_STREAM_BODY = 48 * MiB  # requests over TLS needs the whole body read (it fails on the first write error)


class Zeros:
    """A body of `size` zero bytes in 1 MiB blocks, with a length (requests sends Content-Length)."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __iter__(self):
        block = bytes(MiB)
        left = self.size
        while left > 0:
            n = min(left, MiB)
            yield block if n == MiB else block[:n]
            left -= n


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("early") / "big.bin"
    with open(path, "wb") as f:
        f.truncate(CURL_BODY)  # sparse: no disk, no memory
    return path


def refusals(daemon, token, server):
    """(name, path, headers, status): requests refused on their headers, before the body is read."""
    transfer = mint(token, sub=server)
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    return [
        ("no token", "/api/transfers", multipart, 401),
        ("bad token", "/api/transfers", {**multipart, "Authorization": "Bearer not-a-token"}, 403),
        ("not multipart", "/api/transfers", {"Authorization": f"Bearer {transfer}", "Content-Type": "text/plain"}, 400),
        ("unknown route", "/no/such/route", {}, 404),
        ("wrong method", "/api/system", {}, 405),
        ("bad upload token", "/upload/file?token=x.y.z", multipart, 403),
    ]


def check_answer(status, body, expected):
    """None when (status, body) is the JSON error expected, else what is wrong."""
    if status != expected:
        return f"status {status}, expected {expected}: {body[:200]!r}"
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError) as e:
        return f"status {status} but no JSON error body ({e}): {body[:200]!r}"
    return None if isinstance(error, str) and error else f"empty error: {body[:200]!r}"


def curl_round(url, headers, expected, big, workdir, extra=()):
    out = workdir / f"reply-{uuid.uuid4().hex}.json"
    # `Expect:` off: the body is in flight when the answer comes (with 100-continue curl would
    # wait for the answer instead and never send it).
    argv = ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", "-X", "POST", "-T", str(big), "-H", "Expect:",
            *extra]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run(argv + [url], capture_output=True, text=True, timeout=60)
    body = out.read_bytes() if out.exists() else b""
    out.unlink(missing_ok=True)
    if done.returncode != 0:
        return f"curl exit {done.returncode}: {done.stderr.strip()}"
    return check_answer(int(done.stdout or 0), body, expected)


def requests_round(url, headers, expected, size, verify=True):
    try:
        r = requests.post(url, data=Zeros(size), headers=headers, timeout=60, verify=verify)
    except requests.RequestException as e:
        return f"requests: {type(e).__name__}: {e}"
    return check_answer(r.status_code, r.content, expected)


def raw_round(port, path, headers, expected, size):
    """Sends the body from a thread while reading the answer, like a careful client does."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {size}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    stop = threading.Event()

    def send():
        try:
            sock.sendall(head.encode())
            for block in Zeros(size):
                if stop.is_set():
                    return
                sock.sendall(block)
        except OSError:
            pass  # the daemon stopped reading; the answer is what counts

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    reply = b""
    try:
        while True:
            header_end = reply.find(b"\r\n\r\n")
            if header_end >= 0:
                lines = reply[:header_end].decode("latin-1").split("\r\n")
                fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                length = int(fields.get("content-length", "-1"))
                if 0 <= length <= len(reply) - header_end - 4:
                    status = int(lines[0].split()[1])
                    return check_answer(status, reply[header_end + 4:header_end + 4 + length], expected)
            try:
                data = sock.recv(65536)
            except OSError as e:
                return f"raw: {type(e).__name__}: {e} after {len(reply)} bytes of answer"
            if not data:
                return f"raw: connection closed after {len(reply)} bytes of answer: {reply[:200]!r}"
            reply += data
    finally:
        stop.set()
        # Wake a sender blocked in sendall before closing: a descriptor closed under it could be
        # reused by another round's socket.
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sender.join(30)
        sock.close()


def run_rounds(cases, one_round, rounds=ROUNDS):
    """Runs every case `rounds` times, PARALLEL at once: (rounds run, what went wrong in each bad one)."""
    jobs = [(name, args) for name, *args in cases for _ in range(rounds)]
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda job: (job[0], one_round(*job[1])), jobs))
    return len(jobs), [f"{name}: {problem}" for name, problem in results if problem]


def assert_all_answered(**runs):
    """runs: client name -> run_rounds(...) result. Fails with the count per client and the first failures."""
    failures = [f"{client}: {failure}" for client, (_, bad) in runs.items() for failure in bad]
    counts = ", ".join(f"{client} {len(bad)} of {n}" for client, (n, bad) in runs.items())
    assert not failures, f"rounds without their answer: {counts}\n" + "\n".join(failures[:20])


@pytest.fixture
def target(daemon):
    """(daemon, cases) with cases as (name, url, headers, status)."""
    cases = refusals(daemon, daemon.token, new_server_id())
    return daemon, [(name, daemon.url + path, headers, status) for name, path, headers, status in cases]


def test_early_refusals_reach_curl_while_it_sends(target, big_file, tmp_path):
    daemon, cases = target

    def curl(url, headers, status):
        return curl_round(url, headers, status, big_file, tmp_path)

    assert_all_answered(curl=run_rounds(cases, curl))


def test_early_refusals_reach_requests_while_it_sends(target):
    daemon, cases = target

    def post(url, headers, status):
        return requests_round(url, headers, status, STREAM_BODY)

    assert_all_answered(requests=run_rounds(cases, post, rounds=ROUNDS // 2))


def test_early_refusals_reach_a_raw_client_reading_while_it_sends(target):
    daemon, cases = target

    def raw(url, headers, status):
        return raw_round(daemon.port, url[len(daemon.url):], headers, status, STREAM_BODY)

    assert_all_answered(raw=run_rounds(cases, raw, rounds=ROUNDS // 2))


def test_early_refusals_over_tls_reach_curl_and_requests(tls_daemon, big_file, tmp_path):  # noqa: F811
    daemon, cert = tls_daemon
    url = https_url(daemon)
    cases = [(name, url + path, headers, status)
             for name, path, headers, status in refusals(daemon, TLS_TOKEN, new_server_id())]

    def curl(url, headers, status):
        return curl_round(url, headers, status, big_file, tmp_path, ("--cacert", str(cert)))

    def post(url, headers, status):
        return requests_round(url, headers, status, TLS_STREAM_BODY, verify=str(cert))

    assert_all_answered(curl=run_rounds(cases, curl), requests=run_rounds(cases, post, rounds=ROUNDS // 4))


def test_busy_server_409_reaches_clients_while_they_send(daemon, sample_tgz, big_file, tmp_path):
    """A server that is transferring refuses a second transfer, and uploads, with 409 on their headers."""
    server = new_server_id()
    assert push_archive(daemon, server, sample_tgz).status_code == 200
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    cases = [
        ("transfer while transferring", daemon.transfers_url,
         {**multipart, "Authorization": f"Bearer {mint(daemon.token, sub=server)}"}, 409),
        ("upload while transferring", None, multipart, 409),  # None: a fresh one-time upload URL each round
    ]

    def curl(url, headers, status):
        return curl_round(url or upload_url(daemon, server), headers, status, big_file, tmp_path)

    def post(url, headers, status):
        return requests_round(url or upload_url(daemon, server), headers, status, STREAM_BODY)

    with HeldTransfer(daemon, server, sample_tgz):
        assert_all_answered(curl=run_rounds(cases, curl), requests=run_rounds(cases, post, rounds=ROUNDS // 4))


# ---------------------------------------------------------------- the drain is bounded

LINGER_LIMIT = 64 * MiB  # HTTPServer.Options.lingerLimit
LINGER_SECONDS = 2  # HTTPServer.Options.lingerSeconds


def refused_socket(daemon, length):
    """A socket whose POST to an unknown route announced `length` bytes and got its 404 already."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    sock.sendall(f"POST /no/such/route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        data = sock.recv(4096)
        assert data, f"closed before the answer: {reply!r}"
        reply += data
    assert reply.startswith(b"HTTP/1.1 404 "), reply
    return sock


def send_until_refused(sock, block, pause, timeout):
    """Sends `block` every `pause` seconds until a send fails; (bytes sent, seconds). Fails after `timeout`."""
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            sock.sendall(block)
        except OSError:
            return sent, time.monotonic() - started
        sent += len(block)
        if pause:
            time.sleep(pause)
    raise AssertionError(f"the daemon still reads after {timeout} s and {sent} bytes")


def test_a_client_that_never_stops_sending_is_cut_after_the_linger_limit(daemon):
    """After an early answer the daemon reads at most LINGER_LIMIT more (plus what socket buffers
    hold, up to 32+4 MiB here), then closes: not the announced 16 GiB."""
    sock = refused_socket(daemon, 16 << 30)
    try:
        sent, seconds = send_until_refused(sock, bytes(MiB), 0, timeout=20)
    finally:
        sock.close()
    assert sent < LINGER_LIMIT + 48 * MiB, sent
    assert seconds < LINGER_SECONDS + 3, seconds


@pytest.mark.parametrize("pause", [0.05, None], ids=["trickling", "stalled"])
def test_a_slow_or_stalled_client_is_cut_after_the_linger_time(daemon, pause):
    """A client that trickles its body (1 KiB every 50 ms), or stops sending without closing, does
    not hold its connection (and thread) past the linger time."""
    sock = refused_socket(daemon, 1 << 30)
    try:
        if pause is None:
            time.sleep(LINGER_SECONDS + 1)  # stalled: then the daemon must have closed (RST on our next bytes)
        _, seconds = send_until_refused(sock, bytes(1024), pause or 0.05, timeout=LINGER_SECONDS + 5)
    finally:
        sock.close()
    if pause is not None:
        assert seconds < LINGER_SECONDS + 3, seconds


def test_keep_alive_is_kept_for_requests_read_to_the_end(daemon):
    """Requests whose body a route read to its end still share one connection."""
    headers = {"Authorization": f"Bearer {mint(daemon.token, sub=new_server_id())}"}
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    sockets = []
    try:
        for size in (300_000, 0, 3 * MiB):
            conn.request("POST", "/api/transfers/probe", body=bytes(size), headers=headers)
            reply = conn.getresponse()
            assert reply.status == 200 and json.loads(reply.read())["bytes"] == size, (size, reply.status)
            sockets.append(conn.sock)
    finally:
        conn.close()
    assert sockets[0] is not None and all(s is sockets[0] for s in sockets), "the connection was not kept"


def test_requests_without_a_body_keep_the_connection_and_pipeline(daemon):
    """GETs (answers, refusals, 404s) share one connection, and pipelined requests each get their
    answer in order. libmicrohttpd closes the connection after an answer queued on its first call,
    so answers to bodiless requests are queued on the next one."""
    node = {"Authorization": f"Bearer {daemon.token}"}
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    sockets = []
    try:
        for path, headers, status in [("/api/system", node, 200), ("/nope", {}, 404), ("/api/system", {}, 401),
                                      ("/api/system", node, 200)]:
            conn.request("GET", path, headers=headers)
            reply = conn.getresponse()
            body = reply.read()
            assert reply.status == status, (path, reply.status, body)
            assert reply.getheader("Connection") != "close", (path, reply.getheaders())
            sockets.append(conn.sock)
    finally:
        conn.close()
    assert sockets[0] is not None and all(s is sockets[0] for s in sockets), "the connection was not kept"
    # Three requests in one write: three answers, in order, then the close the last one asked for.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        one = f"GET /api/system HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {daemon.token}\r\n"
        sock.sendall((one + "\r\n" + "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + one + "Connection: close\r\n\r\n").encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", reply)
    assert statuses == [b"200", b"404", b"200"], reply[:600]
