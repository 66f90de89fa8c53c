"""`transfer-send evacuate`: every server volume of a data directory pushed to one node, several at
once, each verified and committed on its own; one failure does not stop the others; the source is
left as it was; Ctrl-C aborts the running pushes with nothing committed."""
import json
import os
import shutil
import signal
import subprocess
import time

import jwt
import pytest

from e2elib import HeldTransfer, compare_trees, error_lines, free_port, new_server_id, run_cli
from test_push import FAKE_200, Answer200, FakeNode, RawAnswer

# What Wings answers `GET /api/system` (no `?v=2`) with the node token.
WINGS_SYSTEM = {"architecture": "amd64", "cpu_count": 2, "kernel_version": "6.1.0", "os": "linux",
                "version": "1.11.13"}


def make_data(tmp_path, sample_volume, other_volume, count=4):
    """A node's volumes directory: `count` server volumes plus the things a real one also holds."""
    data = tmp_path / "volumes"
    data.mkdir()
    servers = [new_server_id() for _ in range(count)]
    for i, server in enumerate(servers):
        shutil.copytree(sample_volume if i % 2 == 0 else other_volume, data / server, symlinks=True)
        (data / server / f"only-{i}.bin").write_bytes(os.urandom(1000 * (i + 1)))
    (data / ".staging").mkdir()
    (data / "lost+found").mkdir()
    (data / "notes.txt").write_text("not a volume\n")
    return data, servers


def evacuate(transfer_send, daemon, data, *extra, **kw):
    return run_cli(transfer_send, "evacuate", "--data", data, "--url", daemon.url,
                   "--secret-file", daemon.state / "node-token", *extra, **kw)


