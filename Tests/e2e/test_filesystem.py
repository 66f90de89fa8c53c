"""The daemon names the one file-system setup that makes many-file transfers crawl: ext4 without a
journal (creating files soon after many were deleted scans past every recently freed inode).
Real ext4 images, one with a journal and one without, loop-mounted; the warning appears for the
second only, and a transfer into it still commits."""
import os
import shutil
import subprocess

import pytest
import requests

from e2elib import compare_trees, error_of, go_boundary, mint, new_server_id, run_cli
from http_helpers import backup_url, file_url, place_volume, upload_url

needs_mount = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mkfs.ext4") or not shutil.which("mount"),
    reason="needs root, mkfs.ext4 and mount to make ext4 images")


@pytest.fixture
def ext4_image(tmp_path):
    mounted = []

    def make(name, journal):
        image, mnt = tmp_path / f"{name}.img", tmp_path / name
        with open(image, "wb") as f:
            f.truncate(64 << 20)
        features = [] if journal else ["-O", "^has_journal"]
        subprocess.run(["mkfs.ext4", "-q", "-F", *features, str(image)], check=True)
        mnt.mkdir()
        r = subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot loop-mount here: {r.stderr.strip()}")
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], check=False)


@needs_mount
# ext4_image comes first, so its unmounting runs after the daemons are stopped.
def test_warns_only_for_ext4_without_a_journal(ext4_image, daemon_factory, transfer_send, sample_volume):
    plain = ext4_image("plain", journal=False)
    journaled = ext4_image("journaled", journal=True)
    warning = "is on ext4 without a journal"

    d = daemon_factory(state=plain / "state", name="plain")
    log = d.log()
    assert warning in log and "tune2fs -O has_journal /dev/loop" in log, log  # names the device to fix
    assert sum(1 for line in log.splitlines() if warning in line) == 1, "said once, not per transfer"
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", sample_volume, "--url", d.url,
                "--secret-file", d.state / "node-token", "--server", server, "--quiet")
    assert r.returncode == 0, r.stderr
    compare_trees(sample_volume, d.volume(server))

    d2 = daemon_factory(state=journaled / "state", name="journaled")
    assert warning not in d2.log(), d2.log()


