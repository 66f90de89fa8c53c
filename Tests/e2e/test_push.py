"""transfer-send push against a live transferd: trees survive, replacement is complete, errors are clean."""
import http.server
import json
import os
import shutil
import signal
import subprocess
import socket
import threading
import time

import pytest
import requests

from e2elib import (HEX64, compare_trees, error_lines, free_port, mint, new_server_id, run_cli)


def push(transfer_send, daemon, volume, server, *extra):
    return run_cli(transfer_send, "push", "--volume", volume, "--url", daemon.url,
                   "--secret-file", daemon.state / "node-token", "--server", server, "--quiet", *extra)


def assert_one_error_line(result):
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("transfer-send: error: "), result.stderr
    return lines[0]


def test_push_sample_volume_arrives_identical(daemon, transfer_send, sample_volume):
    server = new_server_id()
    r = push(transfer_send, daemon, sample_volume, server)
    assert r.returncode == 0, r.stderr
    assert compare_trees(sample_volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []
    assert sorted(os.listdir(daemon.volumes)) == sorted([".staging", server])


def test_push_replaces_existing_volume_completely(daemon, transfer_send, sample_volume, other_volume):
    server = new_server_id()
    assert push(transfer_send, daemon, sample_volume, server).returncode == 0
    r = push(transfer_send, daemon, other_volume, server)
    assert r.returncode == 0, r.stderr
    # Equal trees both ways: nothing of the sample volume (logs/, plugins/, world/region, ...) is left.
    assert compare_trees(other_volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []
    assert sorted(os.listdir(daemon.volumes)) == sorted([".staging", server])
    # And back again: the bigger tree replaces the smaller one.
    assert push(transfer_send, daemon, sample_volume, server).returncode == 0
    assert compare_trees(sample_volume, daemon.volume(server)) == []


def test_push_two_servers_are_independent(daemon, transfer_send, sample_volume, other_volume):
    a, b = new_server_id(), new_server_id()
    assert push(transfer_send, daemon, sample_volume, a).returncode == 0
    assert push(transfer_send, daemon, other_volume, b).returncode == 0
    assert compare_trees(sample_volume, daemon.volume(a)) == []
    assert compare_trees(other_volume, daemon.volume(b)) == []


def test_push_json_reports_the_checksum_the_daemon_verified(daemon, transfer_send, sample_volume):
    server = new_server_id()
    r = push(transfer_send, daemon, sample_volume, server, "--json")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, r.stdout
    result = json.loads(lines[0])
    assert result["success"] is True
    assert HEX64.match(result["checksum"]), result
    # The daemon logs the SHA-256 it computed over the archive part it received.
    assert f"sha256 {result['checksum']}" in daemon.log()
    regular = [os.path.join(d, n) for d, _, names in os.walk(sample_volume) for n in names
               if os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n))]
    assert result["files"] == len(regular)
    assert result["volume_bytes"] == sum(os.path.getsize(p) for p in regular)
    # Its own peak RSS (VmHWM), for the bench: a few tens of MiB, never zero.
    assert 4 << 10 < result["peak_rss_kib"] < 256 << 10, result
    # Between two of our nodes on loopback the negotiated mode is usually "none" (plain tar,
    # slightly larger than the files); any compressed mode must be smaller than the volume.
    assert result["compression"] in ("gzip", "zstd", "none"), result
    if result["compression"] == "none":
        assert result["archive_bytes"] >= result["volume_bytes"] > 0
    else:
        assert 0 < result["archive_bytes"] < result["volume_bytes"]
    assert compare_trees(sample_volume, daemon.volume(server)) == []


def test_push_with_panel_token_and_full_endpoint_url(daemon, transfer_send, other_volume):
    server = new_server_id()
    tok = run_cli(transfer_send, "token", "--secret-file", daemon.state / "node-token",
                  "--scope", "transfer", "--server", server)
    assert tok.returncode == 0, tok.stderr
    # Panels hand the token over already prefixed with "Bearer ".
    r = run_cli(transfer_send, "push", "--volume", other_volume, "--url", daemon.url + "/api/transfers",
                "--token", "Bearer " + tok.stdout.strip(), "--quiet")
    assert r.returncode == 0, r.stderr
    assert compare_trees(other_volume, daemon.volume(server)) == []


