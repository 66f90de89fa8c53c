"""Benchmark mode and negotiated compression.

- `transfer-send bench` at a tiny scale runs end to end and its JSON carries every field.
- Against a receiver that does not answer the capability probe (a stand-in for a Wings node),
  `--compression auto` falls back to gzip, and that gzip stream (ISA-L's encoder) is read by
  `gzip -t`, Python's gzip and tarfile.
- Between our own nodes every negotiable mode (zstd, none, gzip, auto) commits an identical tree.
"""
import gzip
import hashlib
import http.server
import io
import json
import os
import subprocess
import tarfile
import threading
import xml.etree.ElementTree as ET

import pytest

from e2elib import compare_trees, new_server_id, run_cli


def test_bench_json_has_every_field(transfer_send, tmp_path):
    out = tmp_path / "bench.json"
    chart = tmp_path / "bench.svg"
    r = run_cli(transfer_send, "bench", "--corpus", "mixed,tiny", "--scale", "0.003", "--runs", "1",
                "--modes", "gzip,auto", "--work", str(tmp_path / "work"), "--json", str(out), "--chart", str(chart),
                timeout=300)
    assert r.returncode == 0, r.stderr
    assert "MB/s" in r.stdout and "mixed" in r.stdout and "tiny" in r.stdout
    report = json.loads(out.read_text())
    series = report["series"]
    assert {(s["corpus"], s["mode"]) for s in series} == {("mixed", "gzip"), ("mixed", "auto"), ("tiny", "gzip"), ("tiny", "auto")}
    for s in series:
        assert s["volume_bytes"] > 0 and s["files"] > 0
        median = s["median"]
        for key in ("mb_per_second", "files_per_second", "compression_ratio", "seconds_to_commit",
                    "sender_cpu_seconds", "sender_peak_rss_mib", "daemon_cpu_seconds", "daemon_peak_rss_mib"):
            assert isinstance(median[key], (int, float)) and median[key] >= 0, (key, s)
            # The daemon's CPU comes from /proc in 10 ms ticks: a 300-file push may take less.
            assert median[key] > 0 or key == "daemon_cpu_seconds", (key, s)
        assert len(s["runs"]) == 1
        run = s["runs"][0]
        assert run["compression"] in ("gzip", "zstd", "none")
        if s["mode"] == "gzip":
            assert run["compression"] == "gzip"
            assert run["archive_bytes"] < run["volume_bytes"] * 1.05
        assert run["files"] == s["files"]
    names = {b["name"] for b in report["baselines"]}
    assert "read + hash floor" in names and "tar | gzip -1 | sha256" in names
    # The durable-write floor extracts into a scratch directory, removed afterwards.
    assert "tar | tar -x + syncfs" in names
    assert not (tmp_path / "work" / "baseline-extract").exists()
    for b in report["baselines"]:
        assert b["mb_per_second"] > 0 and set(b["ratios"]) == {"gzip", "auto"}
    # Conditions the figures depend on travel with them: the work directory's file system here.
    assert isinstance(report["notes"], list)
    fs_note = [n for n in report["notes"] if "without a journal" in n]
    assert bool(fs_note) == ("bench: note:" in r.stderr and "without a journal" in r.stderr)
    svg = ET.fromstring(chart.read_text())
    assert svg.tag.endswith("svg") and len([e for e in svg.iter() if e.tag.endswith("rect")]) >= 5


def test_bench_usage_errors(transfer_send, tmp_path):
    for args in (["--corpus", "huge"], ["--scale", "0"], ["--runs", "0"], ["--modes", "brotli"], ["--url", "http://127.0.0.1:1"],
                 # Output files that cannot be written are found before the runs, not after.
                 ["--chart", "/proc/x.svg"], ["--json", "/proc/self/x.json"], ["--json", "/sys/x.json"]):
        r = run_cli(transfer_send, "bench", "--work", tmp_path / "work", *args, timeout=30)
        assert r.returncode == 64, (args, r.stderr)
        assert r.stderr.startswith("transfer-send: error: ")
        if "--chart" in args or "--json" in args:
            assert "cannot write" in r.stderr and not (tmp_path / "work").exists(), r.stderr