def test_no_warning_off_ext4(daemon_factory):
    """tmpfs (/dev/shm) is never flagged, whatever the root file system is."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    state = f"/dev/shm/transfer-e2e-{new_server_id()}"
    try:
        d = daemon_factory(state=state, name="shm")
        assert "without a journal" not in d.log()
        d.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)


# ------------------------------------------------ the volumes directory gone while the daemon runs
# A data disk unmounted (or the directory removed) under a running daemon is the node's fault:
# every endpoint that needs the volumes (or backups) directory answers 500 with a JSON error that
# names the directory, logs an ERROR line, and leaks no internal path such as .staging/<uuid>.XXXX.


def _requests_needing_the_volumes_directory(d, server):
    node = {"Authorization": f"Bearer {d.token}"}
    boundary = go_boundary()
    push = {"Authorization": f"Bearer {mint(d.token, sub=server)}",
            "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return {
        "transfer": lambda: requests.post(d.transfers_url, headers=push, data=b"--" + boundary.encode() + b"--\r\n",
                                          timeout=30),
        "download": lambda: requests.get(file_url(d, server, "server.properties"), timeout=30),
        "upload": lambda: requests.post(upload_url(d, server), files={"files": ("a.txt", b"a")}, timeout=30),
        "backup": lambda: requests.post(f"{d.url}/api/servers/{server}/backup?wait=1", json={"uuid": new_server_id()},
                                        headers=node, timeout=30),
        "push": lambda: requests.post(f"{d.url}/api/servers/{server}/transfer", headers=node, timeout=30,
                                      json={"url": "http://127.0.0.1:9/api/transfers", "token": "Bearer x.y.z",
                                            "server": {"uuid": server}}),
        "websocket": lambda: requests.get(f"{d.url}/api/servers/{server}/ws", timeout=30,
                                          headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                   "Sec-WebSocket-Version": "13",
                                                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}),
    }


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_volumes_directory_gone_is_a_named_500(daemon_factory, sample_volume, how):
    d = daemon_factory()
    server, _ = place_volume(d, sample_volume)
    missing = new_server_id()
    # A server that is not here stays a 404 while the directory is fine.
    assert requests.get(file_url(d, missing, "x"), timeout=30).status_code == 404
    if how == "removed":
        shutil.rmtree(d.volumes)  # rm -rf of the data directory
    else:
        # What unmounting the data disk leaves: another (empty) directory at the same path.
        os.rename(d.volumes, d.volumes.with_name("volumes.away"))
        (d.volumes / ".staging").mkdir(parents=True)
    for name, send in _requests_needing_the_volumes_directory(d, server).items():
        r = send()
        assert r.status_code == 500, (name, r.status_code, r.text)
        message = error_of(r)
        assert f"volumes directory {d.volumes}" in message, (name, message)
        assert ".staging" not in message, (name, message)
    assert sum("ERROR" in line and f"volumes directory {d.volumes}" in line for line in d.log().splitlines()) >= 6
    assert d.alive()


def test_backups_directory_gone_is_a_named_500(daemon_factory, sample_volume):
    """A backup directory made at start (configured, or under --state) that disappears is a 500
    too; one that is only made by the first backup (Wings' default, not configured) is not."""
    d = daemon_factory()
    server, _ = place_volume(d, sample_volume)
    node = {"Authorization": f"Bearer {d.token}"}
    backup = new_server_id()
    r = requests.post(f"{d.url}/api/servers/{server}/backup?wait=1", json={"uuid": backup}, headers=node, timeout=60)
    assert r.status_code == 200, r.text
    assert requests.get(backup_url(d, server, new_server_id()), timeout=30).status_code == 404
    shutil.rmtree(d.state / "backups")
    replies = {
        "download": requests.get(backup_url(d, server, backup), timeout=30),
        "status": requests.get(f"{d.url}/api/servers/{server}/backup/{backup}", headers=node, timeout=30),
        "create": requests.post(f"{d.url}/api/servers/{server}/backup?wait=1", json={"uuid": new_server_id()},
                                headers=node, timeout=30),
    }
    for name, r in replies.items():
        assert r.status_code == 500, (name, r.status_code, r.text)
        assert f"backup directory {d.state / 'backups'} is missing" in error_of(r), (name, r.text)
    assert not (d.state / "backups").exists(), "a backup was written into a directory made again"
    assert "ERROR backups: the node's backup directory" in d.log()


def test_a_volume_that_was_a_symlink_is_replaced_with_a_warning(daemon_factory, transfer_send, sample_volume,
                                                                  other_volume, tmp_path):
    """An operator's `volumes/<uuid> -> /other/disk/vol`: a transfer commits a real directory in the
    volumes directory (the daemon never writes through a link), leaves the link's target as it was,
    and says so in the log instead of silently moving the server to the data disk."""
    daemon = daemon_factory()
    server = new_server_id()
    elsewhere = tmp_path / "other-disk" / "vol"
    shutil.copytree(other_volume, elsewhere, symlinks=True)
    daemon.volumes.mkdir(parents=True, exist_ok=True)
    (daemon.volumes / server).symlink_to(elsewhere)
    p = run_cli(transfer_send, "push", "--volume", sample_volume, "--url", daemon.url, "--secret", daemon.token, "--server", server,
                "--quiet")
    assert p.returncode == 0, p.stderr
    volume = daemon.volume(server)
    assert not volume.is_symlink() and compare_trees(sample_volume, volume) == []
    assert compare_trees(other_volume, elsewhere) == [], "the link's target was touched"
    warnings = [l for l in daemon.log().splitlines() if "WARN" in l and "was a symlink" in l]
    assert len(warnings) == 1 and server in warnings[0] and str(elsewhere) in warnings[0], daemon.log()
