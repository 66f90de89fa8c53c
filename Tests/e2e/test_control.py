"""Panel → node control of transfers and node → panel callbacks (DESIGN.md §2):
`POST/DELETE /api/servers/:uuid/transfer` on the source, `DELETE /api/transfers/:uuid` on the
destination, `GET /api/transfers` on both, and the `/transfer/success|failure` callbacks to the
panel (`remote`) with `Authorization: Bearer <token_id>.<token>`, retried on 5xx and connection
errors.

Two daemons per test on 127.0.0.1 (conftest `daemon_factory`, stopped by PID); a stub panel
(control_helpers.StubPanel, a thread) records callbacks. Big volumes are generated once per
module and hard-linked into each source (the source only reads them).
"""
import json
import shutil
import socket
import subprocess
import time

import pytest

from control_helpers import (BlackHole, StubPanel, WsClient, callback_path, cancel_incoming, cancel_outgoing, configured_daemon,
                             entries_for, link_tree, list_transfers, manifest, node_request, progress_payloads,
                             random_volume, small_volume, start_push, statuses, transfer_request_body, wait_finished,
                             ws_token)
from e2elib import (compare_trees, error_lines, free_port, mint, new_server_id, post_transfer, push_archive,
                    transfer_parts, go_boundary, multipart_stream, wait_until)

BIG = 240 << 20  # long enough (about a second or more even on a fast build) to act on a running transfer


@pytest.fixture(scope="module")
def big_volume(tmp_path_factory):
    root = random_volume(tmp_path_factory.mktemp("big") / "volume", BIG, files=6, seed=5)
    return root, manifest(root)


@pytest.fixture(scope="module")
def little_volume(tmp_path_factory):
    return small_volume(tmp_path_factory.mktemp("little") / "volume", seed=3)


@pytest.fixture
def panel():
    stub = StubPanel()
    yield stub
    stub.stop()


@pytest.fixture
def pair(daemon_factory, tmp_path, panel):
    """(source, destination), both reporting to the stub panel with their own token ids."""
    source = configured_daemon(daemon_factory, tmp_path, "source", remote=panel.url, token_id="src-token-id")
    destination = configured_daemon(daemon_factory, tmp_path, "destination", remote=panel.url,
                                    token_id="dst-token-id")
    return source, destination


def auth_of(daemon, token_id):
    return f"Bearer {token_id}.{daemon.token}"


def assert_source_intact(source, server, volume, expected_manifest):
    assert compare_trees(volume, source.volume(server)) == []
    assert manifest(source.volume(server)) == expected_manifest, "the source volume's contents changed"


def file_bytes(root):
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def wait_staging_empty(daemon, timeout=10):
    wait_until(lambda: daemon.staging_entries() == [], timeout)
    return daemon.staging_entries()


def wait_running(destination, server, min_bytes=1, timeout=15):
    """Waits until the destination lists a running incoming transfer of `server` that has
    received at least `min_bytes`."""
    def running():
        entries = entries_for(destination, server, "incoming")
        return entries and entries[-1].get("state") == "processing" and entries[-1].get("bytes", 0) >= min_bytes
    assert wait_until(running, timeout, 0.02), f"no running incoming transfer: {entries_for(destination, server)}"


def start_running_push(source, destination, volume, min_bytes=8 << 20):
    """Starts a panel-driven push of `volume` (hard-linked into the source) under a new server id
    and waits until the destination has received `min_bytes`: (server, the 202's JSON)."""
    server = new_server_id()
    link_tree(volume, source.volume(server))
    r = start_push(source, destination, server)
    assert r.status_code == 202, (r.status_code, r.text)
    wait_running(destination, server, min_bytes=min_bytes)
    return server, r.json()


def repush_and_commit(source, destination, server, volume):
    """Replaces the source's volume of `server` with `volume` and transfers it: both daemons must
    take a new transfer of the same server, and the destination must commit it."""
    shutil.rmtree(source.volume(server))
    link_tree(volume, source.volume(server))
    r = start_push(source, destination, server)
    assert r.status_code == 202, (r.status_code, r.text)
    entry = wait_finished(source, server, "outgoing", timeout=30, entry_id=r.json().get("id"))
    assert entry and entry["state"] == "completed", entry
    assert compare_trees(volume, destination.volume(server)) == []
    assert destination.staging_entries() == []


