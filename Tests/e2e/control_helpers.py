"""Helpers for test_websocket.py and test_control.py: websocket tokens and clients (the
`websockets` library and a hand-written raw-socket one for malformed frames), a stub panel
that records its callbacks, Wings-style config files, generated volumes, and the node-token
control API (start/cancel/list transfers).

Only talks to 127.0.0.1. Threads started here are stopped by the caller (`close()`/`stop()`);
no process is started here.
"""
import base64
import hashlib
import inspect
import json
import os
import random
import secrets
import shutil
import socket
import struct
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import requests

from e2elib import mint, wait_until

HTTP_TIMEOUT = 30
MiB = 1 << 20
TRANSFER_EVENTS = ("transfer status", "transfer logs", "transfer progress")
DENYLIST_ERROR = "jwt: created too far in past (denylist)"
EXPIRED_ERROR = "jwt: exp claim is invalid"

# ---------------------------------------------------------------- websocket tokens


def ws_claims(server, *, user=None, permissions=("websocket.connect",), ttl=600, iat=None, exp=None, jti=None,
              scope="websocket", **extra):
    """Claims shaped like a panel's websocket token. `None` drops a claim."""
    now = int(time.time())
    claims = {
        "iss": "https://panel.example.test",
        "aud": ["http://127.0.0.1"],
        "jti": jti or hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        "iat": now if iat is None else iat,
        "nbf": now - 300,
        "exp": now + ttl if exp is None else exp,
        "server_uuid": server,
        "user_uuid": user or str(uuid.uuid4()),
        "unique_id": secrets.token_urlsafe(12),
        "permissions": list(permissions) if permissions is not None else None,
        "scope": scope,
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def ws_token(secret, server, **kw):
    claims = ws_claims(server, **kw)
    return jwt.encode(claims, secret, algorithm="HS256", headers={"jti": claims["jti"]})


def ws_url(daemon, server):
    return daemon.url.replace("http://", "ws://", 1) + f"/api/servers/{server}/ws"


def deny_jtis(daemon, server, jtis, token=None):
    return requests.post(f"{daemon.url}/api/servers/{server}/ws/deny", json={"jtis": list(jtis)},
                         headers={"Authorization": f"Bearer {token or daemon.token}"}, timeout=HTTP_TIMEOUT)


# ---------------------------------------------------------------- websocket client (websockets library)


def _connect_kwargs():
    from websockets.sync.client import connect
    params = inspect.signature(connect).parameters
    kw = {"open_timeout": 10, "close_timeout": 2, "compression": None, "max_size": 4 * MiB}
    if "proxy" in params:
        kw["proxy"] = None  # never route 127.0.0.1 through an environment proxy
    if "ping_interval" in params:
        kw["ping_interval"] = None  # the library's keepalive pings would only add noise
    return kw


class WsClient:
    """A websocket session on one server's console socket. Incoming JSON messages are read by a
    background thread into `messages` as (monotonic time, dict), so a test can look at everything
    a client received, in order, while it drives a transfer from the main thread."""

    def __init__(self, daemon, server, origin=None):
        from websockets.sync.client import connect
        kw = _connect_kwargs()
        if origin is not None:
            kw["origin"] = origin
        self.server = server
        # The console socket is only for servers on that node (a 404 otherwise): make it one.
        if getattr(daemon, "volumes", None) is not None:
            daemon.volume(server).mkdir(parents=True, exist_ok=True)
        # Entered as a context manager: newer `websockets` versions deprecate any other use.
        self._context = connect(ws_url(daemon, server), **kw)
        self.ws = self._context.__enter__()
        self.messages = []
        self.raw = []
        self.closed = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._reader, name=f"ws-{server[:8]}", daemon=True)
        self._thread.start()

    def _reader(self):
        from websockets.exceptions import ConnectionClosed
        while True:
            try:
                text = self.ws.recv()
            except ConnectionClosed as e:
                with self._cond:
                    self.closed = e
                    self._cond.notify_all()
                return
            except Exception as e:  # noqa: BLE001 - recorded for the test to see
                with self._cond:
                    self.closed = e
                    self._cond.notify_all()
                return
            now = time.monotonic()
            with self._cond:
                self.raw.append(text)
                try:
                    message = json.loads(text)
                except (TypeError, ValueError):
                    message = {"event": "<not json>", "args": [text]}
                self.messages.append((now, message))
                self._cond.notify_all()

    def send(self, event, *args):
        self.ws.send(json.dumps({"event": event, "args": list(args)}))

    def mark(self):
        """An index into `messages`: later waits only look at messages after it."""
        with self._cond:
            return len(self.messages)

    def wait_event(self, names, since=0, timeout=5.0):
        """The first message at index >= since whose event is in `names`, or None after timeout."""
        names = (names,) if isinstance(names, str) else tuple(names)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(since, len(self.messages)):
                    if self.messages[i][1].get("event") in names:
                        return self.messages[i][1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed is not None:
                    return None
                self._cond.wait(remaining)

    def wait_index(self, names, since=0, timeout=5.0):
        """Like wait_event but returns (index, monotonic time, message) or None."""
        names = (names,) if isinstance(names, str) else tuple(names)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(since, len(self.messages)):
                    if self.messages[i][1].get("event") in names:
                        return i, self.messages[i][0], self.messages[i][1]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed is not None:
                    return None
                self._cond.wait(remaining)

    def auth(self, token, timeout=5.0):
        """Sends `auth` and returns the reply (auth success / jwt error)."""
        since = self.mark()
        self.send("auth", token)
        reply = self.wait_event(("auth success", "jwt error"), since=since, timeout=timeout)
        assert reply is not None, f"no reply to auth within {timeout}s; got {self.events(since)}"
        return reply

    def events(self, since=0, names=None):
        with self._cond:
            out = [m for _, m in self.messages[since:]]
        if names is not None:
            out = [m for m in out if m.get("event") in names]
        return out

    def timed(self, since=0):
        with self._cond:
            return list(self.messages[since:])

    def transfer_events(self, since=0):
        return self.events(since, TRANSFER_EVENTS)

    def close(self):
        try:
            self._context.__exit__(None, None, None)
        except Exception:  # noqa: BLE001
            pass
        self._thread.join(timeout=5)


def progress_payloads(events):
    """Decoded JSON payloads of `transfer progress` events (args[0] is a JSON string)."""
    out = []
    for m in events:
        if m.get("event") == "transfer progress":
            args = m.get("args")
            assert isinstance(args, list) and len(args) == 1 and isinstance(args[0], str), m
            out.append(json.loads(args[0]))
    return out


def statuses(events):
    return [m["args"][0] for m in events if m.get("event") == "transfer status"]


# ---------------------------------------------------------------- raw websocket (malformed frames)


class RawWebSocket:
    """A client written by hand, so it can send what a library never would (unmasked frames,
    oversized messages, invalid UTF-8) and read the server's close code."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, port, path, origin=None, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if origin:
            lines.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(4096)
            if not data:
                break
            head += data
        head, _, self.pending = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1]) if status_line else 0
        self.headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        self.accept_ok = self.headers.get("sec-websocket-accept") == expected

    @staticmethod
    def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        if n < 126:
            header = bytes([b0, (0x80 if mask else 0) | n])
        elif n <= 0xFFFF:
            header = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack("!H", n)
        else:
            header = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack("!Q", n)
        if not mask:
            return header + payload
        key = secrets.token_bytes(4)
        masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload)) if n < 4096 else _xor_mask(payload, key)
        return header + key + masked

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(self.frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(0x1, text.encode() if isinstance(text, str) else text)

    def _read(self, n):
        while len(self.pending) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed with {len(self.pending)} of {n} bytes")
            self.pending += data
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def read_frame(self):
        """(fin, opcode, payload, masked) of the next server frame."""
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        key = self._read(4) if b1 & 0x80 else None
        payload = self._read(n)
        if key:
            payload = _xor_mask(payload, key)
        return bool(b0 & 0x80), b0 & 0x0F, payload, key is not None

    def read_until_close(self, limit=100):
        """Reads frames until a close frame; returns (code or None, reason, frames before it)."""
        before = []
        for _ in range(limit):
            fin, opcode, payload, _masked = self.read_frame()
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, payload[2:].decode(errors="replace"), before
            before.append((opcode, payload))
        raise AssertionError(f"no close frame within {limit} frames")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _xor_mask(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


# ---------------------------------------------------------------- stub panel


class StubPanel:
    """A recording panel on 127.0.0.1: every request is kept as a dict (method, path, headers,
    body, t, status). `statuses` is a list of HTTP statuses answered in turn (then `default`);
    `hook(record)`, if set, runs before each answer."""

    def __init__(self, statuses=(), default=204, port=0):
        self.requests = []
        self.statuses = list(statuses)
        self.default = default
        self.hook = None
        self._lock = threading.Condition()
        panel = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = _read_chunked(self.rfile)
                record = {"method": self.command, "path": self.path, "headers": dict(self.headers),
                          "body": body, "t": time.monotonic()}
                if panel.hook is not None:
                    panel.hook(record)  # e.g. look at the node's disk while the callback is in flight
                with panel._lock:
                    status = panel.statuses.pop(0) if panel.statuses else panel.default
                    record["status"] = status
                    panel.requests.append(record)
                    panel._lock.notify_all()
                reply = b"" if status == 204 else json.dumps({"status": status}).encode()
                self.send_response(status)
                if reply:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if reply:
                    self.wfile.write(reply)

            do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="stub-panel", daemon=True)
        self._thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def paths(self):
        with self._lock:
            return [r["path"] for r in self.requests]

    def matching(self, suffix=None, server=None):
        with self._lock:
            out = list(self.requests)
        if server is not None:
            out = [r for r in out if f"/api/remote/servers/{server}/" in r["path"]]
        if suffix is not None:
            out = [r for r in out if r["path"].endswith(suffix)]
        return out

    def wait_for(self, count, suffix=None, server=None, timeout=10.0):
        """Waits until at least `count` matching requests arrived; returns them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [r for r in self.requests
                         if (server is None or f"/api/remote/servers/{server}/" in r["path"])
                         and (suffix is None or r["path"].endswith(suffix))]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._lock.wait(remaining)


def _read_chunked(rfile):
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            rfile.readline()
            return body
        body += rfile.read(size)
        rfile.readline()


def callback_path(server, outcome):
    return f"/api/remote/servers/{server}/transfer/{outcome}"


# ---------------------------------------------------------------- config files and daemons


def write_wings_config(directory, *, token, remote=None, token_id=None, allowed_origins=None, node_uuid=None):
    """A Wings-style config.yml under `directory`; returns (config path, volumes dir)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    volumes = directory / "volumes"
    backups = directory / "backups"
    lines = ["debug: false", f"uuid: {node_uuid or uuid.uuid4()}"]
    if token_id is not None:
        lines.append(f"token_id: {token_id}")
    lines.append(f"token: {token}")
    lines += ["api:", "  host: 127.0.0.1", "  port: 0", "  ssl:", "    enabled: false", "  upload_limit: 100",
              "system:", f"  root_directory: {directory}", f"  data: {volumes}", f"  backup_directory: {backups}"]
    if allowed_origins is not None:
        if allowed_origins:
            lines.append("allowed_origins:")
            lines += [f"  - {o}" for o in allowed_origins]
        else:
            lines.append("allowed_origins: []")
    if remote is not None:
        lines.append(f"remote: {remote}")
    path = directory / "config.yml"
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path, volumes


def configured_daemon(daemon_factory, tmp_path, name, **kw):
    """A daemon started from a generated config.yml (kw as write_wings_config; token generated)."""
    token = kw.pop("token", None) or secrets.token_urlsafe(36)
    config, volumes = write_wings_config(tmp_path / f"{name}-conf", token=token, **kw)
    return daemon_factory(config=config, name=name, volumes=volumes, token=token)


# ---------------------------------------------------------------- volumes


def random_volume(root, total_bytes, files=4, seed=1, small_files=20):
    """A volume of `files` big incompressible files adding up to `total_bytes`, plus a few small
    files, an empty dir, a symlink and assorted modes/mtimes. Fast (random.randbytes)."""
    root = Path(root)
    rng = random.Random(seed)
    (root / "world" / "region").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "cache" / "empty").mkdir(parents=True)
    per = total_bytes // files
    for i in range(files):
        p = root / "world" / "region" / f"r.{i}.0.mca"
        p.write_bytes(rng.randbytes(per))
        os.utime(p, (1717200000 + i, 1717200000 + i))
    for i in range(small_files):
        p = root / "logs" / f"log-{i:03d}.txt"
        p.write_bytes((f"line {i}\n" * rng.randrange(1, 200)).encode())
        os.chmod(p, 0o640)
        os.utime(p, (1717300000 + i, 1717300000 + i))
    (root / "server.properties").write_text("server-port=25565\nmotd=control test\n")
    (root / "eula.txt").write_bytes(b"")
    os.symlink("world/region", root / "regions")
    os.chmod(root / "eula.txt", 0o600)
    for d in ("world/region", "world", "logs", "cache/empty", "cache"):
        os.utime(root / d, (1717400000, 1717400000))
    return root


def small_volume(root, seed=7):
    root = Path(root)
    rng = random.Random(seed)
    (root / "config").mkdir(parents=True)
    (root / "config" / "a.yml").write_bytes(rng.randbytes(3000))
    (root / "readme.txt").write_text(f"small volume {seed}\n")
    os.utime(root / "readme.txt", (1717500000, 1717500000))
    os.utime(root / "config" / "a.yml", (1717500001, 1717500001))
    os.utime(root / "config", (1717500002, 1717500002))
    return root


def link_tree(src, dst):
    """Copies `src` to `dst` with regular files hard-linked (instant for big volumes; the source
    daemon only reads them). Dirs, symlinks, modes and mtimes are reproduced."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
    return dst


def manifest(root):
    """{relative path: sha256 or 'dir' or 'link:target'} of a tree (symlinks not followed)."""
    out = {}
    root = Path(root)
    for dirpath, dirs, names in os.walk(root, followlinks=False):
        for n in dirs + names:
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(4 * MiB), b""):
                        h.update(chunk)
                out[rel] = h.hexdigest()
    return out