def read_chunked(rfile):
    body = bytearray()
    while True:
        size = int(rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        body += rfile.read(size)
        rfile.readline()


class WingsLikeReceiver(http.server.BaseHTTPRequestHandler):
    """Answers only POST /api/transfers (like Wings); records the parts; 404 for anything else.
    A transfer is answered as Wings answers one it committed: 200 with an empty body (its handler
    returns without writing one), so no checksum comes back."""
    received = []
    probes = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).probes.append(("GET", self.path))
        self.send_error(404)

    def do_POST(self):
        if self.path != "/api/transfers":
            type(self).probes.append(("POST", self.path))
            self.send_error(404)
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = read_chunked(self.rfile)
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        boundary = self.headers["Content-Type"].split("boundary=", 1)[1].strip('"').encode()
        parts = {}
        for piece in body.split(b"--" + boundary)[1:-1]:
            head, _, data = piece[2:].partition(b"\r\n\r\n")
            name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
            parts[name] = data[:-2]
        type(self).received.append(parts)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def wings_like():
    WingsLikeReceiver.received = []
    WingsLikeReceiver.probes = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WingsLikeReceiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_auto_falls_back_to_gzip_and_the_stream_is_standard_gzip(transfer_send, sample_volume, wings_like, tmp_path):
    url = f"http://127.0.0.1:{wings_like.server_address[1]}"
    r = run_cli(transfer_send, "push", "--volume", str(sample_volume), "--url", url, "--secret", "s" * 32,
                "--server", new_server_id(), "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["compression"] == "gzip"
    assert result["success"] is True and result["confirmed_checksum"] is False, result
    assert ("GET", "/api/transfers/capabilities") in WingsLikeReceiver.probes
    assert not any(path == "/api/transfers/probe" for _, path in WingsLikeReceiver.probes)
    parts = WingsLikeReceiver.received[-1]
    archive = parts["archive"]
    assert parts["checksum"].decode() == hashlib.sha256(archive).hexdigest()
    path = tmp_path / "archive.tar.gz"
    path.write_bytes(archive)
    assert subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive))) as tar:
        names = set(tar.getnames())
    assert "logs/latest.log" in names and "latest.log" in names
    # GNU tar extracts it to the same tree.
    out = tmp_path / "x"
    out.mkdir()
    assert subprocess.run(["tar", "-xzf", str(path), "-C", str(out)], capture_output=True).returncode == 0
    assert compare_trees(sample_volume, out) == []


def test_explicit_zstd_to_a_wings_node_is_refused_clearly(transfer_send, sample_volume, wings_like):
    url = f"http://127.0.0.1:{wings_like.server_address[1]}"
    r = run_cli(transfer_send, "push", "--volume", str(sample_volume), "--url", url, "--secret", "s" * 32,
                "--server", new_server_id(), "--compression", "zstd", timeout=60)
    assert r.returncode == 65, r.stderr
    assert "gzip" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert WingsLikeReceiver.received == []


@pytest.mark.parametrize("mode", ["zstd", "none", "gzip", "auto"])
def test_every_mode_commits_the_same_tree(transfer_send, daemon, sample_volume, mode):
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", str(sample_volume), "--url", daemon.url, "--secret-file",
                str(daemon.state / "node-token"), "--server", server, "--compression", mode, "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    sent = json.loads(r.stdout)["compression"]
    if mode != "auto":
        assert sent == mode
    assert compare_trees(sample_volume, daemon.volume(server)) == []


def make_sparse_volume(root):
    """Files with holes at the start, the middle and the end, and one without holes."""
    root.mkdir()
    with open(root / "disk.img", "wb") as f:
        f.truncate(256 << 20)
        for offset, data in ((0, os.urandom(5000)), ((100 << 20) + 7, b"middle" * 1000), ((256 << 20) - 100, b"e" * 100)):
            f.seek(offset)
            f.write(data)
    with open(root / "starts-with-a-hole.img", "wb") as f:
        f.seek(64 << 20)
        f.write(b"late data")
    with open(root / "ends-with-a-hole.img", "wb") as f:
        f.write(b"abc" * 5000)
        f.truncate(10 << 20)
    with open(root / "all-hole.img", "wb") as f:
        f.truncate(64 << 20)
    (root / "plain.txt").write_bytes(b"no holes here\n")
    return root


def files_equal(a, b):
    return subprocess.run(["cmp", "-s", str(a), str(b)]).returncode == 0


def allocated(path):
    return os.stat(path).st_blocks * 512