# ---------------------------------------------------------------- panel-driven push


def test_panel_driven_push_end_to_end(pair, panel, big_volume):
    source, destination = pair
    volume, expected = big_volume
    server = new_server_id()
    link_tree(volume, source.volume(server))
    problems = []
    watcher = WsClient(source, server)
    try:
        assert watcher.auth(ws_token(source.token, server))["event"] == "auth success"
        mark = watcher.mark()

        r = start_push(source, destination, server)
        assert r.status_code == 202, (r.status_code, r.text)
        started = r.json()
        assert started.get("server") == server and started.get("id"), started
        # Already transferring: a second request is refused while the first runs.
        again = start_push(source, destination, server)
        assert again.status_code == 409, (again.status_code, again.text)

        out = entries_for(source, server, "outgoing")
        assert [e["id"] for e in out] == [started["id"]], out
        assert out[0]["state"] == "processing", out
        wait_running(destination, server)
        incoming = entries_for(destination, server, "incoming")
        assert len(incoming) == 1 and incoming[0]["state"] == "processing", incoming
        assert not destination.volume(server).exists(), "the destination committed before the end"
        # Still refused while running (checked again mid-transfer, not just at once).
        assert start_push(source, destination, server).status_code == 409

        assert wait_until(lambda: destination.volume(server).exists(), 60, 0.05), "never committed"
        entry = wait_finished(source, server, "outgoing", timeout=30, entry_id=started["id"])
        assert entry["state"] == "completed", entry
        assert compare_trees(volume, destination.volume(server)) == []
        assert_source_intact(source, server, volume, expected)
        assert destination.staging_entries() == [] and source.staging_entries() == []

        # Both lists show the finished transfer with its numbers.
        src_entry = entries_for(source, server, "outgoing")[-1]
        dst_entry = wait_finished(destination, server, "incoming")
        for e, direction in ((src_entry, "outgoing"), (dst_entry, "incoming")):
            assert e["direction"] == direction and e["server"] == server and e["state"] == "completed", e
            assert {"id", "bytes", "total", "rate", "seconds"} <= set(e), e
            assert e["bytes"] > 0 and e["seconds"] > 0 and "error" not in e, e

        # Nothing left to cancel on either side.
        assert cancel_outgoing(source, server).status_code == 409
        assert cancel_incoming(destination, server).status_code == 409

        # The source's console saw the whole story, progress at most about four times a second.
        assert wait_until(lambda: "success" in statuses(watcher.events(mark)), 5)
        time.sleep(0.3)
        timed = [(t, m) for t, m in watcher.timed(mark) if m.get("event", "").startswith("transfer ")]
        st = statuses([m for _, m in timed])
        assert st[0] == "processing" and st[-2:] == ["completed", "success"], st
        progress = progress_payloads([m for _, m in timed])
        assert progress and [p["bytes"] for p in progress] == sorted(p["bytes"] for p in progress), progress
        assert all(p["total"] >= p["bytes"] for p in progress), progress
        times = [t for t, m in timed if m["event"] == "transfer progress"]
        worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        if worst > 6:  # checked with the listing's numbers at the end, after the panel checks
            problems.append(f"the source sent {worst} 'transfer progress' events within one second (about 4 expected)")
    finally:
        watcher.close()
        time.sleep(0.3)  # let the websocket session end before the daemons are stopped

    # Only the destination reports, and only success.
    calls = panel.wait_for(1, suffix="/success", server=server, timeout=10)
    time.sleep(0.5)
    calls = panel.matching(server=server)
    assert [c["path"] for c in calls] == [callback_path(server, "success")], calls
    assert calls[0]["method"] == "POST"
    assert calls[0]["headers"].get("Authorization") == auth_of(destination, "dst-token-id"), calls[0]["headers"]

    # A completed outgoing transfer lists all of its bytes (total = the volume's file bytes).
    assert src_entry["total"] == file_bytes(volume), src_entry
    if src_entry["bytes"] != src_entry["total"]:
        problems.append(f"GET /api/transfers lists a completed outgoing transfer at {src_entry['bytes']} of "
                        f"{src_entry['total']} bytes: {src_entry}")
    assert not problems, "\n".join(problems)


