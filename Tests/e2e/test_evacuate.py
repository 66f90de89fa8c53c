"""`transfer-send evacuate`: every server volume of a data directory pushed to one node, several at
once, each verified and committed on its own; one failure does not stop the others; the source is
left as it was; Ctrl-C aborts the running pushes with nothing committed."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from e2elib import HeldTransfer, compare_trees, error_lines, new_server_id, run_cli
from test_push import FAKE_200, Answer200, FakeNode


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
    empty = tmp_path / "empty"
    empty.mkdir()
    r = evacuate(transfer_send, daemon, empty)
    assert r.returncode != 0 and "no server volumes" in r.stderr, r.stderr
    r = run_cli(transfer_send, "evacuate", "--data", tmp_path / "nope", "--url", daemon.url, "--secret", "x")
    assert r.returncode != 0 and "is not a directory" in r.stderr, r.stderr
    r = run_cli(transfer_send, "evacuate", "--data", data, "--url", daemon.url)
    assert r.returncode == 64 and "--secret" in error_lines(r.stderr)[0], r.stderr


def test_sigint_aborts_the_running_pushes_with_130(transfer_send, tmp_path):
    """Against a node that hangs: Ctrl-C ends the evacuation at once, every server reported failed."""
    data = tmp_path / "volumes"
    servers = [new_server_id() for _ in range(3)]
    for server in servers:
        (data / server).mkdir(parents=True)
        (data / server / "world.bin").write_bytes(os.urandom(4 << 20))
    node = FakeNode()
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


@pytest.mark.parametrize("case", sorted(FAKE_200))
def test_only_a_nodes_confirmation_counts_as_evacuated(transfer_send, tmp_path, sample_volume, other_volume, case):
    """Push's rule per server: a 200 that is no transfer confirmation (a web page, a stub, our JSON
    with another checksum) is a failure, never "ok"; a Wings node's empty 200 is "ok", said to be
    accepted without a checksum answered back."""
    body, status, message = FAKE_200[case]
    data, servers = make_data(tmp_path, sample_volume, other_volume, count=2)
    node = Answer200(body)
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
