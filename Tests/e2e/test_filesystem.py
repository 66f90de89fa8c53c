"""The daemon names the one file-system setup that makes many-file transfers crawl: ext4 without a
journal (creating files soon after many were deleted scans past every recently freed inode).
Real ext4 images, one with a journal and one without, loop-mounted; the warning appears for the
second only, and a transfer into it still commits."""
import os
import shutil
import subprocess

import pytest

from e2elib import compare_trees, new_server_id, run_cli

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
