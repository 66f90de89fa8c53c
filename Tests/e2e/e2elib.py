"""Helpers shared by the end-to-end tests: processes, tokens, archives, multipart bodies.

Imported by conftest.py and the test modules (pytest puts this directory on sys.path).
Nothing here talks to anything but 127.0.0.1.
"""
import base64
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import jwt
import requests

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
HOSTILE = FIXTURES / "hostile"
sys.path.insert(0, str(FIXTURES))
from treecmp import compare_trees  # noqa: E402  (fixtures/treecmp.py)

HTTP_TIMEOUT = 30
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def new_server_id():
    return str(uuid.uuid4())


def wait_until(predicate, timeout=10.0, interval=0.02):
    """Polls `predicate` until it returns something truthy; returns that value (or the last falsy one)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- processes


class Daemon:
    """One `transferd` process, started with its stdout/stderr in files under `workdir`."""

    def __init__(self, binary, workdir, args, state=None, token=None):
        self.binary = binary
        self.workdir = Path(workdir)
        self.args = list(args)
        self.state = Path(state) if state else None
        self._token = token
        self.proc = None
        self.stopped_by_test = False
        self.url = None
        self.port = None
        self.volumes = None
        self.returncode = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=15, volumes=None):
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.out_path = self.workdir / "transferd.out"
        self.err_path = self.workdir / "transferd.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([self.binary, *self.args], stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir)
        pattern = re.compile(r"listening on (https?://127\.0\.0\.1:(\d+))")

        def listening():
            match = pattern.search(self.out_path.read_text(errors="replace"))
            return match or self.proc.poll() is not None

        wait_until(listening, timeout)
        match = pattern.search(self.out_path.read_text(errors="replace"))
        if not match:
            rc = self.proc.poll()
            if rc is None:
                self.stop()
            raise AssertionError(f"transferd did not start (exit {rc}): stdout={self.stdout()!r} stderr={self.log()!r}")
        self.url = match.group(1)
        self.port = int(match.group(2))
        if volumes is not None:
            self.volumes = Path(volumes)
        elif self.state is not None:
            self.volumes = self.state / "volumes"
        return self

    @property
    def token(self):
        if self._token is None:
            self._token = (self.state / "node-token").read_text().strip()
        return self._token

    @property
    def staging(self):
        return self.volumes / ".staging"

    def staging_entries(self):
        return sorted(os.listdir(self.staging))

    def volume(self, server):
        return self.volumes / server

    @property
    def transfers_url(self):
        return self.url + "/api/transfers"

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def log(self):
        return self.err_path.read_text(errors="replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Signals the daemon by PID and waits; returns its exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        self.stopped_by_test = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                self.returncode = None
                return None
        self.returncode = self.proc.returncode
        return self.returncode


def run_cli(binary, *args, timeout=60, input=None):
    """Runs a CLI to completion (the child is waited for, so never left behind)."""
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL if input is None else None, input=input)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip()]


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- tokens


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def panel_claims(sub=None, scope="transfer", ttl=900, now=None, **extra):
    """Claims shaped like a Pterodactyl/Pelican panel's (iss, aud, jti, iat, nbf, exp, unique_id)."""
    now = int(time.time()) if now is None else now
    claims = {
        "iss": "https://panel.example.test",
        "aud": ["http://127.0.0.1"],
        "jti": hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        "iat": now,
        "nbf": now - 300,
        "exp": now + ttl,
        "unique_id": secrets.token_urlsafe(12),
    }
    if scope is not None:
        claims["scope"] = scope
    if sub is not None:
        claims["sub"] = sub
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def mint(secret, sub=None, scope="transfer", ttl=900, algorithm="HS256", header_extra=None, **extra):
    """A PyJWT-signed token; the JOSE header repeats jti (and sub) as panels do, plus `header_extra`."""
    claims = panel_claims(sub=sub, scope=scope, ttl=ttl, **extra)
    headers = {"jti": claims["jti"], **(header_extra or {})}
    if "sub" in claims:
        headers["sub"] = claims["sub"]
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def alg_none_token(claims):
    header = {"alg": "none", "typ": "JWT"}
    return (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()) + ".")


# ---------------------------------------------------------------- archives


def gnu_tar_gz(src, dest):
    """`tar -czf dest -C src .` with GNU tar (as root it records modes, mtimes, symlinks)."""
    subprocess.run(["tar", "--create", "--gzip", "--file", str(dest), "-C", str(src), "."],
                   check=True, capture_output=True, timeout=60)
    return Path(dest)


# ---------------------------------------------------------------- multipart


CRLF = b"\r\n"


def go_boundary():
    """Go's mime/multipart boundary: 30 random bytes in hex (what Wings sends)."""
    return secrets.token_hex(30)