def test_push_requests_that_are_refused(pair, little_volume):
    source, destination = pair
    server = new_server_id()
    link_tree(little_volume, source.volume(server))
    body = transfer_request_body(destination, server)
    url = f"/api/servers/{server}/transfer"

    assert node_request(source, "POST", url, token=False, json=body).status_code == 401
    assert node_request(source, "POST", url, token="wrong-node-token", json=body).status_code == 403
    # The panel's JWT for the destination is not the source's node token.
    assert node_request(source, "POST", url, token=mint(source.token, sub=server), json=body).status_code == 403
    unknown = new_server_id()
    r = node_request(source, "POST", f"/api/servers/{unknown}/transfer",
                     json=transfer_request_body(destination, unknown))
    assert r.status_code == 404, (r.status_code, r.text)
    r = node_request(source, "POST", url, data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400, (r.status_code, r.text)
    mismatch = dict(body, server={"uuid": new_server_id(), "start_on_completion": False})
    assert node_request(source, "POST", url, json=mismatch).status_code == 400
    # A URL the endpoint path cannot be appended to, or that would split a request line; a token
    # that would split a header.
    for field, value in (("url", body["url"] + "?x=1"), ("url", body["url"] + "#top"), ("url", "http://h st/"),
                         ("url", "http://h/\r\nX-Evil: 1"), ("token", "Bearer a\r\nX-Evil: 1"), ("token", "a b")):
        r = node_request(source, "POST", url, json=dict(body, **{field: value}))
        assert r.status_code == 400 and field in r.json()["error"], (field, value, r.status_code, r.text)
    for path in (url, f"/api/transfers/{server}"):
        assert node_request(source, "DELETE", path, token=False).status_code == 401
        assert node_request(source, "DELETE", path, token="wrong-node-token").status_code == 403
    assert node_request(source, "GET", "/api/transfers", token="wrong-node-token").status_code == 403
    # None of that started anything.
    assert list_transfers(source) == [] and list_transfers(destination) == []
    assert not destination.volume(server).exists()


# ---------------------------------------------------------------- cancel


def test_cancel_from_the_source(pair, panel, big_volume, little_volume):
    source, destination = pair
    volume, expected = big_volume
    server, started = start_running_push(source, destination, volume)  # well under way
    assert destination.staging_entries(), "nothing is being extracted into staging"

    c = cancel_outgoing(source, server)
    assert c.status_code == 202, (c.status_code, c.text)
    src_entry = wait_finished(source, server, "outgoing", timeout=15, entry_id=started["id"])
    assert src_entry["state"] in ("cancelled", "failed"), src_entry
    dst_entry = wait_finished(destination, server, "incoming", timeout=15)
    assert dst_entry["state"] in ("cancelled", "failed"), dst_entry
    assert wait_staging_empty(destination) == []
    assert not destination.volume(server).exists(), "a cancelled transfer was committed"
    assert_source_intact(source, server, volume, expected)
    assert cancel_outgoing(source, server).status_code == 409  # nothing running any more
    assert panel.matching(suffix="/success", server=server) == [], "success reported for a cancelled transfer"

    repush_and_commit(source, destination, server, little_volume)
    assert len(panel.wait_for(1, suffix="/success", server=server)) == 1


def test_a_push_cancelled_on_the_source_can_be_started_again_at_once(pair, panel, big_volume, little_volume):
    """The panel's DELETE is answered once the push has ended (state "cancelled"), so the panel
    can start the server's transfer again straight away: it used to get 409 "already
    transferring" for about a second after the 202."""
    source, destination = pair
    server, _ = start_running_push(source, destination, big_volume[0], min_bytes=4 << 20)
    c = cancel_outgoing(source, server)
    assert c.status_code == 202 and c.json()["state"] == "cancelled", (c.status_code, c.text)
    assert entries_for(source, server, "outgoing")[-1]["state"] == "cancelled"
    shutil.rmtree(source.volume(server))
    link_tree(little_volume, source.volume(server))
    again = start_push(source, destination, server)
    assert again.status_code == 202, (again.status_code, again.text)
    entry = wait_finished(source, server, "outgoing", timeout=30, entry_id=again.json()["id"])
    assert entry["state"] == "completed", entry
    assert compare_trees(little_volume, destination.volume(server)) == []


def test_cancel_from_the_destination_keeps_its_old_volume(pair, panel, big_volume, little_volume, other_volume,
                                                           other_tgz):
    source, destination = pair
    volume, expected = big_volume
    server = new_server_id()
    assert push_archive(destination, server, other_tgz).status_code == 200  # an older copy lives there
    assert len(panel.wait_for(1, suffix="/success", server=server)) == 1
    link_tree(volume, source.volume(server))
    r = start_push(source, destination, server)
    assert r.status_code == 202, (r.status_code, r.text)
    wait_running(destination, server, min_bytes=8 << 20)  # well under way
    assert destination.staging_entries(), "nothing is being extracted into staging"

    c = cancel_incoming(destination, server)
    assert c.status_code == 202, (c.status_code, c.text)
    dst_entry = wait_finished(destination, server, "incoming", timeout=15)
    assert dst_entry["state"] == "cancelled", dst_entry
    src_entry = wait_finished(source, server, "outgoing", timeout=15, entry_id=r.json()["id"])
    assert src_entry["state"] in ("cancelled", "failed"), src_entry
    # The source is told why (a 409 with the destination's reason), not just that the connection broke.
    assert "409" in src_entry.get("error", "") and "cancelled on this node" in src_entry["error"], src_entry
    assert wait_staging_empty(destination) == []
    assert compare_trees(other_volume, destination.volume(server)) == [], "the old volume was touched"
    assert_source_intact(source, server, volume, expected)
    assert cancel_incoming(destination, server).status_code == 409
    time.sleep(0.3)
    assert len(panel.matching(suffix="/success", server=server)) == 1, "success reported for a cancelled transfer"

    repush_and_commit(source, destination, server, little_volume)
    assert len(panel.wait_for(2, suffix="/success", server=server)) == 2


def test_cancel_on_the_destination_is_answered_to_a_pushing_cli(pair, big_volume, transfer_send):
    """DELETE /api/transfers/:uuid on the destination while `transfer-send push` sends: the CLI
    gets 409 with the reason and says so in one line, exit 75 (try again later); it used to see
    the connection cut ("connection broke", exit 69), as if the node had gone away."""
    _, destination = pair
    volume, _ = big_volume
    server = new_server_id()
    def cancel():
        c = cancel_incoming(destination, server)
        assert c.status_code == 202, (c.status_code, c.text)

    returncode, lines = push_and_interrupt(transfer_send, volume, destination, server, cancel)
    assert returncode == 75, (returncode, lines)
    assert len(lines) == 1 and "409" in lines[0] and "cancelled on this node" in lines[0], lines
    assert wait_staging_empty(destination) == [] and not destination.volume(server).exists()


def test_cancel_a_push_to_a_destination_that_hangs(pair, panel, big_volume, little_volume):
    """The destination accepts the connection and then never reads: DELETE on the source still
    ends the push promptly, and the server can be transferred again."""
    source, destination = pair
    volume, expected = big_volume
    server = new_server_id()
    link_tree(volume, source.volume(server))
    hole = BlackHole()
    try:
        body = transfer_request_body(destination, server)
        body["url"] = hole.url + "/api/transfers"
        asked = time.monotonic()
        r = node_request(source, "POST", f"/api/servers/{server}/transfer", json=body)
        answered = time.monotonic() - asked
        assert r.status_code == 202, (r.status_code, r.text)
        # The panel's request is answered at once; talking to the destination happens afterwards.
        assert answered < 2, f"POST /api/servers/:uuid/transfer took {answered:.1f} s to answer 202"
        assert wait_until(lambda: hole.connections, 10), "the source never connected"
        time.sleep(1.0)  # its buffers are full by now: the push is stuck
        entry = entries_for(source, server, "outgoing")[-1]
        assert entry["state"] == "processing", entry
        c = cancel_outgoing(source, server)
        assert c.status_code == 202, (c.status_code, c.text)
        started = time.monotonic()
        entry = wait_finished(source, server, "outgoing", timeout=10, entry_id=r.json()["id"])
        assert entry["state"] in ("cancelled", "failed"), entry
        assert time.monotonic() - started < 5, "cancelling a stuck push took too long"
    finally:
        hole.stop()
    assert_source_intact(source, server, volume, expected)
    repush_and_commit(source, destination, server, little_volume)


def test_cancel_an_incoming_transfer_whose_source_stalled(daemon_factory, tmp_path, panel, sample_tgz,
                                                          sample_volume):
    """The source sent half the archive and went quiet: DELETE /api/transfers/:uuid on the
    destination still ends it at once, drops the connection, discards staging, and frees the
    server for a new transfer."""
    node = configured_daemon(daemon_factory, tmp_path, "dst", remote=panel.url, token_id="abc")
    server = new_server_id()
    boundary = go_boundary()
    first = multipart_stream(transfer_parts(sample_tgz), boundary)
    opening = next(first) + sample_tgz[:len(sample_tgz) // 2]
    head = (f"POST /api/transfers HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
            f"Authorization: Bearer {mint(node.token, sub=server)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    try:
        sock.sendall(head + f"{len(opening):x}\r\n".encode() + opening + b"\r\n")
        assert wait_until(lambda: entries_for(node, server, "incoming"), 10), "the transfer never started"
        time.sleep(0.3)  # the source is silent from here on
        assert entries_for(node, server, "incoming")[-1]["state"] == "processing"
        c = cancel_incoming(node, server)
        assert c.status_code == 202, (c.status_code, c.text)
        started = time.monotonic()
        entry = wait_finished(node, server, "incoming", timeout=10)
        assert entry["state"] == "cancelled", entry
        assert time.monotonic() - started < 3, "cancelling a stalled incoming transfer took too long"
        assert wait_staging_empty(node) == [] and not node.volume(server).exists()
        # The stalled source is answered 409 with the reason, and our side of the connection closes.
        sock.settimeout(5)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except socket.timeout:
            raise AssertionError(f"the cancelled transfer's connection was left open (got {answer!r})")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 409 "), answer
        assert b"connection: close" in head.lower(), head
        assert "cancelled on this node" in json.loads(body)["error"], body
    finally:
        sock.close()
    # The server is free again.
    r = push_archive(node, server, sample_tgz)
    assert r.status_code == 200, (r.status_code, r.text)
    assert compare_trees(sample_volume, node.volume(server)) == []
    panel.wait_for(1, suffix="/success", server=server, timeout=10)
    paths = [c["path"] for c in panel.matching(server=server)]
    # One success (for the new transfer), reported last; the cancelled one may only be a failure.
    assert paths[-1:] == [callback_path(server, "success")] and paths.count(paths[-1]) == 1, paths
    assert set(paths[:-1]) <= {callback_path(server, "failure")}, paths


def push_and_interrupt(transfer_send, volume, node, server, interrupt):
    """`transfer-send push` to `node`; once the transfer is well under way, `interrupt()` (a
    cancel, a shutdown). Returns the CLI's exit status and its error lines."""
    push = subprocess.Popen([str(transfer_send), "push", "--quiet", "--volume", str(volume), "--url", node.url,
                             "--secret", node.token, "--server", server, "--compression", "gzip"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        wait_running(node, server, min_bytes=4 << 20)
        interrupt()
        _, stderr = push.communicate(timeout=30)
    finally:
        if push.poll() is None:
            push.kill()
            push.wait()
    return push.returncode, error_lines(stderr)


def send_half_a_transfer(node, server, archive, timeout=15):
    """A socket that has sent a chunked transfer's head and half its archive, then nothing more;
    returns once the node lists the transfer."""
    boundary = go_boundary()
    opening = next(multipart_stream(transfer_parts(archive), boundary)) + archive[:len(archive) // 2]
    head = (f"POST /api/transfers HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
            f"Authorization: Bearer {mint(node.token, sub=server)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=timeout)
    try:
        sock.sendall(head + f"{len(opening):x}\r\n".encode() + opening + b"\r\n")
        assert wait_until(lambda: entries_for(node, server, "incoming"), 10), "the transfer never started"
    except BaseException:
        sock.close()
        raise
    return sock


def test_a_source_that_stalls_is_listed_and_logged_as_stalled_not_cancelled(daemon_factory, sample_tgz,
                                                                            sample_volume):
    """The source sent half the archive and then nothing for the idle timeout (here 2 s): the
    daemon closes the connection, discards staging, and the transfer ends as "stalled" in the list
    and the log, not as a cancel (nobody cancelled it)."""
    node = daemon_factory("--idle-timeout", "2")
    server = new_server_id()
    sock = send_half_a_transfer(node, server, sample_tgz)
    try:
        entry = wait_finished(node, server, "incoming", timeout=15)
        assert entry["state"] == "stalled", entry
        assert entry["error"] == "the source sent nothing for 2 s, so the connection was closed", entry
        try:
            assert sock.recv(65536) == b"", "the stalled connection was left open"
        except ConnectionResetError:
            pass
    finally:
        sock.close()
    assert wait_staging_empty(node) == [] and not node.volume(server).exists()
    lines = [line for line in node.log().splitlines() if f"transfer {server}: " in line and "committed" in line]
    assert len(lines) == 1, lines
    assert " ERROR transfer " in lines[0] and "stalled, nothing committed: the source sent nothing for 2 s" in lines[0], lines
    assert "cancel" not in lines[0], lines
    # The server is free again.
    r = push_archive(node, server, sample_tgz)
    assert r.status_code == 200, (r.status_code, r.text)
    assert compare_trees(sample_volume, node.volume(server)) == []


def test_shutdown_tells_a_pushing_cli_that_the_node_is_shutting_down(daemon_factory, big_volume, transfer_send):
    """SIGTERM on the destination while `transfer-send push` sends: the CLI is answered 503 "the
    destination node is shutting down" (it used to be "cancelled on this node", as for a DELETE) and
    exits 75, try again later; the daemon's log says why the transfer stopped."""
    node = daemon_factory()
    volume, _ = big_volume
    server = new_server_id()
    def stop():
        assert node.stop() == 0, node.log()

    returncode, lines = push_and_interrupt(transfer_send, volume, node, server, stop)
    assert returncode == 75, (returncode, lines)
    assert len(lines) == 1 and "503" in lines[0] and "the destination node is shutting down" in lines[0], lines
    assert "cancelled" not in lines[0], lines
    log = [line for line in node.log().splitlines() if f"transfer {server}: " in line and "committed" in line]
    assert len(log) == 1 and " WARN  " in log[0], log
    assert log[0].endswith("interrupted, nothing committed: this node is shutting down"), log
    assert not node.volume(server).exists()


def test_shutdown_is_a_503_for_a_source_that_stalled(daemon_factory, sample_tgz):
    """A source waiting mid-body when the node stops gets the 503 JSON answer and a closed
    connection, not a cut one."""
    node = daemon_factory()
    server = new_server_id()
    sock = send_half_a_transfer(node, server, sample_tgz)
    try:
        assert node.stop() == 0, node.log()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), answer
    assert b"content-type: application/json" in head.lower(), head
    error = json.loads(body)["error"]
    assert error.startswith("the destination node is shutting down"), error


# ---------------------------------------------------------------- panel callbacks


def test_successful_transfer_is_reported_once(daemon_factory, tmp_path, panel, sample_tgz, sample_volume):
    node = configured_daemon(daemon_factory, tmp_path, "dst", remote=panel.url, token_id="abc")
    server = new_server_id()
    # The panel is told only once the volume is in place.
    panel.hook = lambda record: record.update(committed=node.volume(server).is_dir(),
                                              staging=node.staging_entries())
    r = push_archive(node, server, sample_tgz)
    assert r.status_code == 200, r.text
    calls = panel.wait_for(1, timeout=10)
    time.sleep(0.7)  # no second report, no retry of an accepted one
    calls = panel.matching()
    assert [(c["method"], c["path"]) for c in calls] == [("POST", callback_path(server, "success"))], calls
    assert calls[0]["headers"].get("Authorization") == f"Bearer abc.{node.token}"
    assert calls[0]["committed"] and calls[0]["staging"] == [], "success was reported before the commit"
    assert compare_trees(sample_volume, node.volume(server)) == []


def test_bad_checksum_is_reported_as_failure_once(daemon_factory, tmp_path, panel, sample_tgz):
    node = configured_daemon(daemon_factory, tmp_path, "dst", remote=panel.url, token_id="abc")
    server = new_server_id()
    boundary = go_boundary()
    body = multipart_stream(transfer_parts(sample_tgz, checksum="0" * 64), boundary)
    r = post_transfer(node.url, mint(node.token, sub=server), body, boundary)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    panel.wait_for(1, timeout=10)
    time.sleep(0.7)
    calls = panel.matching()
    assert [(c["method"], c["path"]) for c in calls] == [("POST", callback_path(server, "failure"))], calls
    assert calls[0]["headers"].get("Authorization") == f"Bearer abc.{node.token}"
    assert not node.volume(server).exists()
    assert node.staging_entries() == []


def test_callback_answered_503_is_retried_until_accepted(daemon_factory, tmp_path, sample_tgz):
    panel = StubPanel(statuses=[503])
    try:
        # A trailing slash on `remote` must not double the slash in the callback URL.
        node = configured_daemon(daemon_factory, tmp_path, "dst", remote=panel.url + "/", token_id="abc")
        server = new_server_id()
        assert push_archive(node, server, sample_tgz).status_code == 200
        calls = panel.wait_for(2, timeout=10)
        assert len(calls) >= 2, calls
        time.sleep(1.5)  # accepted: no further attempt
        calls = panel.matching()
        assert [c["path"] for c in calls] == [callback_path(server, "success")] * 2, calls
        assert [c["status"] for c in calls] == [503, 204]
        gap = calls[1]["t"] - calls[0]["t"]
        assert 0.3 <= gap <= 3.0, f"retry after {gap:.2f} s (expected a backoff of about 0.5 s)"
        assert all(c["headers"].get("Authorization") == f"Bearer abc.{node.token}" for c in calls)
    finally:
        panel.stop()


def test_callback_answered_4xx_is_not_retried(daemon_factory, tmp_path, sample_tgz):
    panel = StubPanel(default=404)
    try:
        node = configured_daemon(daemon_factory, tmp_path, "dst", remote=panel.url, token_id="abc")
        server = new_server_id()
        assert push_archive(node, server, sample_tgz).status_code == 200
        panel.wait_for(1, timeout=10)
        time.sleep(1.2)
        assert [c["path"] for c in panel.matching()] == [callback_path(server, "success")]
    finally:
        panel.stop()


def test_callback_is_retried_while_the_panel_is_unreachable(daemon_factory, tmp_path, sample_tgz):
    port = free_port()
    node = configured_daemon(daemon_factory, tmp_path, "dst", remote=f"http://127.0.0.1:{port}", token_id="abc")
    server = new_server_id()
    assert push_archive(node, server, sample_tgz).status_code == 200
    time.sleep(0.3)  # the first attempt(s) meet a closed port
    panel = StubPanel(port=port)
    try:
        calls = panel.wait_for(1, timeout=8)
        assert [c["path"] for c in calls] == [callback_path(server, "success")], calls
        time.sleep(0.5)
        assert len(panel.matching()) == 1
    finally:
        panel.stop()


def test_source_reports_only_failure(pair, panel, little_volume):
    """A push the destination refuses (token signed with the wrong secret): the source reports
    failure once; the destination, which never started a transfer, reports nothing."""
    source, destination = pair
    server = new_server_id()
    link_tree(little_volume, source.volume(server))
    r = start_push(source, destination, server, token=mint("not-the-destination-token-" + "y" * 40, sub=server))
    assert r.status_code == 202, (r.status_code, r.text)
    entry = wait_finished(source, server, "outgoing", timeout=15, entry_id=r.json()["id"])
    assert entry["state"] == "failed" and entry.get("error"), entry
    calls = panel.wait_for(1, timeout=10)
    time.sleep(0.5)
    calls = panel.matching()
    assert [c["path"] for c in calls] == [callback_path(server, "failure")], calls
    assert calls[0]["headers"].get("Authorization") == auth_of(source, "src-token-id")
    assert entries_for(destination, server) == [] and not destination.volume(server).exists()

    # Unreachable destination: failed again, reported again by the source only.
    body = transfer_request_body(destination, server)
    body["url"] = f"http://127.0.0.1:{free_port()}/api/transfers"
    r = node_request(source, "POST", f"/api/servers/{server}/transfer", json=body)
    assert r.status_code == 202, (r.status_code, r.text)
    entry = wait_finished(source, server, "outgoing", timeout=15, entry_id=r.json()["id"])
    assert entry["state"] == "failed", entry
    calls = panel.wait_for(2, timeout=10)
    assert [c["path"] for c in calls] == [callback_path(server, "failure")] * 2, calls
    assert all(c["headers"].get("Authorization") == auth_of(source, "src-token-id") for c in calls)
