"""transfer-send's command line against a live transferd: words it does not take and URLs it
cannot extend are usage errors (64, one line naming them) that send nothing, and a node that
answered with a failure of its own is not reported as unreachable."""
import os

import pytest

from e2elib import new_server_id, run_cli
from http_helpers import place_volume
from test_push import EarlyAnswer


def error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("transfer-send: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def command_lines(daemon, volume, server, tmp_path, url=None):
    """Complete, working command lines for every subcommand that takes no positionals."""
    url = url or daemon.url
    secret = daemon.state / "node-token"
    return {
        "push": ["push", "--volume", volume, "--url", url, "--secret-file", secret, "--server", server, "--quiet"],
        "token": ["token", "--secret-file", secret, "--scope", "transfer", "--server", server],
        "download": ["download", "--url", url, "--secret-file", secret, "--server", server, "--file", "eula.txt",
                     "--output", tmp_path / "eula.txt", "--quiet"],
    }


@pytest.mark.parametrize("command", ["push", "token", "download"])
@pytest.mark.parametrize("stray, where", [("stray-arg", "end"), ("extra", "start"), ("-", "middle"),
                                          ("--", "end"), ("two words", "middle")])
def test_stray_arguments_are_usage_errors(daemon, transfer_send, sample_volume, tmp_path, command, stray, where):
    server, _ = place_volume(daemon, sample_volume)
    argv = command_lines(daemon, sample_volume, server, tmp_path)[command]
    assert run_cli(transfer_send, *argv).returncode == 0  # the line works as it is
    (tmp_path / "eula.txt").unlink(missing_ok=True)
    pushed = new_server_id()
    argv = [pushed if a == server and command == "push" else a for a in argv]
    words = ["--", "left-over"] if stray == "--" else [stray]
    named = "left-over" if stray == "--" else stray
    at = {"end": len(argv), "start": 1, "middle": 3}[where]
    r = run_cli(transfer_send, *argv[:at], *words, *argv[at:])
    assert r.returncode == 64, (r.returncode, r.stdout, r.stderr)
    assert f"unexpected argument '{named}'" in error_line(r)
    assert r.stdout == ""
    assert not (daemon.volumes / pushed).exists() and not (tmp_path / "eula.txt").exists()


def test_upload_still_takes_files(served_upload):
    daemon, server, vol, transfer_send, tmp_path = served_upload
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for f in files:
        f.write_text(f.name)
    r = run_cli(transfer_send, "upload", "--quiet", "--url", daemon.url, "--secret-file", daemon.state / "node-token",
                "--server", server, *files)
    assert r.returncode == 0, r.stderr
    assert [(vol / f.name).read_text() for f in files] == ["a.txt", "b.txt"]


@pytest.fixture
def served_upload(daemon, transfer_send, sample_volume, tmp_path):
    server, vol = place_volume(daemon, sample_volume)
    return daemon, server, vol, transfer_send, tmp_path


@pytest.mark.parametrize("command", ["push", "download", "upload"])
@pytest.mark.parametrize("suffix", ["/api/transfers?x=1", "?x=1", "/?a=b&c=d", "#frag", "/api/transfers#top", "/?"])
def test_urls_with_a_query_or_fragment_are_usage_errors(daemon, transfer_send, sample_volume, tmp_path, command, suffix):
    server, vol = place_volume(daemon, sample_volume)
    url = daemon.url + suffix
    if command == "upload":
        f = tmp_path / "up.txt"
        f.write_text("x")
        argv = ["upload", "--url", url, "--secret-file", daemon.state / "node-token", "--server", server, "--quiet", f]
    else:
        argv = command_lines(daemon, sample_volume, new_server_id(), tmp_path, url=url)[command]
        if command == "download":
            argv[argv.index("--server") + 1] = server
    r = run_cli(transfer_send, *argv)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert "query string or fragment" in error_line(r)
    assert sorted(os.listdir(daemon.volumes)) == sorted([".staging", server])
    assert not (vol / "up.txt").exists() and not (tmp_path / "eula.txt").exists()


@pytest.mark.parametrize("command", ["download", "upload"])
def test_download_and_upload_take_the_transfers_url_a_push_takes(served_upload, command):
    daemon, server, vol, transfer_send, tmp_path = served_upload
    url = daemon.url + "/api/transfers/"
    f = tmp_path / "up.txt"
    f.write_text("up")
    extra = ["--file", "eula.txt", "--output", tmp_path / "eula.txt"] if command == "download" else [f]
    r = run_cli(transfer_send, command, "--quiet", "--url", url, "--secret-file", daemon.state / "node-token",
                "--server", server, *extra)
    assert r.returncode == 0, r.stderr
    if command == "download":
        assert (tmp_path / "eula.txt").read_bytes() == (vol / "eula.txt").read_bytes()
    else:
        assert (vol / "up.txt").read_text() == "up"


@pytest.mark.parametrize("command", ["push", "download", "upload"])
@pytest.mark.parametrize("status, expected", [(500, 74), (507, 74), (599, 74), (503, 69), (502, 69)])
def test_a_node_that_failed_is_not_unreachable(transfer_send, sample_volume, tmp_path, command, status, expected):
    """500 "No space left on device" is an I/O failure at the node (74); only statuses that say
    the node could not be reached or serve this at all stay 69."""
    node = EarlyAnswer(status, close=True, message="No space left on device")
    server = new_server_id()
    f = tmp_path / "up.txt"
    f.write_text("x")
    argv = {
        "push": ["push", "--volume", sample_volume, "--compression", "gzip"],
        "download": ["download", "--file", "a.txt", "--output", tmp_path / "a.txt"],
        "upload": ["upload", f],
    }[command]
    try:
        r = run_cli(transfer_send, *argv, "--url", node.url, "--secret", "s3cret", "--server", server, "--quiet")
    finally:
        node.stop()
    assert r.returncode == expected, (r.returncode, r.stderr)
    line = error_line(r)
    assert str(status) in line and "No space left on device" in line, line
