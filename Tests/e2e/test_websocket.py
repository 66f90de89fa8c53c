"""The Wings console websocket (DESIGN.md §4): auth and its exact error texts, token expiry
notices and re-auth on the same socket, transfer events for a real push (only to sessions
authenticated for that server), RFC 6455 close codes for malformed frames, ping/pong, Origin.

Daemons run on 127.0.0.1 (conftest `daemon_factory`, stopped by PID). Clients: the `websockets`
library for the protocol, a raw-socket client (control_helpers.RawWebSocket) for bad frames.
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from control_helpers import (DENYLIST_ERROR, EXPIRED_ERROR, RawWebSocket, WsClient, configured_daemon, deny_jtis,
                             progress_payloads, random_volume, statuses, ws_token)
from e2elib import Daemon, new_server_id, push_archive, wait_until


@pytest.fixture
def server():
    return new_server_id()


@pytest.fixture
def client_factory():
    clients = []

    def make(daemon, server, **kw):
        c = WsClient(daemon, server, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
    if clients:
        # transferd crashes if SIGTERM arrives while a websocket is still being torn down (see
        # test_sigterm_with_connected_clients_exits_0); let the sessions end before teardown.
        time.sleep(0.3)


# ---------------------------------------------------------------- auth


def test_auth_success_with_good_token(daemon, server, client_factory):
    ws = client_factory(daemon, server)
    reply = ws.auth(ws_token(daemon.token, server))
    assert reply == {"event": "auth success", "args": []}
    # "*" grants everything, websocket.connect included.
    assert ws.auth(ws_token(daemon.token, server, permissions=["*"]))["event"] == "auth success"
    # The log says who connected and when they left (never the token).
    assert f"websocket {server}: authenticated (user " in daemon.log()
    ws.close()
    assert wait_until(lambda: f"websocket {server}: closed" in daemon.log(), 10), daemon.log()[-1500:]


@pytest.mark.parametrize("permissions", [[], ["control.console", "file.read"]], ids=["none", "others"])
def test_token_without_websocket_connect_is_refused(daemon, server, client_factory, permissions):
    ws = client_factory(daemon, server)
    reply = ws.auth(ws_token(daemon.token, server, permissions=permissions))
    assert reply == {"event": "jwt error", "args": ["jwt: missing websocket.connect permission"]}


def test_expired_token_gets_the_exact_refresh_message(daemon, server, client_factory):
    ws = client_factory(daemon, server)
    now = int(time.time())
    reply = ws.auth(ws_token(daemon.token, server, iat=now, exp=now - 120))
    # Panel consoles fetch a new token only on this exact text.
    assert reply == {"event": "jwt error", "args": [EXPIRED_ERROR]}


def test_denied_jti_is_refused_with_the_denylist_message(daemon, server, client_factory):
    denied = "deny-" + new_server_id()
    # The deny endpoint takes the node token only.
    assert deny_jtis(daemon, server, [denied], token="not-the-node-token").status_code in (401, 403)
    r = deny_jtis(daemon, server, [denied])
    assert r.status_code == 204, (r.status_code, r.text)
    ws = client_factory(daemon, server)
    assert ws.auth(ws_token(daemon.token, server, jti=denied)) == {"event": "jwt error", "args": [DENYLIST_ERROR]}
    # Only that jti: another token for the same server still connects.
    assert ws.auth(ws_token(daemon.token, server))["event"] == "auth success"


def test_token_issued_before_daemon_start_is_refused(daemon, server, client_factory):
    ws = client_factory(daemon, server)
    now = int(time.time())
    reply = ws.auth(ws_token(daemon.token, server, iat=now - 600))
    assert reply == {"event": "jwt error", "args": [DENYLIST_ERROR]}


def test_token_for_another_server_is_refused(daemon, server, client_factory):
    ws = client_factory(daemon, server)
    reply = ws.auth(ws_token(daemon.token, new_server_id()))
    assert reply["event"] == "jwt error", reply
    assert isinstance(reply["args"], list) and len(reply["args"]) == 1 and reply["args"][0], reply
    # A token signed with another secret is refused too.
    assert ws.auth(ws_token("some-other-node-token-" + "x" * 40, server))["event"] == "jwt error"


# ---------------------------------------------------------------- expiry


def test_token_expiring_arrives_about_a_minute_before_exp(daemon, server, client_factory):
    ws = client_factory(daemon, server)
    start = time.monotonic()
    assert ws.auth(ws_token(daemon.token, server, exp=int(time.time()) + 63))["event"] == "auth success"
    found = ws.wait_index("token expiring", timeout=6)
    assert found is not None, f"no 'token expiring' within 6 s of a token expiring in 63 s: {ws.events()}"
    _, at, message = found
    # exp - 60 s is 2-3 s away: not at once, not late.
    assert 1.0 <= at - start <= 5.5, f"'token expiring' after {at - start:.2f} s"
    assert message.get("args", []) in ([], None) or isinstance(message["args"], list)
    assert ws.events(names=("token expired",)) == []


def test_token_expired_stops_events_until_reauth_on_the_same_socket(daemon, server, client_factory, other_tgz):
    ws = client_factory(daemon, server)
    assert ws.auth(ws_token(daemon.token, server, exp=int(time.time()) + 3))["event"] == "auth success"
    # exp is within the minute: the notice is due at once, the expiry within a few seconds.
    assert ws.wait_event("token expiring", timeout=3) is not None, ws.events()
    assert ws.wait_event("token expired", timeout=7) is not None, ws.events()
    names = [m["event"] for m in ws.events()]
    assert names.index("token expiring") < names.index("token expired"), names

    # Expired: a transfer for this server produces no events on this socket.
    mark = ws.mark()
    r = push_archive(daemon, server, other_tgz)
    assert r.status_code == 200, r.text
    time.sleep(0.5)
    assert ws.transfer_events(mark) == [], "events were sent after 'token expired'"

    # A fresh token on the same socket: events flow again.
    assert ws.auth(ws_token(daemon.token, server))["event"] == "auth success"
    mark = ws.mark()
    r = push_archive(daemon, server, other_tgz)
    assert r.status_code == 200, r.text
    assert ws.wait_event("transfer status", since=mark, timeout=5) is not None
    deadline = time.monotonic() + 5
    while "success" not in statuses(ws.events(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statuses(ws.events(mark))[-1:] == ["success"], ws.events(mark)
    assert ws.events(mark, names=("token expired", "jwt error")) == []


# ---------------------------------------------------------------- transfer events


@pytest.fixture(scope="module")
def watch_volume(tmp_path_factory):
    """~40 MB of incompressible data: the push lasts long enough for several progress events."""
    return random_volume(tmp_path_factory.mktemp("ws-watch") / "volume", 40 << 20, files=4, seed=11)


def test_push_events_reach_only_sessions_authenticated_for_that_server(daemon, server, client_factory,
                                                                      transfer_send, watch_volume):
    watcher = client_factory(daemon, server)
    assert watcher.auth(ws_token(daemon.token, server))["event"] == "auth success"
    other_server = new_server_id()
    other = client_factory(daemon, other_server)
    assert other.auth(ws_token(daemon.token, other_server))["event"] == "auth success"
    anonymous = client_factory(daemon, server)  # connected to the same server, never authenticated
    refused = client_factory(daemon, server)    # tried with a bad token
    assert refused.auth(ws_token(daemon.token, server, permissions=[]))["event"] == "jwt error"
    marks = {c: c.mark() for c in (watcher, other, anonymous, refused)}

    push = subprocess.run([str(transfer_send), "push", "--volume", str(watch_volume), "--url", daemon.url,
                           "--secret-file", str(daemon.state / "node-token"), "--server", server, "--quiet"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert push.returncode == 0, push.stderr
    deadline = time.monotonic() + 5
    while "success" not in statuses(watcher.events(marks[watcher])) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # anything trailing would arrive by now

    timed = [(t, m) for t, m in watcher.timed(marks[watcher]) if m.get("event", "").startswith("transfer ")]
    events = [m for _, m in timed]
    assert events, "no transfer events at all"
    for m in events:
        assert isinstance(m.get("args"), list) and len(m["args"]) == 1 and isinstance(m["args"][0], str), m
    st = statuses(events)
    assert st and st[0] == "processing", st
    assert st[-2:] == ["completed", "success"], st
    assert not set(st) & {"failed", "cancelled", "failure"}, st
    # The first transfer event is the processing status; the last is success.
    assert events[0] == {"event": "transfer status", "args": ["processing"]}, events[:3]
    assert events[-1] == {"event": "transfer status", "args": ["success"]}, events[-3:]
    assert [m for m in events if m["event"] == "transfer logs"], "no transfer logs line"

    progress = progress_payloads(events)
    assert progress, "no transfer progress events during a 40 MB push"
    for p in progress:
        assert {"bytes", "total", "rate", "eta"} <= set(p), p
        assert isinstance(p["bytes"], (int, float)) and p["bytes"] >= 0, p
    counts = [p["bytes"] for p in progress]
    assert counts == sorted(counts) and counts[-1] > 0, counts
    assert len(set(counts)) == len(counts), f"progress repeats a byte count: {counts}"
    # Progress sits between processing and completed.
    first_progress = next(i for i, m in enumerate(events) if m["event"] == "transfer progress")
    completed = next(i for i, m in enumerate(events) if m == {"event": "transfer status", "args": ["completed"]})
    last_progress = max(i for i, m in enumerate(events) if m["event"] == "transfer progress")
    assert 0 < first_progress and last_progress < completed, [m["event"] for m in events]
    # At most about four a second.
    times = [t for t, m in timed if m["event"] == "transfer progress"]
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert worst <= 6, f"{worst} progress events within one second"

    for c in (other, anonymous, refused):
        leaked = c.transfer_events(marks[c])
        assert leaked == [], f"a session not authenticated for {server} got {leaked[:3]}"


# ---------------------------------------------------------------- frames


def _raw(daemon, server, **kw):
    daemon.volume(server).mkdir(parents=True, exist_ok=True)
    raw = RawWebSocket(daemon.port, f"/api/servers/{server}/ws", **kw)
    assert raw.status == 101 and raw.accept_ok, (raw.status, raw.headers)
    return raw


def _close_code_after(raw, send):
    try:
        send()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before reading it all; the close frame is what matters
    try:
        code, _reason, before = raw.read_until_close()
    except (EOFError, ConnectionResetError) as e:
        raise AssertionError(f"connection ended without a close frame: {e!r}")
    finally:
        raw.close()
        time.sleep(0.2)  # let the session end before the daemon is stopped (see the SIGTERM test)
    return code, before


def test_unmasked_client_frame_closes_with_1002(daemon, server):
    raw = _raw(daemon, server)
    code, _ = _close_code_after(raw, lambda: raw.send_frame(0x1, b'{"event":"auth","args":["x"]}', mask=False))
    assert code == 1002


def test_message_over_64k_closes_with_1009(daemon, server):
    raw = _raw(daemon, server)
    payload = json.dumps({"event": "auth", "args": ["x" * (70 * 1024)]}).encode()
    code, _ = _close_code_after(raw, lambda: raw.send_frame(0x1, payload))
    assert code == 1009


def test_fragmented_message_over_64k_closes_with_1009(daemon, server):
    raw = _raw(daemon, server)

    def send():
        raw.send_frame(0x1, b"a" * (40 * 1024), fin=False)
        raw.send_frame(0x0, b"b" * (30 * 1024), fin=True)

    code, _ = _close_code_after(raw, send)
    assert code == 1009


def test_invalid_utf8_text_closes_with_1007(daemon, server):
    raw = _raw(daemon, server)
    code, _ = _close_code_after(raw, lambda: raw.send_frame(0x1, b'{"event":"auth","args":["\xff\xfe\xc3"]}'))
    assert code == 1007


def test_ping_gets_pong_with_the_same_payload(daemon, server):
    raw = _raw(daemon, server)
    try:
        for payload in (b"ping-1234", b"", bytes(range(125))):
            raw.send_frame(0x9, payload)
            fin, opcode, echoed, masked = raw.read_frame()
            assert (fin, opcode, echoed, masked) == (True, 0xA, payload, False)
        # And a normal close is echoed with the same code.
        raw.send_frame(0x8, (1000).to_bytes(2, "big") + b"bye")
        code, _reason, before = raw.read_until_close()
        assert code == 1000 and before == []
    finally:
        raw.close()
        time.sleep(0.2)


# ---------------------------------------------------------------- origin


def test_origin_is_checked_only_when_configured(daemon_factory, daemon, tmp_path, server):
    listed = "https://panel.example.test"
    node = configured_daemon(daemon_factory, tmp_path, "origins", allowed_origins=[listed])
    node.volume(server).mkdir(parents=True)
    refused = RawWebSocket(node.port, f"/api/servers/{server}/ws", origin="https://evil.example.test")
    refused.close()
    assert refused.status == 403, refused.status
    allowed = RawWebSocket(node.port, f"/api/servers/{server}/ws", origin=listed)
    allowed.close()
    assert allowed.status == 101 and allowed.accept_ok
    # With only `remote` set, the panel's own origin (scheme://host[:port]) may connect.
    panel_node = configured_daemon(daemon_factory, tmp_path, "remote-only", remote="https://panel.example.test:8443/")
    panel_node.volume(server).mkdir(parents=True)
    for origin, status in (("https://panel.example.test:8443", 101), ("https://evil.example.test", 403),
                           ("http://panel.example.test:8443", 403)):
        raw = RawWebSocket(panel_node.port, f"/api/servers/{server}/ws", origin=origin)
        raw.close()
        assert raw.status == status, (origin, raw.status)
    # No allowed_origins and no remote (embedded default): any origin passes.
    daemon.volume(server).mkdir(parents=True, exist_ok=True)
    anyone = RawWebSocket(daemon.port, f"/api/servers/{server}/ws", origin="https://evil.example.test")
    anyone.close()
    assert anyone.status == 101 and anyone.accept_ok
    time.sleep(0.2)


# ---------------------------------------------------------------- shutdown


def _crash_lines(log):
    keep = [line for line in log.splitlines()
            if any(k in line for k in ("crashed", "Signal", "upgraded", "shutting down", "Thread ", "fatal"))]
    return "\n".join(keep[:12]) or log[-600:]


def test_sigterm_with_websocket_clients_exits_0(transferd, tmp_path):
    """A node restart while panel consoles are connected (and more are connecting): every client
    whose handshake completed gets close 1001, echoes it at once (as browsers do), and the daemon
    exits 0 promptly. Repeated: what this guards against are races between websocket sessions
    starting or ending and the HTTP server stopping."""
    server = new_server_id()
    for round_ in range(8):
        work = tmp_path / f"r{round_}"
        d = Daemon(transferd, work, ["--state", str(work / "state"), "--listen", "127.0.0.1:0"], state=work / "state")
        d.start()
        sockets, codes, elapsed, rc = [], [], None, None
        try:
            # Round 0: two established sessions; later rounds: clients that have just connected.
            sockets = [_raw(d, server) for _ in range(2 if round_ == 0 else 3)]
            if round_ == 0:
                for raw in sockets:  # a pong proves the session is up and running
                    raw.send_frame(0x9, b"up")
                    assert raw.read_frame()[1:3] == (0xA, b"up")
            signalled = time.monotonic()
            os.kill(d.pid, signal.SIGTERM)
            for raw in sockets:
                try:
                    code = raw.read_until_close()[0]
                    raw.send_frame(0x8, (code or 1000).to_bytes(2, "big"))
                except (OSError, EOFError) as e:
                    code = f"{type(e).__name__} after {time.monotonic() - signalled:.1f} s"
                codes.append(code)
            try:
                rc = d.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - signalled
        finally:
            if rc is None:
                rc = d.stop(timeout=2)  # SIGKILLs (by PID) if it hangs; None then
            for raw in sockets:
                raw.close()
        assert rc == 0, (f"round {round_}: transferd exited {rc} on SIGTERM with websocket clients; "
                         f"stderr:\n{_crash_lines(d.log())}")
        assert elapsed < 3, (f"round {round_}: transferd took {elapsed:.1f} s to exit after SIGTERM; close codes "
                             f"{codes}; stderr:\n{_crash_lines(d.log())}")
        assert codes == [1001] * len(sockets), f"round {round_}: close codes {codes}"


# ---------------------------------------------------------------- abuse: idle, stalled, denied, unknown


def _open_socket_count(raws):
    return sum(1 for raw in raws if raw.status == 101)


def test_sockets_that_never_authenticate_are_closed_with_1008(daemon, server):
    """Without a token nobody may hold connections: 127 idle sockets from one address (the
    per-address limit is 128) are each closed with 1008 after the authentication deadline (15 s;
    allowed up to 45 s here), after which the address reaches every endpoint again."""
    daemon.volume(server).mkdir(parents=True, exist_ok=True)
    raws = [RawWebSocket(daemon.port, f"/api/servers/{server}/ws", timeout=60) for _ in range(127)]
    try:
        assert _open_socket_count(raws) == 127
        started = time.monotonic()
        codes = []
        deadline = started + 45
        for raw in raws:
            raw.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                codes.append(raw.read_until_close()[0])
            except (OSError, EOFError) as e:
                codes.append(repr(e))
        elapsed = time.monotonic() - started
        # Every socket gets its 1008 frame: an EOF here was the daemon crashing while sockets were
        # handed back at once (see test_sockets_handed_back_at_once_each_get_their_close_frame).
        assert codes == [1008] * 127, sorted(set(map(str, codes)))
        assert elapsed < 45, f"idle sockets closed only after {elapsed:.1f} s"
        assert daemon.alive(), daemon.log()[-1500:]
    finally:
        for raw in raws:
            raw.close()
    assert requests.get(f"{daemon.url}/api/transfers/capabilities", timeout=10).status_code < 500


def _slow_upgrade_close_preload(tmp_path):
    """Builds slow_upgrade_close.c (widens libmicrohttpd's hand-back race); skips without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        pytest.skip("no C compiler for the LD_PRELOAD shim")
    out = tmp_path / "slow_upgrade_close.so"
    source = Path(__file__).with_name("slow_upgrade_close.c")
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(source), "-ldl", "-lpthread"],
                   check=True, timeout=60)
    return out


