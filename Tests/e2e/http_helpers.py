"""Helpers for test_http.py: signed-URL tokens, volumes placed on a daemon, a curl/requests
client pair with one result shape, streamed multipart bodies and hashing without holding data.

Only talks to 127.0.0.1. Every child process is waited for (or killed by its PID).
"""
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from email.utils import formatdate
from pathlib import Path

import jwt
import requests

HTTP_TIMEOUT = 60
MiB = 1 << 20


# ---------------------------------------------------------------- tokens


def mint(secret, scope, server, ttl=900, **claims):
    """A panel-shaped HS256 token for a signed-URL endpoint (one fresh unique_id each call)."""
    now = int(time.time())
    body = {
        "iss": "https://panel.example.test", "aud": ["http://127.0.0.1"],
        "jti": hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        "iat": now, "nbf": now - 300, "exp": now + ttl,
        "unique_id": secrets.token_urlsafe(12), "scope": scope, "server_uuid": server,
    }
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256", headers={"jti": body["jti"]})


def file_url(daemon, server, path):
    return f"{daemon.url}/download/file?token={mint(daemon.token, 'file-download', server, file_path=path)}"


def backup_url(daemon, server, backup):
    return f"{daemon.url}/download/backup?token={mint(daemon.token, 'backup-download', server, backup_uuid=backup)}"


def upload_url(daemon, server, directory=None, token=None):
    token = token or mint(daemon.token, "file-upload", server, user_uuid=str(uuid.uuid4()))
    url = f"{daemon.url}/upload/file?token={token}"
    if directory is not None:
        url += "&directory=" + requests.utils.quote(directory, safe="")
    return url


# ---------------------------------------------------------------- volumes


def place_volume(daemon, source, server=None):
    """Copies `source` (symlinks kept as symlinks) to the daemon's volumes/<server>; returns (server, path)."""
    server = server or str(uuid.uuid4())
    dest = daemon.volumes / server
    daemon.volumes.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, dest, symlinks=True)
    return server, dest


def volume_entries(root):
    """Every path under root (files, dirs, symlinks; symlinks not followed), relative, '/'-joined."""
    out = set()
    for dirpath, dirs, names in os.walk(root, followlinks=False):
        for n in dirs + names:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def http_date(seconds):
    return formatdate(seconds, usegmt=True)


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


# ---------------------------------------------------------------- hashing without holding data


def sha256_path(path, block=4 * MiB):
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(block)
            if not chunk:
                return h.hexdigest(), n
            h.update(chunk)
            n += len(chunk)


# ---------------------------------------------------------------- one shape for curl and requests


class Reply:
    """status, headers (case-insensitive), body bytes (or None when only hashed), sha256, length."""

    def __init__(self, status, headers, body=None, sha256=None, length=None):
        self.status = status
        self.headers = requests.structures.CaseInsensitiveDict(headers)
        self.body = body
        if body is not None:
            sha256 = hashlib.sha256(body).hexdigest()
            length = len(body)
        self.sha256 = sha256
        self.length = length

    def json(self):
        import json
        return json.loads(self.body)

    def __repr__(self):
        preview = self.body[:300] if self.body is not None else None
        return f"Reply({self.status}, {dict(self.headers)}, {preview!r})"