def test_push_server_defaults_to_volume_directory_name(daemon, transfer_send, other_volume, tmp_path):
    server = new_server_id()
    volume = tmp_path / server
    shutil.copytree(other_volume, volume, symlinks=True)
    r = run_cli(transfer_send, "push", "--volume", volume, "--url", daemon.url,
                "--secret-file", daemon.state / "node-token", "--quiet")
    assert r.returncode == 0, r.stderr
    assert compare_trees(other_volume, daemon.volume(server)) == []


def test_push_to_closed_port_exits_69(transfer_send, other_volume):
    r = run_cli(transfer_send, "push", "--volume", other_volume, "--url", f"http://127.0.0.1:{free_port()}",
                "--secret", "not-used", "--server", new_server_id(), "--quiet", timeout=30)
    assert r.returncode == 69, (r.returncode, r.stderr)
    assert_one_error_line(r)
    assert r.stdout == ""


def test_push_with_wrong_secret_exits_77_and_commits_nothing(daemon, transfer_send, other_volume):
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", other_volume, "--url", daemon.url,
                "--secret", "not-the-node-token", "--server", server, "--quiet")
    assert r.returncode == 77, (r.returncode, r.stderr)
    line = assert_one_error_line(r)
    assert "403" in line
    assert not daemon.volume(server).exists()
    assert daemon.staging_entries() == []


def test_push_missing_volume_directory(daemon, transfer_send, tmp_path):
    missing = tmp_path / "no-such-volume"
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", missing, "--url", daemon.url,
                "--secret-file", daemon.state / "node-token", "--server", server, "--quiet")
    assert r.returncode not in (0, 64), (r.returncode, r.stderr)
    line = assert_one_error_line(r)
    assert str(missing) in line
    assert not daemon.volume(server).exists()