def test_every_volume_is_moved_and_the_source_is_left_as_it_was(daemon, transfer_send, tmp_path,
                                                                 sample_volume, other_volume):
    data, servers = make_data(tmp_path, sample_volume, other_volume)
    before = tmp_path / "before"
    shutil.copytree(data, before, symlinks=True)
    r = evacuate(transfer_send, daemon, data, "--parallel", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    ok = [line for line in r.stdout.splitlines() if line.startswith("ok ")]
    assert sorted(line.split()[1] for line in ok) == sorted(servers), r.stdout
    assert f"evacuated {len(servers)} of {len(servers)} server(s)" in r.stdout.splitlines()[-1]
    for server in servers:
        assert compare_trees(data / server, daemon.volume(server)) == []
    assert sorted(os.listdir(daemon.state / "volumes")) == sorted(servers + [".staging"])
    assert compare_trees(before, data) == []  # nothing changed, nothing removed at the source


def test_dry_run_lists_largest_first_and_sends_nothing(daemon, transfer_send, tmp_path, sample_volume, other_volume):
    data, servers = make_data(tmp_path, sample_volume, other_volume, count=3)
    r = evacuate(transfer_send, daemon, data, "--dry-run")
    assert r.returncode == 0, r.stderr
    listed = [line.split()[2] for line in r.stdout.splitlines() if line.startswith("would move")]
    assert sorted(listed) == sorted(servers)
    sizes = {s: sum(f.stat().st_size for f in (data / s).rglob("*") if f.is_file() and not f.is_symlink()) for s in servers}
    assert listed == sorted(servers, key=lambda s: -sizes[s])
    assert "dry run: nothing sent" in r.stdout
    assert [n for n in os.listdir(daemon.state / "volumes") if n != ".staging"] == []


def test_one_failure_does_not_stop_the_others(daemon, transfer_send, tmp_path, sample_volume, other_volume, sample_tgz):
    """A server already transferring at the destination fails (409, exit 75); the rest commit;
    --json tells which."""
    data, servers = make_data(tmp_path, sample_volume, other_volume)
    busy = servers[1]
    with HeldTransfer(daemon, busy, sample_tgz):
        r = evacuate(transfer_send, daemon, data, "--json", "--parallel", "2")
    assert r.returncode == 75, r.stderr
    result = json.loads(r.stdout)
    assert result["succeeded"] == len(servers) - 1 and result["failed"] == 1
    by_server = {s["server"]: s for s in result["servers"]}
    assert set(by_server) == set(servers)
    assert by_server[busy]["success"] is False and by_server[busy]["exit_status"] == 75
    assert "already" in by_server[busy]["error"]
    for server in servers:
        if server != busy:
            assert by_server[server]["success"] is True and len(by_server[server]["checksum"]) == 64
            assert compare_trees(data / server, daemon.volume(server)) == []


def test_only_the_servers_asked_for(daemon, transfer_send, tmp_path, sample_volume, other_volume):
    data, servers = make_data(tmp_path, sample_volume, other_volume)
    chosen = [servers[0], servers[3]]
    r = evacuate(transfer_send, daemon, data, "--servers", ",".join(s.upper() for s in chosen), "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(n for n in os.listdir(daemon.state / "volumes") if n != ".staging") == sorted(chosen)


@pytest.mark.parametrize("args, code, message", [
    (["--servers", "not-a-uuid"], 64, "--servers must be"),
    (["--parallel", "0"], 64, "--parallel must be 1 to 16"),
    (["--parallel", "many"], 64, "--parallel must be 1 to 16"),
    (["--compression", "brotli"], 64, "--compression must be"),
    (["stray"], 64, "stray"),
])
def test_usage_errors_send_nothing(daemon, transfer_send, tmp_path, sample_volume, other_volume, args, code, message):
    data, _ = make_data(tmp_path, sample_volume, other_volume, count=2)
    r = evacuate(transfer_send, daemon, data, *args)
    assert r.returncode == code, r.stderr
    assert message in error_lines(r.stderr)[0]
    assert [n for n in os.listdir(daemon.state / "volumes") if n != ".staging"] == []


def test_missing_things_are_one_clear_line(daemon, transfer_send, tmp_path, sample_volume, other_volume):
    data, _ = make_data(tmp_path, sample_volume, other_volume, count=1)
    absent = new_server_id()
    for extra, text in ((["--servers", absent], f"no volume for server {absent}"),):
        r = evacuate(transfer_send, daemon, data, *extra)
        assert r.returncode != 0 and len(error_lines(r.stderr)) == 1 and text in r.stderr, r.stderr
    r = run_cli(transfer_send, "evacuate", "--data", tmp_path / "nope", "--url", daemon.url, "--secret", "x")
    assert r.returncode == 74 and "is not a directory" in error_lines(r.stderr)[0], r.stderr
    (tmp_path / "file").write_text("x")
    r = run_cli(transfer_send, "evacuate", "--data", tmp_path / "file", "--url", daemon.url, "--secret", "x", "--dry-run")
    assert r.returncode == 74 and "is not a directory" in error_lines(r.stderr)[0], r.stderr
    r = run_cli(transfer_send, "evacuate", "--data", data, "--url", daemon.url)
    assert r.returncode == 64 and "--secret" in error_lines(r.stderr)[0], r.stderr


def test_sigint_aborts_the_running_pushes_with_130(transfer_send, tmp_path):
    """Against a node that passes the check and then hangs on every push: Ctrl-C ends the
    evacuation at once, every server reported failed."""
    data = tmp_path / "volumes"
    servers = [new_server_id() for _ in range(3)]
    for server in servers:
        (data / server).mkdir(parents=True)
        (data / server / "world.bin").write_bytes(os.urandom(4 << 20))
    node = WingsSystem("s", transfers="hang")
    try:
        child = subprocess.Popen([str(transfer_send), "evacuate", "--data", str(data), "--url", node.url, "--secret", "s",
                                  "--compression", "gzip", "--quiet"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        time.sleep(1.5)
        assert child.poll() is None, "the pushes should still be waiting on the silent node"
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=20)
        assert time.monotonic() - started < 10
    finally:
        node.stop()
    assert child.returncode == 130, stderr
    assert "evacuated 0 of 3 server(s)" in stdout, stdout
    assert sum(1 for line in stdout.splitlines() if line.startswith("failed ")) == 3, stdout
    assert node.requests[0] == "GET /api/system HTTP/1.1", node.requests


def test_sigint_during_the_destination_check_sends_nothing(transfer_send, tmp_path):
    """A destination that accepts the connection and never answers the check: Ctrl-C ends the
    evacuation at once with 130, before any push began."""
    data = tmp_path / "volumes"
    for _ in range(2):
        (data / new_server_id()).mkdir(parents=True)
    node = FakeNode()
    try:
        child = subprocess.Popen([str(transfer_send), "evacuate", "--data", str(data), "--url", node.url, "--secret", "s",
                                  "--quiet"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        assert wait_for(lambda: node.held, 10), "the check never connected"
        time.sleep(0.5)
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=20)
        assert time.monotonic() - started < 5
        assert len(node.held) == 1, "a push was started"
    finally:
        node.stop()
    assert child.returncode == 130, stderr
    assert stdout.splitlines()[-1] == "evacuated 0 of 2 server(s): cancelled before the first push, nothing was sent", stdout


@pytest.mark.parametrize("case", sorted(FAKE_200))
def test_only_a_nodes_confirmation_counts_as_evacuated(transfer_send, tmp_path, sample_volume, other_volume, case):
    """Push's rule per server: a 200 that is no transfer confirmation (a web page, a stub, our JSON
    with another checksum) is a failure, never "ok"; a Wings node's empty 200 is "ok", said to be
    accepted without a checksum answered back."""
    body, status, message = FAKE_200[case]
    data, servers = make_data(tmp_path, sample_volume, other_volume, count=2)
    node = Answer200(body, system=WINGS_SYSTEM)  # passes the check as a Wings node would
    try:
        text = run_cli(transfer_send, "evacuate", "--data", data, "--url", node.url, "--secret", "s3cret", "--quiet",
                       timeout=120)
        as_json = run_cli(transfer_send, "evacuate", "--data", data, "--url", node.url, "--secret", "s3cret", "--json",
                          timeout=120)
    finally:
        node.stop()
    assert text.returncode == status and as_json.returncode == status, (text.stderr, as_json.stderr)
    lines = text.stdout.splitlines()
    result = json.loads(as_json.stdout)
    by_server = {s["server"]: s for s in result["servers"]}
    assert set(by_server) == set(servers)
    if status == 0:
        assert "evacuated 2 of 2 server(s)" in lines[-1], text.stdout
        ok = [line for line in lines if line.startswith("ok ")]
        assert len(ok) == 2 and all("not answered back (Wings)" in line for line in ok), text.stdout
        assert all(s["success"] is True and s["confirmed_checksum"] is False for s in by_server.values()), result
    else:
        assert "evacuated 0 of 2 server(s)" in lines[-1], text.stdout
        failed = [line for line in lines if line.startswith("failed ")]
        assert len(failed) == 2 and all(message in line for line in failed), text.stdout
        assert result["succeeded"] == 0 and result["failed"] == 2, result
        assert all(s["success"] is False and s["exit_status"] == status and message in s["error"]
                   for s in by_server.values()), result


# ---------------------------------------------------------------- dry run, skipped entries, empty --data


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class WingsSystem(FakeNode):
    """A Wings-like node: `GET /api/system` with the right bearer answers Wings' system JSON,
    a wrong one 403 (Wings compares the bearer with its node token). `transfers`: None, nothing
    else is served (404); "hang", every other request is held open unanswered; "accept",
    `POST /api/transfers` with a transfer JWT signed by the node token is read whole and answered
    as Wings answers a transfer it committed (200, empty body)."""

    def __init__(self, token, transfers=None):
        self.token, self.transfers, self.requests, self.accepted = token, transfers, [], []
        super().__init__()

    def handle(self, conn):
        conn.settimeout(5)
        reader = conn.makefile("rb")
        lines = []
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            lines.append(line.decode("latin-1").rstrip("\r\n"))
        if not lines:
            return
        self.requests.append(lines[0])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        method, path = lines[0].split()[:2]
        if method == "GET" and path == "/api/system":
            if headers.get("authorization") != "Bearer " + self.token:
                status, body = 403, {"error": "You are not authorized to access this endpoint."}
            else:
                status, body = 200, WINGS_SYSTEM
        elif self.transfers == "hang":
            return  # held open by FakeNode until stop()
        elif self.transfers == "accept" and method == "POST" and path == "/api/transfers":
            try:
                claims = jwt.decode(headers.get("authorization", " ").split(" ", 1)[1], self.token,
                                    algorithms=["HS256"], options={"verify_aud": False})
            except jwt.PyJWTError:
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                conn.close()
                return
            size = 0
            while (chunk := int(reader.readline().split(b";")[0].strip(), 16)) > 0:
                size += len(reader.read(chunk + 2)) - 2
            reader.readline()
            self.accepted.append((claims["sub"], size))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()
            return
        else:
            status, body = 404, {"error": "The requested resource does not exist on this instance."}
        payload = json.dumps(body).encode()
        conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % (status, len(payload)) + payload)
        conn.close()


def nothing_committed(daemon):
    return [n for n in os.listdir(daemon.state / "volumes") if n != ".staging"] == []


def test_dry_run_checks_the_destination_accepts_the_node_token(daemon, transfer_send, tmp_path, sample_volume,
                                                                other_volume):
    data, servers = make_data(tmp_path, sample_volume, other_volume, count=2)
    r = evacuate(transfer_send, daemon, data, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "reachable, a transferd 0.1.0 node, node token accepted" in r.stdout, r.stdout
    assert r.stdout.splitlines()[-1].startswith("2 server(s), ") and "dry run: nothing sent)" in r.stdout, r.stdout

    token = (daemon.state / "node-token").read_text().strip()
    wrong = tmp_path / "wrong-token"
    wrong.write_text(token[:-1] + ("x" if token[-1] != "x" else "y") + "\n")
    for secret in (["--secret-file", wrong], ["--secret", "not-the-token"]):
        r = run_cli(transfer_send, "evacuate", "--data", data, "--url", daemon.url, *secret, "--dry-run")
        assert r.returncode == 77, (r.stdout, r.stderr)
        assert error_lines(r.stderr) == [error_lines(r.stderr)[0]] and "refused the node token" in r.stderr, r.stderr
        # Still a full rehearsal: what would be sent is listed, and the summary says the check failed.
        assert sorted(line.split()[2] for line in r.stdout.splitlines() if line.startswith("would move")) == sorted(servers)
        assert "the destination check failed" in r.stdout.splitlines()[-1], r.stdout
        assert "token accepted" not in r.stdout
    assert nothing_committed(daemon)


def test_dry_run_to_a_closed_port_exits_69(transfer_send, tmp_path, sample_volume, other_volume):
    data, _ = make_data(tmp_path, sample_volume, other_volume, count=1)
    r = run_cli(transfer_send, "evacuate", "--data", data, "--url", f"http://127.0.0.1:{free_port()}", "--secret", "s",
                "--dry-run")
    assert r.returncode == 69, (r.stdout, r.stderr)
    assert len(error_lines(r.stderr)) == 1 and "cannot reach the destination" in r.stderr, r.stderr
    r = run_cli(transfer_send, "evacuate", "--data", data, "--url", f"http://127.0.0.1:{free_port()}", "--secret", "s",
                "--dry-run", "--json")
    assert r.returncode == 69
    destination = json.loads(r.stdout)["destination"]
    assert destination["ok"] is False and destination["exit_status"] == 69
    assert "cannot reach the destination" in destination["error"]


def test_dry_run_against_a_wings_node(transfer_send, tmp_path, sample_volume, other_volume):
    """Wings serves /api/system to the node token too: the check works against it alike."""
    data, _ = make_data(tmp_path, sample_volume, other_volume, count=1)
    node = WingsSystem("wings-node-token")
    try:
        r = run_cli(transfer_send, "evacuate", "--data", data, "--url", node.url, "--secret", "wings-node-token",
                    "--dry-run")
        assert r.returncode == 0, r.stderr
        assert "reachable, a wings 1.11.13 node, node token accepted" in r.stdout, r.stdout
        r = run_cli(transfer_send, "evacuate", "--data", data, "--url", node.url, "--secret", "other", "--dry-run")
        assert r.returncode == 77 and "refused the node token (--secret/--secret-file) with 403" in r.stderr, r.stderr
        assert node.requests == ["GET /api/system HTTP/1.1"] * 2  # nothing else was asked, nothing sent
    finally:
        node.stop()


@pytest.mark.parametrize("reply, code, message", [
    (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 69, "not a Wings or Pelican node"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>",
     69, "answered 200 but not as a Wings or Pelican node"),
    (b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 69, "answered 503"),
    (b"HTTP/1.1 500 Oops\r\nContent-Type: application/json\r\nContent-Length: 19\r\nConnection: close\r\n\r\n"
     b'{"error": "broken"}', 74, "answered 500: broken"),
])
def test_dry_run_against_something_that_is_not_a_node_is_a_clear_error(transfer_send, tmp_path, reply, code, message):
    data = tmp_path / "volumes"
    (data / new_server_id()).mkdir(parents=True)
    node = RawAnswer(reply)
    try:
        r = run_cli(transfer_send, "evacuate", "--data", data, "--url", node.url, "--secret", "s", "--dry-run")
    finally:
        node.stop()
    assert r.returncode == code, (r.stdout, r.stderr)
    assert len(error_lines(r.stderr)) == 1 and message in r.stderr, r.stderr


def test_dry_run_json_shape(daemon, transfer_send, tmp_path, sample_volume, other_volume):
    data, servers = make_data(tmp_path, sample_volume, other_volume, count=3)
    r = evacuate(transfer_send, daemon, data, "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)  # stdout is the JSON object and nothing else
    assert result["dry_run"] is True
    assert result["destination"] == {"ok": True, "node": "transferd", "version": "0.1.0",
                                     "url": daemon.url + "/api/transfers"}
    listed = [s["server"] for s in result["servers"]]
    assert sorted(listed) == sorted(servers)
    for entry in result["servers"]:
        files = [f for f in (data / entry["server"]).rglob("*") if f.is_file() and not f.is_symlink()]
        assert entry["files"] >= len(files) > 0 and entry["volume_bytes"] == sum(f.stat().st_size for f in files)
    assert [s["volume_bytes"] for s in result["servers"]] == sorted((s["volume_bytes"] for s in result["servers"]),
                                                                    reverse=True)
    assert result["total_bytes"] == sum(s["volume_bytes"] for s in result["servers"])
    assert result["skipped"] == [{"name": ".staging", "reason": "not named by a server UUID"},
                                 {"name": "lost+found", "reason": "not named by a server UUID"},
                                 {"name": "notes.txt", "reason": "not a directory"}]
    assert result["warnings"] == []

    r = run_cli(transfer_send, "evacuate", "--data", data, "--url", daemon.url, "--secret", "wrong", "--dry-run", "--json")
    assert r.returncode == 77
    result = json.loads(r.stdout)
    assert result["destination"]["ok"] is False and result["destination"]["exit_status"] == 77
    assert "refused the node token" in result["destination"]["error"]
    assert sorted(s["server"] for s in result["servers"]) == sorted(servers)
    assert nothing_committed(daemon)


def test_entries_that_are_not_volumes_are_listed_as_skipped(daemon, transfer_send, tmp_path, sample_volume,
                                                           other_volume):
    data, servers = make_data(tmp_path, sample_volume, other_volume, count=2)
    (data / new_server_id()).write_text("a file named like a server\n")
    os.symlink(data / "nowhere", data / "dangling")
    r = evacuate(transfer_send, daemon, data, "--quiet")
    assert r.returncode == 0, r.stderr
    skipped = [line for line in r.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 5, r.stdout
    assert "skipped lost+found  not named by a server UUID" in skipped
    assert "skipped notes.txt  not a directory" in skipped
    assert any(line.startswith("skipped dangling  cannot be read") for line in skipped), skipped
    assert sum(1 for line in skipped if line.endswith("  not a directory")) == 2, skipped
    assert sorted(line.split()[1] for line in r.stdout.splitlines() if line.startswith("ok ")) == sorted(servers)
    for server in servers:
        daemon.volume(server)  # moved

    r = evacuate(transfer_send, daemon, data, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert {s["name"] for s in result["skipped"]} == {".staging", "lost+found", "notes.txt", "dangling",
                                                      next(n for n in os.listdir(data) if (data / n).is_file()
                                                           and n != "notes.txt")}
    assert result["succeeded"] == 2 and result["failed"] == 0


def test_empty_data_directory_is_nothing_to_do_with_a_warning(daemon, transfer_send, tmp_path):
    """Run again from cron after the node was emptied: exit 0. A directory with nothing at all in
    it may be an unmounted disk's mount point: still 0, with a warning on stderr."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for extra in ([], ["--dry-run"]):
        r = evacuate(transfer_send, daemon, empty, "--quiet", *extra)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1].startswith(f"nothing to evacuate: no server volumes (UUID-named directories) in {empty}")
        assert error_lines(r.stderr) == [f"transfer-send: warning: {empty} is empty: if a disk should be mounted there, "
                                         "it is not"], r.stderr
    r = evacuate(transfer_send, daemon, empty, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["servers"] == [] and result["succeeded"] == 0 and result["failed"] == 0
    assert result["warnings"] == [f"{empty} is empty: if a disk should be mounted there, it is not"]

    # Only things that are not volumes: nothing to do, and no warning (the disk is there).
    (empty / "lost+found").mkdir()
    r = evacuate(transfer_send, daemon, empty)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines() == ["skipped lost+found  not named by a server UUID",
                                     f"nothing to evacuate: no server volumes (UUID-named directories) in {empty}"]
    assert nothing_committed(daemon)


# ---------------------------------------------------------------- server UUIDs in any case


def test_servers_match_volume_directories_in_any_case(daemon, transfer_send, tmp_path, other_volume):
    """A server UUID differing only in case is the same server: --servers in lower case finds an
    upper-case volume directory and the reverse. Each server is named as its directory is spelt
    (output and token); the node commits it under the canonical lower-case name."""
    data = tmp_path / "volumes"
    data.mkdir()
    upper, lower, other = new_server_id().upper(), new_server_id(), new_server_id()
    for server in (upper, lower, other):
        shutil.copytree(other_volume, data / server, symlinks=True)
    r = evacuate(transfer_send, daemon, data, "--servers", f"{upper.lower()},{lower.upper()}", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert sorted(s["server"] for s in result["servers"]) == sorted([upper, lower]), result
    assert result["succeeded"] == 2, result
    for server in (upper, lower):
        assert compare_trees(other_volume, daemon.volume(server.lower())) == []
    assert not daemon.volume(other).exists()
    assert sorted(os.listdir(daemon.state / "volumes")) == sorted([upper.lower(), lower, ".staging"])

    r = evacuate(transfer_send, daemon, data, "--servers", upper.lower(), "--quiet")
    assert r.returncode == 0, r.stderr
    assert [line.split()[1] for line in r.stdout.splitlines() if line.startswith("ok ")] == [upper], r.stdout


def test_two_directories_for_one_server_are_refused(daemon, transfer_send, tmp_path, other_volume):
    """`abc…` and `ABC…` beside each other are two copies of one server's volume: which one to move
    is not guessed (the second push would replace the first). Nothing is sent, exit 65; a run
    that does not ask for that server is not held up by it."""
    data = tmp_path / "volumes"
    data.mkdir()
    server, fine = new_server_id(), new_server_id()
    for name in (server, server.upper(), fine):
        shutil.copytree(other_volume, data / name, symlinks=True)
    for extra in ([], ["--servers", server], ["--dry-run"]):
        r = evacuate(transfer_send, daemon, data, "--quiet", *extra)
        assert r.returncode == 65, (extra, r.stdout, r.stderr)
        lines = error_lines(r.stderr)
        assert len(lines) == 1 and server in lines[0] and server.upper() in lines[0], lines
        assert nothing_committed(daemon)
    r = evacuate(transfer_send, daemon, data, "--quiet", "--servers", fine.upper())
    assert r.returncode == 0, r.stderr
    assert sorted(n for n in os.listdir(daemon.state / "volumes") if n != ".staging") == [fine]


# ---------------------------------------------------------------- the destination is checked before the first push


def test_a_real_run_checks_the_destination_before_the_first_push(daemon, transfer_send, tmp_path, sample_volume,
                                                                 other_volume):
    """Another node's token, or a --url where no node listens: the evacuation stops with the dry
    run's error and status before it pushes anything (it used to fail every server one by one)."""
    data, _ = make_data(tmp_path, sample_volume, other_volume, count=2)
    cases = [(["--url", daemon.url, "--secret", "not-the-token"], 77, "refused the node token"),
             (["--url", f"http://127.0.0.1:{free_port()}", "--secret", "s"], 69, "cannot reach the destination")]
    for args, code, message in cases:
        r = run_cli(transfer_send, "evacuate", "--data", data, *args, "--quiet")
        assert r.returncode == code, (args, r.stdout, r.stderr)
        lines = error_lines(r.stderr)
        assert len(lines) == 1 and message in lines[0], lines
        assert not any(line.startswith(("ok ", "failed ")) for line in r.stdout.splitlines()), r.stdout
        assert r.stdout.splitlines()[-1] == ("evacuated 0 of 2 server(s): the destination check failed, "
                                             "nothing was sent"), r.stdout
        r = run_cli(transfer_send, "evacuate", "--data", data, *args, "--json")
        assert r.returncode == code, (args, r.stdout, r.stderr)
        result = json.loads(r.stdout)
        assert result["servers"] == [] and result["succeeded"] == 0, result
        assert result["destination"]["ok"] is False and result["destination"]["exit_status"] == code, result
        assert message in result["destination"]["error"], result
        # The fields of every --json failure.
        assert result["ok"] is False and result["command"] == "evacuate" and result["exit_status"] == code, result
        assert message in result["error"], result
    assert nothing_committed(daemon)
    # When the check passes, --json says which node it found.
    r = evacuate(transfer_send, daemon, data, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["destination"] == {"ok": True, "node": "transferd", "version": "0.1.0",
                                                   "url": daemon.url + "/api/transfers"}


def test_a_web_server_at_the_url_gets_no_push(transfer_send, tmp_path, sample_volume, other_volume):
    """Something answering 200 to everything (a web page) is not a node: exit 69 at the check, and
    not one archive is posted to it."""
    data, _ = make_data(tmp_path, sample_volume, other_volume, count=2)
    node = Answer200(b"<html><body>It works!</body></html>")
    try:
        r = run_cli(transfer_send, "evacuate", "--data", data, "--url", node.url, "--secret", "s", "--quiet")
    finally:
        node.stop()
    assert r.returncode == 69, (r.stdout, r.stderr)
    assert "answered 200 but not as a Wings or Pelican node" in error_lines(r.stderr)[0], r.stderr
    assert node.posts == []


def test_a_real_run_to_a_wings_node(transfer_send, tmp_path, sample_volume, other_volume):
    """A Wings node passes the check (its /api/system answer has no capabilities) and takes every
    server; with another token it is refused at the check, before any push."""
    data, servers = make_data(tmp_path, sample_volume, other_volume, count=2)
    node = WingsSystem("wings-node-token-of-at-least-32-bytes", transfers="accept")
    try:
        r = run_cli(transfer_send, "evacuate", "--data", data, "--url", node.url, "--secret", "other", "--quiet")
        assert r.returncode == 77 and "refused the node token" in r.stderr, (r.stdout, r.stderr)
        assert node.requests == ["GET /api/system HTTP/1.1"]
        r = run_cli(transfer_send, "evacuate", "--data", data, "--url", node.url, "--secret", node.token,
                    "--quiet", timeout=120)
    finally:
        node.stop()
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "(a wings 1.11.13 node)" in r.stderr, r.stderr
    assert sorted(server for server, _ in node.accepted) == sorted(servers)
    assert all(size > 0 for _, size in node.accepted)
    assert node.requests[:2] == ["GET /api/system HTTP/1.1"] * 2, node.requests


# ---------------------------------------------------------------- log lines name their server


def test_every_warning_names_its_server(daemon, transfer_send, tmp_path, other_volume):
    """Pushes run side by side, so a warning about an entry left out must say whose volume it is in."""
    data = tmp_path / "volumes"
    data.mkdir()
    servers = [new_server_id() for _ in range(3)]
    for i, server in enumerate(servers):
        shutil.copytree(other_volume, data / server, symlinks=True)
        os.symlink("/etc/passwd", data / server / f"escape-{i}")
        os.mkfifo(data / server / f"pipe-{i}")
    r = evacuate(transfer_send, daemon, data, "--parallel", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if " WARN " in line]
    assert len(warnings) == 2 * len(servers), r.stderr
    for line in warnings:
        entry = next(word for word in line.split() if word.startswith(("escape-", "pipe-")))
        index = int(entry.split("-")[1].rstrip(":"))
        assert f"server {servers[index]}" in line, line
        assert not any(other in line for other in servers if other != servers[index]), line


def test_json_per_server_warnings_list_the_entries_left_out(daemon, transfer_send, tmp_path, other_volume):
    data = tmp_path / "volumes"
    data.mkdir()
    servers = [new_server_id() for _ in range(2)]
    for server in servers:
        shutil.copytree(other_volume, data / server, symlinks=True)
    os.symlink("/etc/passwd", data / servers[0] / "escape")
    os.mkfifo(data / servers[0] / "pipe")
    r = evacuate(transfer_send, daemon, data, "--parallel", "2", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    entries = {s["server"]: s for s in report["servers"]}
    first, second = entries[servers[0]], entries[servers[1]]
    assert first["success"] is True and first["skipped"]["count"] == 2, first
    assert sorted(e["path"] for e in first["skipped"]["entries"]) == ["escape", "pipe"]
    assert sorted(first["warnings"]) == sorted(f"skipped {e['path']}: {e['reason']}" for e in first["skipped"]["entries"])
    assert any("outside the volume" in w for w in first["warnings"]) and any("FIFO" in w for w in first["warnings"])
    assert second["skipped"] == {"count": 0, "entries": []} and second["warnings"] == []