def parse_header_block(raw):
    """The last response's headers from `curl -D` output (skips 100 Continue blocks)."""
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    assert blocks, f"no headers in {raw!r}"
    lines = blocks[-1].split("\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return status, headers


def _headers_dict(pairs):
    d = {}
    for k, v in pairs:
        assert k.lower() not in {x.lower() for x in d}, f"header {k} sent twice: {pairs}"
        d[k] = v
    return d


def curl_fetch(url, workdir, method="GET", range_=None, headers=(), hash_only=False, extra=(), timeout=HTTP_TIMEOUT):
    """Runs the curl CLI; the body goes to a file (or, with hash_only, through a pipe into sha256)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(4)
    head_file = workdir / f"curl-{tag}.headers"
    argv = ["curl", "-sS", "--globoff", "-D", str(head_file)]
    if method == "HEAD":
        argv += ["-I"]
    elif method != "GET":
        argv += ["-X", method]
    if range_ is not None:
        argv += ["-r", range_]
    for h in headers:
        argv += ["-H", h]
    argv += list(extra)
    if hash_only:
        argv += ["-o", "-", url]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:  # a 1 MiB pipe instead of 64 KiB: far fewer wake-ups for multi-GiB bodies
            import fcntl
            fcntl.fcntl(proc.stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), MiB)
        except OSError:
            pass
        h = hashlib.sha256()
        n = 0
        try:
            while True:
                chunk = proc.stdout.read(4 * MiB)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        assert rc == 0, f"curl exit {rc}: {proc.stderr.read().decode(errors='replace')}"
        status, pairs = parse_header_block(head_file.read_text(errors="replace"))
        return Reply(status, _headers_dict(pairs), sha256=h.hexdigest(), length=n)
    if method == "HEAD":
        # curl -I prints the headers as the "body"; a HEAD reply has none (test_head_sends_no_body checks the wire).
        done = subprocess.run(argv + ["-o", os.devnull, url], capture_output=True, timeout=timeout)
        assert done.returncode == 0, f"curl exit {done.returncode}: {done.stderr.decode(errors='replace')}"
        status, pairs = parse_header_block(head_file.read_text(errors="replace"))
        return Reply(status, _headers_dict(pairs), body=b"")
    body_file = workdir / f"curl-{tag}.body"
    argv += ["-o", str(body_file), url]
    done = subprocess.run(argv, capture_output=True, timeout=timeout)
    assert done.returncode == 0, f"curl exit {done.returncode}: {done.stderr.decode(errors='replace')}"
    status, pairs = parse_header_block(head_file.read_text(errors="replace"))
    body = body_file.read_bytes() if body_file.exists() else b""
    return Reply(status, _headers_dict(pairs), body=body)


def requests_fetch(url, workdir=None, method="GET", range_=None, headers=(), hash_only=False, extra=(),
                   timeout=HTTP_TIMEOUT):
    hdrs = dict(h.split(": ", 1) for h in headers)
    if range_ is not None:
        hdrs["Range"] = f"bytes={range_}"
    with requests.request(method, url, headers=hdrs, stream=True, timeout=timeout) as r:
        pairs = list(r.raw.headers.items())
        if hash_only:
            h = hashlib.sha256()
            n = 0
            for chunk in r.iter_content(4 * MiB):
                h.update(chunk)
                n += len(chunk)
            return Reply(r.status_code, _headers_dict(pairs), sha256=h.hexdigest(), length=n)
        return Reply(r.status_code, _headers_dict(pairs), body=r.raw.read(decode_content=False))


CLIENTS = {"curl": curl_fetch, "requests": requests_fetch}


# ---------------------------------------------------------------- streamed multipart bodies


class StreamedMultipart:
    """A multipart/form-data body produced piece by piece; `len()` is known, so requests sends
    Content-Length (as browsers and panels do) and iterates the body without building it.

    files: list of (field, filename, size, chunk_iterable_factory)."""

    def __init__(self, files, boundary=None):
        self.boundary = boundary or secrets.token_hex(16)
        self.files = files
        self._heads = []
        for fieldname, filename, size, _ in files:
            head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{fieldname}\"; "
                    f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
            self._heads.append(head)
        self._tail = f"--{self.boundary}--\r\n".encode()
        self.length = sum(len(h) + size + 2 for h, (_, _, size, _) in zip(self._heads, files)) + len(self._tail)

    @property
    def content_type(self):
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self):
        return self.length

    def __iter__(self):
        for head, (_, _, size, factory) in zip(self._heads, self.files):
            yield head
            sent = 0
            for chunk in factory():
                sent += len(chunk)
                yield chunk
            assert sent == size, f"generator gave {sent} bytes, declared {size}"
            yield b"\r\n"
        yield self._tail


def counter_blocks(total, block=MiB, seed=7, hasher=None):
    """`total` bytes: one random block repeated, each copy stamped with its index (so misplaced or
    repeated blocks change the hash). Updates `hasher` with exactly what it yields."""
    import random
    base = random.Random(seed).randbytes(block)

    def gen():
        left = total
        i = 0
        while left > 0:
            n = min(block, left)
            chunk = (i.to_bytes(8, "big") + base[8:])[:n]
            if hasher is not None:
                hasher.update(chunk)
            yield chunk
            left -= n
            i += 1
    return gen


def write_config(path, token, data, backups, upload_limit=None):
    lines = [
        "debug: false", "uuid: 5c2b9a52-1111-4c1e-9d1f-000000000001", "token_id: testtokenid",
        f"token: {token}", "api:", "  host: 127.0.0.1", "  port: 0",
    ]
    if upload_limit is not None:
        lines.append(f"  upload_limit: {upload_limit}")
    lines += ["system:", f"  data: {data}", f"  backup_directory: {backups}"]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)