class Part:
    """One form part; `data` is bytes or an iterable of bytes (streamed)."""

    def __init__(self, name, data, filename=None, content_type=None):
        self.name, self.data, self.filename, self.content_type = name, data, filename, content_type

    def header(self):
        disposition = f'form-data; name="{self.name}"'
        if self.filename is not None:
            disposition += f'; filename="{self.filename}"'
        lines = [f"Content-Disposition: {disposition}"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def chunks(self):
        if isinstance(self.data, (bytes, bytearray)):
            yield bytes(self.data)
        else:
            yield from self.data


def archive_part(data, name="archive"):
    return Part(name, data, filename="archive.tar.gz", content_type="application/octet-stream")


def field(name, value):
    return Part(name, value.encode() if isinstance(value, str) else value)


def multipart_stream(parts, boundary, close=True):
    """Yields a multipart/form-data body exactly as Go's mime/multipart writes it."""
    for i, part in enumerate(parts):
        yield (b"--" if i == 0 else b"\r\n--") + boundary.encode() + CRLF + part.header()
        yield from part.chunks()
    if close:
        yield b"\r\n--" + boundary.encode() + b"--\r\n"


def multipart_bytes(parts, boundary, close=True):
    return b"".join(multipart_stream(parts, boundary, close))


def transfer_parts(archive, checksum=None, checksum_name="checksum"):
    """archive part then checksum part (the sha256 of the archive unless given)."""
    if checksum is None:
        checksum = sha256_hex(archive)
    return [archive_part(archive), field(checksum_name, checksum)]


def rechunk(stream, sizes):
    """Re-slices a byte stream into pieces whose sizes cycle through `sizes`."""
    pending = bytearray()
    index = 0
    for chunk in stream:
        pending += chunk
        while len(pending) >= sizes[index % len(sizes)]:
            n = sizes[index % len(sizes)]
            yield bytes(pending[:n])
            del pending[:n]
            index += 1
    if pending:
        yield bytes(pending)


def post_transfer(url, token=None, body=b"", boundary=None, content_type=None, authorization=None,
                  chunked=True, timeout=HTTP_TIMEOUT, extra_headers=None):
    """POSTs a transfer body. With `chunked`, bytes are sent through a generator (chunked encoding)."""
    headers = {"Accept": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if content_type is None and boundary is not None:
        content_type = f"multipart/form-data; boundary={boundary}"
    if content_type is not None:
        headers["Content-Type"] = content_type
    if extra_headers:
        headers.update(extra_headers)
    if chunked and isinstance(body, (bytes, bytearray)):
        data = bytes(body)
        body = (data[i:i + 65536] for i in range(0, len(data), 65536)) if data else iter([b""])
    url = url if url.endswith("/api/transfers") else url + "/api/transfers"
    return requests.post(url, data=body, headers=headers, timeout=timeout)


def push_archive(daemon, server, archive, token=None, **kw):
    """A complete, well-formed transfer of `archive` bytes; returns the response."""
    boundary = go_boundary()
    token = token or mint(daemon.token, sub=server)
    return post_transfer(daemon.url, token, multipart_stream(transfer_parts(archive), boundary), boundary, **kw)


def error_of(response):
    """The `error` string of a JSON error body (asserts the body is JSON with one)."""
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body["error"]


def raw_request(port, head, body_pieces=(), close_after=True, read_response=False, timeout=10):
    """Sends raw bytes over one TCP connection; optionally reads the reply until EOF."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(head)
        for piece in body_pieces:
            sock.sendall(piece)
        if not read_response:
            return None
        sock.shutdown(socket.SHUT_WR)
        return read_until_closed(sock)
    finally:
        if close_after:
            sock.close()


def chunk_encode(data):
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def scan_names(root, prefix):
    """Every path under root whose last component starts with `prefix` (symlinks not followed)."""
    found = []
    for dirpath, dirs, names in os.walk(root, followlinks=False):
        for n in dirs + names:
            if n.startswith(prefix):
                found.append(os.path.join(dirpath, n))
    return found


def read_until_closed(sock):
    """Everything the peer sends until it closes the connection."""
    reply = bytearray()
    while True:
        data = sock.recv(65536)
        if not data:
            return bytes(reply)
        reply += data


class HeldTransfer:
    """A transfer whose source sends 4 KiB of the archive and then stalls until released."""

    def __init__(self, daemon, server, archive):
        self.daemon, self.server, self.archive = daemon, server, archive
        self.holding, self.release_event = threading.Event(), threading.Event()
        self.result = None
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _body(self):
        yield self.archive[:4096]
        self.holding.set()
        self.release_event.wait(20)
        yield self.archive[4096:]

    def _send(self):
        boundary = go_boundary()
        parts = [archive_part(self._body()), field("checksum", sha256_hex(self.archive))]
        try:
            self.result = post_transfer(self.daemon.url, mint(self.daemon.token, sub=self.server),
                                        multipart_stream(parts, boundary), boundary)
        except Exception as e:  # a dropped connection is a valid outcome for a cancelled transfer
            self.result = e

    def __enter__(self):
        self.thread.start()
        assert self.holding.wait(10)
        # This transfer's staging tree (an upload in flight may have its own file there too).
        mine = lambda: [e for e in self.daemon.staging_entries() if e.startswith(self.server + ".")]
        assert wait_until(lambda: len(mine()) == 1, timeout=10), self.daemon.staging_entries()
        return self

    def release(self):
        self.release_event.set()
        self.thread.join(30)

    def __exit__(self, *exc):
        self.release()