def test_sparse_files_travel_as_data_and_every_tar_restores_them(transfer_send, wings_like, daemon, tmp_path):
    """A 256 MiB image with 11 KB of data is sent as a pax sparse entry (GNU.sparse 1.0): the
    archive holds the data only, GNU tar and Python's tarfile restore the same bytes (GNU tar with
    the holes), and our own daemon commits it identical and still sparse, in every mode."""
    volume = make_sparse_volume(tmp_path / "volume")
    url = f"http://127.0.0.1:{wings_like.server_address[1]}"
    r = run_cli(transfer_send, "push", "--volume", str(volume), "--url", url, "--secret", "s" * 32,
                "--server", new_server_id(), "--compression", "gzip", "--quiet", timeout=60)
    assert r.returncode == 0, r.stderr
    archive = WingsLikeReceiver.received[-1]["archive"]
    assert len(archive) < 1 << 20, len(archive)
    # The tar itself holds the data only, not the holes' zeros (which gzip would hide).
    assert len(gzip.decompress(archive)) < 2 << 20
    path = tmp_path / "archive.tar.gz"
    path.write_bytes(archive)
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    done = subprocess.run(["tar", "-xzf", str(path), "-C", str(gnu)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    py = tmp_path / "py"
    with tarfile.open(path) as tar:
        tar.extractall(py, filter="fully_trusted")
    for name in ("disk.img", "starts-with-a-hole.img", "ends-with-a-hole.img", "all-hole.img", "plain.txt"):
        for out in (gnu, py):
            assert os.path.getsize(out / name) == os.path.getsize(volume / name), (out, name)
            assert files_equal(volume / name, out / name), (out, name)
    assert allocated(gnu / "disk.img") < 1 << 20
    # The summary says how much data went and how big the files look with their holes.
    apparent = sum(os.path.getsize(volume / n) for n in os.listdir(volume) if os.path.isfile(volume / n))
    r = run_cli(transfer_send, "push", "--volume", str(volume), "--url", daemon.url, "--secret-file",
                str(daemon.state / "node-token"), "--server", new_server_id(), "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["apparent_bytes"] == apparent and report["volume_bytes"] < 1 << 20, report
    r = run_cli(transfer_send, "push", "--volume", str(volume), "--url", daemon.url, "--secret-file",
                str(daemon.state / "node-token"), "--server", new_server_id(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "with the holes of sparse files" in r.stdout.splitlines()[-3], r.stdout
    for mode in ("none", "gzip", "zstd"):
        server = new_server_id()
        r = run_cli(transfer_send, "push", "--volume", str(volume), "--url", daemon.url, "--secret-file",
                    str(daemon.state / "node-token"), "--server", server, "--compression", mode, "--quiet", timeout=60)
        assert r.returncode == 0, r.stderr
        assert compare_trees(volume, daemon.volume(server)) == []
        for name in ("disk.img", "starts-with-a-hole.img", "all-hole.img"):
            assert files_equal(volume / name, daemon.volume(server) / name)
            assert allocated(daemon.volume(server) / name) < 1 << 20, (mode, name)


def linked_volume(root):
    """Files linked two and three times (some across directories), and a file linked once."""
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "world.dat").write_bytes(os.urandom(300_000))
    os.link(root / "world.dat", root / "sub" / "world-link.dat")
    (root / "a.txt").write_text("three names\n")
    os.link(root / "a.txt", root / "sub" / "deep" / "b.txt")
    os.link(root / "a.txt", root / "c.txt")
    (root / "solo.txt").write_text("one name\n")
    return root


def inode_groups(root):
    """Volume-relative paths of regular files grouped by inode (only groups of two or more)."""
    groups = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            path = os.path.join(dirpath, n)
            if os.path.isfile(path) and not os.path.islink(path):
                groups.setdefault(os.stat(path).st_ino, set()).add(os.path.relpath(path, root))
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


@pytest.mark.parametrize("mode", ["auto", "none", "zstd"])
def test_hardlinks_stay_links_between_our_nodes(transfer_send, daemon, tmp_path, mode):
    """Our destination announces that it keeps hardlinks: a linked file travels once and arrives
    linked the same way (same content, one inode per group)."""
    vol = linked_volume(tmp_path / "vol")
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", vol, "--url", daemon.url, "--secret-file", daemon.state / "node-token",
                "--server", server, "--compression", mode, "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["files"] == 6 and result["volume_bytes"] < 300_000 + 100  # the big file's data went once
    assert inode_groups(daemon.volume(server)) == inode_groups(vol) == [
        ["a.txt", "c.txt", "sub/deep/b.txt"], ["sub/world-link.dat", "world.dat"]]
    assert compare_trees(vol, daemon.volume(server)) == []


def test_hardlinks_are_copies_for_gzip_and_wings_nodes(transfer_send, daemon, wings_like, tmp_path):
    """--compression gzip skips the negotiation, and a Wings node does not announce hardlinks: there
    every name is a full copy, which any extractor restores."""
    vol = linked_volume(tmp_path / "vol")
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", vol, "--url", daemon.url, "--secret-file", daemon.state / "node-token",
                "--server", server, "--compression", "gzip", "--quiet", timeout=60)
    assert r.returncode == 0, r.stderr
    assert inode_groups(daemon.volume(server)) == []
    assert compare_trees(vol, daemon.volume(server)) == []
    url = f"http://127.0.0.1:{wings_like.server_address[1]}"
    r = run_cli(transfer_send, "push", "--volume", vol, "--url", url, "--secret", "s" * 32, "--server", new_server_id(),
                "--quiet", timeout=60)
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(WingsLikeReceiver.received[-1]["archive"]))) as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.islnk()]
    assert len(members) == 6 and not any(m.islnk() for m in members)