def test_sockets_handed_back_at_once_each_get_their_close_frame(daemon_factory, tmp_path, monkeypatch):
    """Many websockets ending at the same moment, by every way a session ends: a protocol error
    (1002), a message over the limit (1009), the client's close (echoed 1000), the node shutting
    down (1001). Each is handed back to libmicrohttpd as it ends; libmicrohttpd 0.9.75 could free
    a connection while the hand-back was still using it, corrupting the heap: the daemon crashed
    and sockets not yet closed saw EOF without their frame (about once a run at 127 sockets under
    load). An LD_PRELOAD shim widens that window so that every run would hit it; freed memory is
    filled (MALLOC_PERTURB_) so that a use after free crashes at once."""
    monkeypatch.setenv("LD_PRELOAD", str(_slow_upgrade_close_preload(tmp_path)))
    monkeypatch.setenv("MALLOC_PERTURB_", "85")
    monkeypatch.setenv("SWIFT_BACKTRACE", "enable=no")  # a crash ends the process at once
    d = daemon_factory()
    monkeypatch.delenv("LD_PRELOAD")
    server = new_server_id()
    oversized = json.dumps({"event": "auth", "args": ["x" * (70 * 1024)]}).encode()
    triggers = {
        1002: lambda raw: raw.send_frame(0x1, b'{"event":"auth","args":["x"]}', mask=False),
        1009: lambda raw: raw.send_frame(0x1, oversized),
        1000: lambda raw: raw.send_frame(0x8, (1000).to_bytes(2, "big") + b"bye"),
    }
    groups = {code: [_raw(d, server) for _ in range(15)] for code in (*triggers, 1001)}
    try:
        for code, trigger in triggers.items():
            for raw in groups[code]:
                try:
                    trigger(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the daemon may close before reading it all; the close frame is what matters
        codes = {}
        for code in triggers:
            codes[code] = []
            for raw in groups[code]:
                raw.sock.settimeout(20)
                try:
                    codes[code].append(raw.read_until_close()[0])
                except (OSError, EOFError) as e:
                    codes[code].append(repr(e))
        assert d.alive(), f"transferd died while sockets were closing:\n{_crash_lines(d.log())}"
        os.kill(d.pid, signal.SIGTERM)
        codes[1001] = []
        for raw in groups[1001]:
            raw.sock.settimeout(10)
            try:
                codes[1001].append(raw.read_until_close()[0])
            except (OSError, EOFError) as e:
                codes[1001].append(repr(e))
        rc = d.proc.wait(timeout=15)
    finally:
        for raws in groups.values():
            for raw in raws:
                raw.close()
    assert codes == {code: [code] * 15 for code in groups}, (codes, _crash_lines(d.log()))
    assert rc == 0, f"transferd exited {rc}:\n{_crash_lines(d.log())}"


def test_websocket_for_a_server_not_on_this_node_is_404(daemon):
    """DESIGN §2: the server must be on this node; Wings answers 404 before the upgrade."""
    missing = new_server_id()
    raw = RawWebSocket(daemon.port, f"/api/servers/{missing}/ws")
    raw.close()
    assert raw.status == 404, raw.status
    assert not daemon.volume(missing).exists()


@pytest.mark.parametrize("seconds_ago", [1, 30, 59])
def test_token_expired_within_the_leeway_is_refused(daemon, server, client_factory, seconds_ago):
    """Wings checks exp with no leeway on the socket: no `auth success` followed by `token expired`."""
    ws = client_factory(daemon, server)
    now = int(time.time())
    reply = ws.auth(ws_token(daemon.token, server, iat=now, exp=now - seconds_ago))
    assert reply == {"event": "jwt error", "args": [EXPIRED_ERROR]}


def test_socket_whose_jti_is_denied_after_auth_stops_getting_events(daemon, server, client_factory, other_tgz):
    """A token denied after it authenticated: the socket gets the denylist `jwt error` (so the
    panel fetches a fresh token) and no transfer events; a fresh token works again."""
    denied = "deny-late-" + new_server_id()
    ws = client_factory(daemon, server)
    assert ws.auth(ws_token(daemon.token, server, jti=denied))["event"] == "auth success"
    assert deny_jtis(daemon, server, [denied]).status_code == 204
    mark = ws.mark()
    r = push_archive(daemon, server, other_tgz)
    assert r.status_code == 200, r.text
    assert ws.wait_event("jwt error", since=mark, timeout=5) is not None, ws.events(mark)
    time.sleep(0.5)
    assert ws.transfer_events(mark) == [], ws.events(mark)
    assert ws.events(mark, names=("jwt error",))[0]["args"] == [DENYLIST_ERROR]
    assert ws.auth(ws_token(daemon.token, server))["event"] == "auth success"


def _stalled_client(daemon, server):
    """An authenticated client that stops reading and fills its socket (each unknown event is
    answered with a `daemon error` it never reads)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(("127.0.0.1", daemon.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /api/servers/{server}/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    s.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    s.sendall(RawWebSocket.frame(0x1, json.dumps({"event": "auth", "args": [ws_token(daemon.token, server)]}).encode()))
    time.sleep(0.1)
    s.setblocking(False)
    junk = RawWebSocket.frame(0x1, b'{"event":"x","args":[]}') * 200
    until = time.monotonic() + 2
    while time.monotonic() < until:
        try:
            s.send(junk)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break  # dropped by the node already: fine
    return s


def test_clients_that_stop_reading_do_not_slow_transfers_or_shutdown(transferd, tmp_path, other_tgz):
    """Events are queued per client, never written on the transfer's path: three stalled
    clients leave a push fast (it took 17-28 s when each write could block 10 s), and SIGTERM
    still exits promptly. Bounds are generous for a loaded machine."""
    server = new_server_id()
    d = Daemon(transferd, tmp_path, ["--state", str(tmp_path / "state"), "--listen", "127.0.0.1:0"], state=tmp_path / "state")
    d.start()
    stalled = []
    rc = None
    try:
        d.volume(server).mkdir(parents=True)
        stalled = [_stalled_client(d, server) for _ in range(3)]
        started = time.monotonic()
        r = push_archive(d, server, other_tgz)
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert took < 8, f"push took {took:.1f} s with stalled websocket clients"
        signalled = time.monotonic()
        os.kill(d.pid, signal.SIGTERM)
        try:
            rc = d.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        assert rc == 0 and time.monotonic() - signalled < 10, (rc, time.monotonic() - signalled, _crash_lines(d.log()))
    finally:
        if rc is None:
            d.stop(timeout=2)
        for s in stalled:
            s.close()