# ---------------------------------------------------------------- node-token control API


def node_request(daemon, method, path, token=None, **kw):
    headers = kw.pop("headers", {})
    if token is not False:
        headers.setdefault("Authorization", f"Bearer {token or daemon.token}")
    headers.setdefault("Accept", "application/json")
    return requests.request(method, daemon.url + path, headers=headers, timeout=HTTP_TIMEOUT, **kw)


def transfer_request_body(destination, server, token=None, start_on_completion=False):
    """What a panel sends to the source's POST /api/servers/:uuid/transfer."""
    token = token or mint(destination.token, sub=server)
    return {"server_id": 1, "url": destination.transfers_url, "token": f"Bearer {token}",
            "server": {"uuid": server, "start_on_completion": start_on_completion}}


def start_push(source, destination, server, **kw):
    return node_request(source, "POST", f"/api/servers/{server}/transfer",
                        json=transfer_request_body(destination, server, **kw))


def cancel_outgoing(source, server):
    return node_request(source, "DELETE", f"/api/servers/{server}/transfer")


def cancel_incoming(destination, server):
    return node_request(destination, "DELETE", f"/api/transfers/{server}")


def list_transfers(daemon):
    r = node_request(daemon, "GET", "/api/transfers")
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body.get("transfers"), list), body
    return body["transfers"]


def entries_for(daemon, server, direction=None):
    return [t for t in list_transfers(daemon)
            if t.get("server") == server and (direction is None or t.get("direction") == direction)]


FINAL_STATES = ("completed", "failed", "cancelled", "stalled")


def wait_finished(daemon, server, direction, timeout=30.0, entry_id=None):
    """Waits until the (newest, or `entry_id`) transfer of `server` in `direction` has a final
    state; returns that entry (or the last one seen)."""
    last = [None]

    def done():
        entries = entries_for(daemon, server, direction)
        if entry_id is not None:
            entries = [e for e in entries if e.get("id") == entry_id]
        if not entries:
            return None
        last[0] = entries[-1]
        return entries[-1] if entries[-1].get("state") in FINAL_STATES else None

    return wait_until(done, timeout, 0.05) or last[0]


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts connections and never reads or answers: a
    destination that hangs mid-transfer. `stop()` closes everything."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.connections.append(conn)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self.connections:
            c.close()
        self.sock.close()