USAGE_CASES = {
    "unknown-command": ["frobnicate"],
    "push-no-args": ["push"],
    "push-unknown-option": ["push", "--volume", "{vol}", "--url", "http://127.0.0.1:9", "--secret", "s",
                            "--server", "{uuid}", "--bogus"],
    "push-missing-url": ["push", "--volume", "{vol}", "--secret", "s", "--server", "{uuid}"],
    "push-url-not-http": ["push", "--volume", "{vol}", "--url", "ftp://127.0.0.1/", "--secret", "s",
                          "--server", "{uuid}"],
    "push-no-credentials": ["push", "--volume", "{vol}", "--url", "http://127.0.0.1:9", "--server", "{uuid}"],
    "push-secret-needs-server": ["push", "--volume", "{vol}", "--url", "http://127.0.0.1:9", "--secret", "s"],
    "push-server-not-uuid": ["push", "--volume", "{vol}", "--url", "http://127.0.0.1:9", "--secret", "s",
                             "--server", "../../etc"],
    "push-option-missing-value": ["push", "--volume"],
    # An empty value is refused like a missing one (as a directory it would mean "/").
    "push-empty-volume": ["push", "--volume", "", "--url", "http://127.0.0.1:9", "--secret", "s", "--server", "{uuid}"],
    "push-empty-inline-secret-file": ["push", "--volume", "{vol}", "--url", "http://127.0.0.1:9",
                                      "--secret-file=", "--server", "{uuid}"],
    "bench-empty-work": ["bench", "--work", "", "--corpus", "tiny", "--scale", "0.001", "--runs", "1"],
    "push-flag-with-value": ["push", "--volume", "{vol}", "--url", "http://127.0.0.1:9", "--secret", "s",
                             "--server", "{uuid}", "--json=yes"],
    "token-unknown-scope": ["token", "--secret", "s", "--scope", "root", "--server", "{uuid}"],
    "token-no-secret": ["token", "--scope", "transfer", "--server", "{uuid}"],
    "token-server-not-uuid": ["token", "--secret", "s", "--scope", "transfer", "--server", "srv1"],
    "token-bad-ttl": ["token", "--secret", "s", "--scope", "transfer", "--server", "{uuid}", "--ttl", "soon"],
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_usage_errors_exit_64(transfer_send, other_volume, case):
    args = [a.format(vol=other_volume, uuid=new_server_id()) for a in USAGE_CASES[case]]
    r = run_cli(transfer_send, *args, timeout=30)
    assert r.returncode == 64, (r.returncode, r.stdout, r.stderr)
    lines = error_lines(r.stderr)
    assert lines and lines[0].startswith("transfer-send: error: "), r.stderr
    assert r.stdout == ""
    if case == "push-server-not-uuid":
        assert "'../../etc' is not a server UUID" in lines[0], lines[0]


def test_no_arguments_prints_usage_and_exits_64(transfer_send):
    r = run_cli(transfer_send)
    assert r.returncode == 64
    assert "usage:" in r.stdout + r.stderr


def test_help_exits_0(transfer_send):
    r = run_cli(transfer_send, "--help")
    assert r.returncode == 0
    assert "transfer-send push" in r.stdout


def test_push_file_larger_than_the_pipeline_buffers(daemon, transfer_send, tmp_path):
    """12 MiB of incompressible data: more than both sides' 8 MiB chunk buffers hold."""
    volume = tmp_path / "big"
    (volume / "world").mkdir(parents=True)
    (volume / "world" / "blob.bin").write_bytes(os.urandom(12 << 20))
    (volume / "after.txt").write_bytes(b"after the big file\n")
    server = new_server_id()
    r = push(transfer_send, daemon, volume, server, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["volume_bytes"] == (12 << 20) + 19
    assert compare_trees(volume, daemon.volume(server)) == []


def test_push_reports_its_own_peak_rss_not_its_parents(daemon, transfer_send, sample_volume):
    """wait4's ru_maxrss of a spawned child can carry the parent's high-water mark from before
    the exec; the bench reads the sender's own figure instead. Here the parent holds ~300 MiB."""
    ballast = bytearray(300 << 20)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    r = push(transfer_send, daemon, sample_volume, new_server_id(), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads([line for line in r.stdout.splitlines() if line.strip()][-1])
    assert 4 << 10 < result["peak_rss_kib"] < 128 << 10, result
    del ballast


class FakeNode:
    """A listener on 127.0.0.1 standing in for a node: each connection goes to `handle`, which by
    default holds it open without reading or answering (a node that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            try:
                self.handle(conn)
            except OSError:
                pass

    def handle(self, conn):
        pass

    def stop(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


class EarlyAnswer(FakeNode):
    """Answers a transfer before reading its body (a refusal, a full disk), then closes the
    connection or keeps it open a while without reading."""

    def __init__(self, status, close, message="refused before the body"):
        self.status, self.close, self.message = status, close, message
        super().__init__()

    def handle(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                break
            head += data
        payload = json.dumps({"error": self.message}).encode()
        conn.sendall(b"HTTP/1.1 %d Nope\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % (self.status, len(payload)) + payload)
        if not self.close:
            time.sleep(3)
        conn.close()


class RawAnswer(FakeNode):
    """Answers every request with the given bytes, then closes."""

    def __init__(self, reply):
        self.reply = reply
        super().__init__()

    def handle(self, conn):
        conn.settimeout(5)
        conn.recv(65536)
        conn.sendall(self.reply)
        conn.close()


@pytest.mark.parametrize("status", [200, 409, 500])
@pytest.mark.parametrize("close", [True, False])
def test_push_ends_when_the_node_answers_before_the_archive_is_sent(transfer_send, tmp_path, status, close):
    """The archive is far larger than the pipeline's buffers, so the archiving and compressing
    threads are blocked on full buffers when the answer comes: the push must still end, with one
    clear error line, not wait for them forever."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "random.bin").write_bytes(os.urandom(24 << 20))
    node = EarlyAnswer(status, close)
    try:
        # Closing with the body unread resets the connection, sometimes before the client has
        # read the answer: a few rounds, and each must report the node's answer.
        for _ in range(4 if status >= 400 else 1):
            started = time.monotonic()
            r = run_cli(transfer_send, "push", "--volume", volume, "--url", node.url, "--token", "x.y.z",
                        "--server", new_server_id(), "--compression", "gzip", "--quiet", timeout=60)
            assert time.monotonic() - started < 30
            assert r.returncode != 0, r.stdout
            assert_one_error_line(r)
            if status >= 400:
                # The node's answer, not "the connection broke".
                assert str(status) in r.stderr and "refused before the body" in r.stderr, r.stderr
    finally:
        node.stop()


@pytest.mark.parametrize("signals", [1, 2])
def test_sigint_ends_a_push_to_a_node_that_hangs_with_130(transfer_send, tmp_path, signals):
    """Ctrl-C cancels cleanly (exit 130, one line); a second Ctrl-C ends it at once, whatever the
    cleanup is waiting for."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "random.bin").write_bytes(os.urandom(16 << 20))
    node = FakeNode()
    try:
        child = subprocess.Popen([str(transfer_send), "push", "--volume", str(volume), "--url", node.url, "--token", "x.y.z",
                                  "--server", new_server_id(), "--compression", "gzip", "--quiet"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        time.sleep(1.5)
        assert child.poll() is None, "the push should still be waiting on the silent node"
        started = time.monotonic()
        for _ in range(signals):
            child.send_signal(signal.SIGINT)
            time.sleep(0.2)
        _, stderr = child.communicate(timeout=20)
        assert time.monotonic() - started < 10
    finally:
        node.stop()
    assert child.returncode == 130, stderr
    lines = error_lines(stderr)
    # One line; a second signal that lands while the first cancel is printing may add its own.
    assert 1 <= len(lines) <= signals and all(line.startswith("transfer-send: ") for line in lines), stderr
    assert "cancel" in lines[0] or "again" in lines[0], stderr


HTML_501 = (b"HTTP/1.0 501 Unsupported method ('POST')\r\nContent-Type: text/html;charset=utf-8\r\n"
            b"Connection: close\r\n\r\n<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <title>Error response</title>\n"
            b"    </head>\n    <body>\n        <h1>Error response</h1>\n        <p>Error code: 501</p>\n"
            b"        <p>Message: Unsupported method ('POST').</p>\n    </body>\n</html>\n")


@pytest.mark.parametrize("reply, expected", [
    (HTML_501, "501"),
    (b"SSH-2.0-OpenSSH_9.2\r\nthis is not http at all\r\n\r\n", "not HTTP"),
])
def test_push_to_something_that_is_not_a_node_says_so_in_one_line(transfer_send, other_volume, reply, expected):
    node = RawAnswer(reply)
    try:
        r = run_cli(transfer_send, "push", "--volume", other_volume, "--url", node.url, "--token", "x.y.z",
                    "--server", new_server_id(), "--compression", "gzip", "--quiet", timeout=60)
    finally:
        node.stop()
    line = assert_one_error_line(r)
    assert expected in line and "<" not in line, line
    assert r.returncode == 69, r.stderr


def test_names_that_are_not_utf8_arrive_unchanged_with_one_summary_line(daemon, transfer_send, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    names = [b"caf\xe9.txt", b"bad\xff\xfename", b"ok-\xc3\xa9.txt"]
    for i, name in enumerate(names):
        with open(os.path.join(bytes(volume), name), "wb") as f:
            f.write(b"%d" % i)
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", volume, "--url", daemon.url, "--secret-file",
                daemon.state / "node-token", "--server", server, "--compression", "auto")
    assert r.returncode == 0, r.stderr
    assert "WARN" not in r.stderr and r.stderr.count("not UTF-8") == 1, r.stderr
    assert sorted(os.listdir(bytes(daemon.volume(server)))) == sorted(names)
    for i, name in enumerate(names):
        with open(os.path.join(bytes(daemon.volume(server)), name), "rb") as f:
            assert f.read() == b"%d" % i


@pytest.mark.parametrize("mode", ["gzip", "none"])
def test_symlinks_out_of_the_volume_are_left_out_with_a_warning(daemon, transfer_send, tmp_path, mode):
    """A link the destination would refuse (absolute, or up past the volume's root, however it is
    spelled) is left out with one warning each, instead of failing the whole push at that entry;
    links that stay inside, dangling ones and cycles included, travel as they are."""
    vol = tmp_path / "vol"
    (vol / "sub" / "deep").mkdir(parents=True)
    (vol / "sub" / "file.txt").write_text("inside\n")
    outside = {"abs": "/etc/passwd", "root": "/", "up": "..", "sub/deep/up3": "../../..",
               "sub/sneaky": "deep/../../../x", "homecontainer": "/home/container/file.txt"}
    inside = {"ok": "sub/file.txt", "sub/deep/back": "../file.txt", "dangling": "missing/file",
              "dot": ".", "sub/loop": "loop", "sub/a": "b", "sub/b": "a"}
    for name, target in {**outside, **inside}.items():
        os.symlink(target, vol / name)
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", vol, "--url", daemon.url, "--secret-file",
                daemon.state / "node-token", "--server", server, "--compression", mode, "--quiet")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "points outside the volume" in line]
    assert len(warnings) == len(outside), r.stderr
    for name in outside:
        assert any(f"symlink {name} -> " in w for w in warnings), (name, warnings)
        assert not os.path.lexists(daemon.volume(server) / name)
    for name, target in inside.items():
        assert os.readlink(daemon.volume(server) / name) == target
    assert (daemon.volume(server) / "sub" / "file.txt").read_text() == "inside\n"


def test_json_reports_the_entries_left_out(daemon, transfer_send, tmp_path):
    """--json said ok with nothing about what was left out (only stderr had WARN lines): the
    success object now counts them and lists the first 20 with why, plus one warning each."""
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "keep.txt").write_text("kept\n")
    os.mkfifo(vol / "pipe")
    os.symlink("/etc/passwd", vol / "escape")
    for i in range(25):
        os.symlink(f"../../out-{i}", vol / f"up-{i:02d}")
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", vol, "--url", daemon.url, "--secret-file",
                daemon.state / "node-token", "--server", server, "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["files"] == 1
    skipped = report["skipped"]
    assert skipped["count"] == 27, skipped
    assert len(skipped["entries"]) == 20
    by_path = {e["path"]: e["reason"] for e in skipped["entries"]}
    assert "FIFO" in by_path["pipe"], by_path
    assert "outside the volume" in by_path["escape"] and "/etc/passwd" in by_path["escape"], by_path
    assert len(report["warnings"]) == 21, report["warnings"]
    assert report["warnings"][-1] == "skipped 7 more entries (see the log)"
    assert any(w.startswith("skipped pipe: FIFO") for w in report["warnings"]), report["warnings"]
    assert not os.path.lexists(daemon.volume(server) / "pipe")


def test_json_of_a_whole_volume_has_no_warnings(daemon, transfer_send, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "a.txt").write_text("a\n")
    r = run_cli(transfer_send, "push", "--volume", vol, "--url", daemon.url, "--secret-file",
                daemon.state / "node-token", "--server", new_server_id(), "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["skipped"] == {"count": 0, "entries": []} and report["warnings"] == []


def make_deep_tree(root, levels):
    """`levels` directories named "d" (past PATH_MAX, as mkdirat allows), a file at the bottom."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)


@pytest.mark.parametrize("levels, message", [(2000, "longer than"), (2100, "nested deeper than 2048 levels")])
def test_a_very_deep_volume_is_one_clear_error_not_a_crash(daemon, transfer_send, tmp_path, levels, message):
    """A game server's user can nest directories thousands deep. Paths over the destination's limit
    are refused there (exit 65); deeper than 2,048 levels the sender refuses itself. Nothing is
    committed, the sender does not crash (it did: a stack overflow), nor does a daemon asked by
    the panel to push such a volume."""
    vol = tmp_path / "vol"
    vol.mkdir()
    make_deep_tree(vol, levels)
    try:
        pushes_of_a_deep_volume(daemon, transfer_send, vol, message)
    finally:
        # GNU rm walks any depth; pytest's own clean-up recurses and gives up on such a tree.
        subprocess.run(["rm", "-rf", str(vol), str(daemon.state / "volumes")], check=False, timeout=120)


def pushes_of_a_deep_volume(daemon, transfer_send, vol, message):
    server = new_server_id()
    r = push(transfer_send, daemon, vol, server, "--compression", "none")
    assert r.returncode == 65, (r.returncode, r.stderr[-500:])
    assert_one_error_line(r)
    assert message in r.stderr
    assert not daemon.volume(server).exists()
    # The same volume pushed by the daemon itself (panel-driven), to a port nothing listens on.
    source = new_server_id()
    os.rename(vol, daemon.state / "volumes" / source)
    token = run_cli(transfer_send, "token", "--secret-file", daemon.state / "node-token", "--scope", "transfer",
                    "--server", source).stdout.strip()
    reply = requests.post(f"{daemon.url}/api/servers/{source}/transfer",
                          headers={"Authorization": f"Bearer {daemon.token}"},
                          json={"url": f"http://127.0.0.1:{free_port()}/api/transfers", "token": f"Bearer {token}"},
                          timeout=30)
    assert reply.status_code in (200, 202), reply.text
    time.sleep(1)
    assert daemon.alive(), daemon.log()[-2000:]
    assert requests.get(f"{daemon.url}/api/transfers", headers={"Authorization": f"Bearer {daemon.token}"},
                        timeout=10).status_code == 200


@pytest.mark.parametrize("argv", [["push", "--bogus"], ["push", "--volume"], ["token", "--scope", "nope"],
                                  ["evacuate", "--parallel", "0"], ["bench", "--runs", "x"], ["frobnicate"]])
def test_usage_errors_are_one_line(transfer_send, argv):
    r = run_cli(transfer_send, *argv, timeout=30)
    assert r.returncode == 64, r.stderr
    line = assert_one_error_line(r)
    assert line.endswith("(see 'transfer-send --help')"), line
    assert r.stdout == ""


# ---------------------------------------------------------------- the token's server is the one written


def mint_cli(transfer_send, daemon, server):
    tok = run_cli(transfer_send, "token", "--secret-file", daemon.state / "node-token", "--scope", "transfer",
                  "--server", server)
    assert tok.returncode == 0, tok.stderr
    return tok.stdout.strip()


def push_with_token(transfer_send, daemon, volume, token, *extra):
    return run_cli(transfer_send, "push", "--volume", volume, "--url", daemon.url, "--token", token, "--quiet", *extra)


def copy_volume(source, directory):
    shutil.copytree(source, directory, symlinks=True)
    return directory


def test_a_token_for_another_server_never_overwrites_that_server(daemon, transfer_send, tmp_path, sample_volume,
                                                                  other_volume):
    """The new-user trial: a token minted for server A, a volume directory and --server naming B.
    The destination would have replaced A's volume with B's files; now nothing is sent."""
    a, b = new_server_id(), new_server_id()
    assert push(transfer_send, daemon, sample_volume, a).returncode == 0
    volume = copy_volume(other_volume, tmp_path / "src" / b)
    token = mint_cli(transfer_send, daemon, a)
    for extra in (["--server", b], []):  # --server B, and the directory's name alone
        r = push_with_token(transfer_send, daemon, volume, "Bearer " + token, *extra)
        assert r.returncode == 64, (extra, r.returncode, r.stderr)
        line = assert_one_error_line(r)
        assert a in line and b in line, line
        assert r.stdout == ""
        if not extra:
            assert f"--server {a}" in line, line  # how to say "yes, move it to A"
    assert compare_trees(sample_volume, daemon.volume(a)) == []
    assert not daemon.volume(b).exists()
    assert daemon.staging_entries() == []


def test_explicit_server_equal_to_the_tokens_is_accepted_from_any_directory(daemon, transfer_send, tmp_path,
                                                                            other_volume):
    a, b = new_server_id(), new_server_id()
    token = mint_cli(transfer_send, daemon, a)
    for directory in (tmp_path / "restored-copy", tmp_path / b):
        volume = copy_volume(other_volume, directory)
        r = push_with_token(transfer_send, daemon, volume, token, "--server", a, "--json")
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["server"] == a and result["confirmed_checksum"] is True, result
        assert compare_trees(other_volume, daemon.volume(a)) == []
    assert not daemon.volume(b).exists()
    # The text output names the server too.
    r = run_cli(transfer_send, "push", "--volume", tmp_path / "restored-copy", "--url", daemon.url, "--token", token,
                "--server", a)
    assert r.returncode == 0, r.stderr
    assert f"to server {a} on " in r.stdout and "verified the checksum" in r.stdout, r.stdout


@pytest.mark.parametrize("token_case, server_case, directory_case", [
    ("upper", "lower", "lower"), ("lower", "upper", "upper"), ("upper", None, "lower"), ("lower", None, "upper"),
])
def test_case_differences_are_not_another_server(daemon, transfer_send, tmp_path, other_volume, token_case,
                                                 server_case, directory_case):
    server = new_server_id()
    spell = {"upper": str.upper, "lower": str.lower}
    token = mint_cli(transfer_send, daemon, spell[token_case](server))
    volume = copy_volume(other_volume, tmp_path / spell[directory_case](server))
    extra = ["--server", spell[server_case](server)] if server_case else []
    r = push_with_token(transfer_send, daemon, volume, token, "--json", *extra)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["server"] == server.lower()
    assert compare_trees(other_volume, daemon.volume(server.lower())) == []


@pytest.mark.parametrize("sub", [None, "srv1", 42])
def test_a_token_without_a_server_is_left_to_the_node(daemon, transfer_send, tmp_path, other_volume, sub):
    """No readable sub: the CLI cannot check it, and the node refuses it; its answer is shown."""
    volume = copy_volume(other_volume, tmp_path / new_server_id())
    token = mint(daemon.token, sub=sub)
    r = push_with_token(transfer_send, daemon, volume, token, "--server", new_server_id(), "--compression", "gzip")
    assert r.returncode == 77, (r.returncode, r.stderr)
    line = assert_one_error_line(r)
    assert "403" in line and ("sub" in line or "subject" in line), line
    assert [n for n in os.listdir(daemon.volumes) if n != ".staging"] == []


# ---------------------------------------------------------------- only a node's confirmation is success


class Answer200:
    """An HTTP server on 127.0.0.1 that reads each request whole and answers every one 200 with
    `body` (a web server, a maintenance page, a stub, or a Wings node when `body` is empty).
    With `system`, `GET /api/system` is answered with that JSON instead, as a node answers it.
    With `delay`, a POST is answered that many seconds after its body was read (`received` is set
    then): a node verifying and committing what it got."""

    def __init__(self, body, content_type="text/html", system=None, delay=0):
        self.posts = []
        self.received = threading.Event()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        self.rfile.read(size + 2)
                        if size == 0:
                            break
                else:
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST":
                    stub.posts.append(self.path)
                    stub.received.set()
                    time.sleep(delay)
                reply, kind = body, content_type
                if system is not None and self.command == "GET" and self.path == "/api/system":
                    reply, kind = json.dumps(system).encode(), "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


WRONG_SHA = "0" * 64


@pytest.mark.parametrize("signals", [1, 2])
def test_a_signal_after_the_whole_archive_was_sent_waits_for_the_answer(transfer_send, tmp_path, signals):
    """Once the whole archive is out the destination may commit it, so "cancelled: nothing was
    committed" would be a lie (a trial saw it while the node had committed). One Ctrl-C waits for
    the answer and reports it; a second stops waiting and says the outcome is unknown."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "world.dat").write_bytes(os.urandom(1 << 20))
    node = Answer200(b"", delay=3)  # a Wings node: an empty 200 once it has committed
    try:
        child = subprocess.Popen([str(transfer_send), "push", "--volume", str(volume), "--url", node.url,
                                  "--token", "x.y.z", "--server", new_server_id(), "--compression", "gzip"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        assert node.received.wait(20), "the node never got the whole body"
        for _ in range(signals):
            child.send_signal(signal.SIGINT)
            time.sleep(0.3)
        stdout, stderr = child.communicate(timeout=20)
    finally:
        node.stop()
    assert "nothing was committed" not in stderr, stderr
    assert "the whole archive has been sent" in stderr and "waiting for its answer" in stderr, stderr
    if signals == 1:
        assert child.returncode == 0, stderr
        assert "pushed" in stdout, stdout
    else:
        assert child.returncode == 130, stderr
        assert "it may have committed the volume" in error_lines(stderr)[-1], stderr


def test_a_signal_before_the_archive_is_out_still_cancels(transfer_send, tmp_path):
    """The other side of the same line: while the archive is still going out, Ctrl-C cancels and
    nothing can have been committed (the node never saw the checksum part)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "random.bin").write_bytes(os.urandom(16 << 20))
    node = FakeNode()  # accepts, never reads: the archive cannot all go out
    try:
        child = subprocess.Popen([str(transfer_send), "push", "--volume", str(volume), "--url", node.url, "--token",
                                  "x.y.z", "--server", new_server_id(), "--compression", "gzip", "--quiet"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        time.sleep(1.5)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=20)
    finally:
        node.stop()
    assert child.returncode == 130, stderr
    assert "nothing was committed at the destination" in stderr and "waiting for its answer" not in stderr, stderr
FAKE_200 = {
    # body, exit status, what the one error line says
    "html": (b"<html><body>OK</body></html>", 69, "not a transfer confirmation"),
    "text": (b"OK\n", 69, "not a transfer confirmation"),
    "json-no-checksum": (b'{"success": true}', 69, "not a transfer confirmation"),
    "success-false": (b'{"success": false}', 69, "not a transfer confirmation"),
    "wrong-checksum": (b'{"success": true, "checksum": "%s", "files": 1}' % WRONG_SHA.encode(), 65, "do not trust"),
    "wings-empty": (b"", 0, None),
}


@pytest.fixture(params=sorted(FAKE_200))
def fake_200(request):
    body, status, message = FAKE_200[request.param]
    node = Answer200(body, content_type="application/json" if body.startswith(b"{") else "text/html")
    yield request.param, node, status, message
    node.stop()


@pytest.mark.parametrize("compression", ["gzip", "auto"])
def test_only_a_nodes_confirmation_is_a_successful_push(transfer_send, other_volume, fake_200, compression):
    """Something answering 200 is not a node that committed the volume: only our JSON with the same
    checksum, or a Wings node's empty 200 (accepted, said so, "confirmed_checksum": false), is."""
    case, node, status, message = fake_200
    server = new_server_id()
    for output in ("--json", "--quiet"):
        r = run_cli(transfer_send, "push", "--volume", other_volume, "--url", node.url, "--secret", "s3cret",
                    "--server", server, "--compression", compression, output, timeout=60)
        assert r.returncode == status, (case, r.returncode, r.stderr)
        if status != 0:
            line = assert_one_error_line(r)
            assert message in line and "<" not in line, line
            if output == "--json":  # the failure as one object, the same status and message
                result = json.loads(r.stdout)
                assert result["success"] is False and result["exit_status"] == status, result
                assert line.startswith("transfer-send: error: " + result["error"]), (line, result)
            else:
                assert r.stdout == "", r.stdout
            if status == 69:
                assert node.url in line and "is the URL pointing at a node?" in line, line
            continue
        if output == "--json":
            result = json.loads(r.stdout)
            assert result["success"] is True and result["confirmed_checksum"] is False, result
            assert result["server"] == server, result
        else:
            assert "accepted the archive after checking the checksum it was sent" in r.stdout, r.stdout
            assert "verified" not in r.stdout and f"server {server}" in r.stdout, r.stdout
    assert "/api/transfers" in node.posts
