"""`transfer-send download` and the local files it writes: never through a symlink someone
planted, never renaming over a device or a link, and a panel token is used only for its own file.

Found by a new-user trial: `--output /dev/stdout` (run as root) replaced the /dev/stdout symlink
with a regular file, `--output /dev/null` would have replaced the device, and a planted
`FILE.part -> victim` had the victim overwritten with the download.
"""
import json
import os
import signal
import stat

import pytest

from e2elib import error_lines, mint, run_cli
from http_helpers import place_volume

REL = "server.properties"


@pytest.fixture
def served(daemon, sample_volume):
    server, vol = place_volume(daemon, sample_volume)
    return daemon, server, vol


def download(transfer_send, daemon, server, out, *extra, rel=REL):
    return run_cli(transfer_send, "download", "--quiet", "--url", daemon.url, "--secret-file",
                   daemon.state / "node-token", "--server", server, "--file", rel, "--output", out, *extra)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_device_or_pipe_output_is_written_not_replaced(served, transfer_send, tmp_path, kind):
    daemon, server, vol = served
    expected = (vol / REL).read_bytes()
    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
        # Something must read the pipe: a child that copies it into a file.
        reader_out = tmp_path / "read"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            signal.alarm(20)  # never outlive the test, even if nobody ever writes the pipe
            with open(target, "rb") as src, open(reader_out, "wb") as dst:
                dst.write(src.read())
            os._exit(0)
        try:
            r = download(transfer_send, daemon, server, target)
        finally:
            os.waitpid(pid, 0)
        assert reader_out.exists() and reader_out.read_bytes() == expected
    else:
        if os.geteuid() != 0:
            pytest.skip("mknod needs root")
        os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
        r = download(transfer_send, daemon, server, target)
    assert r.returncode == 0, r.stderr
    mode = os.lstat(target).st_mode
    assert (stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)), "the output was replaced"
    assert not (tmp_path / "target.part").exists() and not (tmp_path / "target.part.etag").exists()
    # A stream cannot be resumed into.
    r = download(transfer_send, daemon, server, target, "--resume")
    assert r.returncode == 65 and len(error_lines(r.stderr)) == 1 and "cannot be resumed" in r.stderr, r.stderr


def test_a_symlink_output_is_refused_and_left_alone(served, transfer_send, tmp_path):
    daemon, server, _ = served
    victim = tmp_path / "victim"
    victim.write_text("VICTIM")
    for name, points_to in (("link", victim), ("dangling", tmp_path / "missing")):
        out = tmp_path / name
        out.symlink_to(points_to)
        r = download(transfer_send, daemon, server, out)
        assert r.returncode == 65, (r.returncode, r.stderr)
        assert len(error_lines(r.stderr)) == 1 and "is a symlink" in r.stderr, r.stderr
        assert os.path.islink(out) and os.readlink(out) == str(points_to)
    assert victim.read_text() == "VICTIM"
    assert not (tmp_path / "missing").exists()


def test_a_planted_part_symlink_is_never_written_through(served, transfer_send, tmp_path):
    daemon, server, vol = served
    victim = tmp_path / "victim"
    victim.write_text("VICTIM")
    out = tmp_path / "x"
    (tmp_path / "x.part").symlink_to(victim)
    (tmp_path / "x.part.etag").symlink_to(victim)
    r = download(transfer_send, daemon, server, out)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "VICTIM"
    assert not out.is_symlink() and out.read_bytes() == (vol / REL).read_bytes()
    assert not (tmp_path / "x.part").exists() and not os.path.islink(tmp_path / "x.part.etag")


def test_resume_refuses_a_part_that_is_a_symlink(served, transfer_send, tmp_path):
    """Resuming would append to (and read the validator from) wherever the links point."""
    daemon, server, _ = served
    victim = tmp_path / "victim"
    victim.write_text("VICTIM")
    secret = tmp_path / "secret"
    secret.write_text('"an-etag-like-secret"')
    out = tmp_path / "x"
    (tmp_path / "x.part").symlink_to(victim)
    (tmp_path / "x.part.etag").symlink_to(secret)
    r = download(transfer_send, daemon, server, out, "--resume")
    assert r.returncode == 65, (r.returncode, r.stderr)
    assert len(error_lines(r.stderr)) == 1 and "not a regular file" in r.stderr, r.stderr
    assert victim.read_text() == "VICTIM" and not out.exists()
    # The validator link is not read either: with a real .part beside it, there is "no stored validator".
    (tmp_path / "x.part").unlink()
    (tmp_path / "x.part").write_bytes(b"partial")
    r = download(transfer_send, daemon, server, out, "--resume")
    assert r.returncode == 65 and "no stored validator" in r.stderr, r.stderr


@pytest.mark.parametrize("given, token_claims, message", [
    (["--file", "/other.txt"], {"file_path": "/server.properties"}, "the token is for file"),
    (["--file", "server.properties"], {"backup_uuid": "3f2a1c9e-0b7d-4e8a-9c1f-5d6e7f8a9b0c"}, "backup download"),
    (["--backup", "3f2a1c9e-0b7d-4e8a-9c1f-5d6e7f8a9b0c"], {"file_path": "/server.properties"}, "file download"),
    (["--backup", "3f2a1c9e-0b7d-4e8a-9c1f-5d6e7f8a9b0c"], {"backup_uuid": "11111111-0b7d-4e8a-9c1f-5d6e7f8a9b0c"},
     "the token is for backup"),
])
def test_a_token_for_another_file_is_refused(served, transfer_send, tmp_path, given, token_claims, message):
    """The file a panel token names and --file/--backup (which name the output) must agree, or
    the token's file would be saved under another file's name."""
    daemon, server, _ = served
    token = mint(daemon.token, scope="file-download", server_uuid=server, **token_claims)
    r = run_cli(transfer_send, "download", "--url", daemon.url, "--token", token, *given,
                "--output", tmp_path / "out")
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert message in error_lines(r.stderr)[0], r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spelled", ["server.properties", "/server.properties", "//server.properties"])
def test_a_token_for_the_same_file_is_accepted_however_spelled(served, transfer_send, tmp_path, spelled):
    daemon, server, vol = served
    token = mint(daemon.token, scope="file-download", server_uuid=server, file_path="/server.properties")
    r = run_cli(transfer_send, "download", "--quiet", "--url", daemon.url, "--token", token, "--file", spelled,
                "--output", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out").read_bytes() == (vol / REL).read_bytes()


def test_an_output_directory_that_does_not_exist_is_named(served, transfer_send, tmp_path):
    """`--output DIR/` means a directory: if it is missing, the error names it (it used to name
    "DIR/.part"), exit 66, and nothing is created."""
    daemon, server, vol = served
    missing = tmp_path / "missing"
    r = download(transfer_send, daemon, server, f"{missing}/")
    assert r.returncode == 66, (r.returncode, r.stderr)
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and f"--output {missing}/: no such directory" in lines[0], r.stderr
    assert not missing.exists()
    # An existing directory gets the file under its own name.
    (tmp_path / "present").mkdir()
    r = download(transfer_send, daemon, server, f"{tmp_path / 'present'}/")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "present" / REL).read_bytes() == (vol / REL).read_bytes()
