"""Signed-URL HTTP endpoints, end to end: /download/file, /download/backup, /upload/file, local
backups, and `transfer-send download|upload`, driven with the curl CLI and with Python requests.

Every daemon comes from conftest's `daemon_factory` (127.0.0.1, port 0, its own state dir,
stopped by PID). Big bodies are streamed and hashed, never held in memory.
"""
import hashlib
import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from urllib.parse import unquote

import jwt
import pytest
import requests

from http_helpers import (CLIENTS, MiB, StreamedMultipart, backup_url, counter_blocks, file_url,
                          http_date, mint, peak_rss_kib, place_volume, sha256_path, upload_url,
                          volume_entries, write_config)
from control_helpers import BlackHole
from e2elib import HeldTransfer, compare_trees, new_server_id, push_archive, wait_until

CLIENT_NAMES = sorted(CLIENTS)
# Just over 2 GiB, so offsets and lengths need more than 31 bits.
BIG_SIZE = (2 << 30) + 4097
DEFAULT_STREAM_SIZE = 256 * MiB + 4097
MARKERS = [(0, 4096), (128 * MiB + 5, 999), ((1 << 30) + 123, 5000), ((2 << 30) - 2048, 4096), (-777, 777)]
SLOW = os.environ.get("TRANSFER_SLOW", "") not in ("", "0")
if getattr(pytest.mark, "_config", None) is not None:  # register `slow` (no ini file to do it in)
    pytest.mark._config.addinivalue_line("markers", "slow: long-running; skipped unless TRANSFER_SLOW=1")
slow = [pytest.mark.slow, pytest.mark.skipif(not SLOW, reason="slow: set TRANSFER_SLOW=1")]
RSS_LIMIT_KIB = 64 * 1024
_big_hash_cache = {}


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def served(daemon, sample_volume):
    """(daemon, server, volume path): a daemon holding a copy of the sample volume."""
    server, vol = place_volume(daemon, sample_volume)
    return daemon, server, vol


@pytest.fixture(params=CLIENT_NAMES)
def fetch(request, tmp_path):
    """fetch(url, **kw) -> Reply, with the curl CLI or with requests."""
    fn = CLIENTS[request.param]
    return lambda url, **kw: fn(url, workdir=tmp_path / "client", **kw)


def error_text(reply):
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply
    body = json.loads(reply.body)
    assert isinstance(body.get("error"), str) and body["error"], body
    return body["error"]


def assert_file_headers(reply, path, name):
    """Every header a download promises, checked against the file on disk."""
    st = os.stat(path)
    h = reply.headers
    assert h["Content-Type"] == "application/octet-stream"
    assert h["Content-Length"] == str(st.st_size)
    assert h["Accept-Ranges"] == "bytes"
    assert h["Last-Modified"] == http_date(int(st.st_mtime))
    assert re.fullmatch(r'"[^"\s]+"', h["ETag"]), h["ETag"]
    disposition = h["Content-Disposition"]
    if name.isascii() and '"' not in name and "\\" not in name:
        assert disposition == f'attachment; filename="{name}"'
    else:
        m = re.fullmatch(r'attachment; filename="([\x20-\x7e]*)"; filename\*=UTF-8\'\'([A-Za-z0-9!#$&+\-.^_`|~%]+)',
                         disposition)
        assert m, disposition
        assert '"' not in m.group(1) and m.group(1).isascii()
        assert unquote(m.group(2), encoding="utf-8", errors="strict") == name


def make_big_sparse(path, size):
    """A sparse file of `size` bytes with deterministic non-zero markers (at the start, the end and,
    when the file is that long, around the 1 GiB and 2 GiB lines); returns its sha256 (cached)."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, n in MARKERS:
            if offset < 0:
                offset += size
            if 0 <= offset and offset + n <= size:
                f.seek(offset)
                f.write(hashlib.shake_256(str(offset).encode()).digest(n))
    if size not in _big_hash_cache:
        _big_hash_cache[size] = sha256_path(path)[0]
    return _big_hash_cache[size]


# ---------------------------------------------------------------- downloads, both clients


def test_download_fixture_file(served, fetch):
    daemon, server, vol = served
    src = vol / "logs" / "latest.log"
    r = fetch(file_url(daemon, server, "logs/latest.log"))
    assert r.status == 200, r
    assert r.body == src.read_bytes()
    assert_file_headers(r, src, "latest.log")
    # The ETag is stable for an unchanged file and changes when the file does.
    again = fetch(file_url(daemon, server, "logs/latest.log"))
    assert again.headers["ETag"] == r.headers["ETag"]
    with open(src, "ab") as f:
        f.write(b"one more line\n")
    os.utime(src, (1800000000, 1800000000))
    changed = fetch(file_url(daemon, server, "logs/latest.log"))
    assert changed.status == 200 and changed.body == src.read_bytes()
    assert changed.headers["ETag"] != r.headers["ETag"]
    assert changed.headers["Last-Modified"] == http_date(1800000000)


@pytest.mark.parametrize("rel", ["schematics/城堡 castle.schem", "plugins/Essentials/userdata/Jürgen Ölmann.yml",
                                 "😀 emoji.txt", "notes with spaces.txt"])
def test_download_non_ascii_and_spaced_names(served, fetch, rel):
    daemon, server, vol = served
    r = fetch(file_url(daemon, server, rel))
    assert r.status == 200, r
    assert r.body == (vol / rel).read_bytes()
    assert_file_headers(r, vol / rel, rel.rsplit("/", 1)[-1])
    if not rel.isascii():
        assert "filename*=UTF-8''" in r.headers["Content-Disposition"]


def test_download_follows_symlinks_inside_volume(served, fetch):
    daemon, server, vol = served
    r = fetch(file_url(daemon, server, "latest.log"))  # latest.log -> logs/latest.log
    assert r.status == 200, r
    assert r.body == (vol / "logs" / "latest.log").read_bytes()
    assert r.headers["Content-Disposition"] == 'attachment; filename="latest.log"'
    r = fetch(file_url(daemon, server, "current-world/level.dat"))  # current-world -> world
    assert r.status == 200, r
    assert r.body == (vol / "world" / "level.dat").read_bytes()


@pytest.mark.parametrize("size", [pytest.param(DEFAULT_STREAM_SIZE, id="256MiB"),
                                  pytest.param(BIG_SIZE, marks=slow, id="2GiB")])
def test_download_big_sparse_file_streamed(served, fetch, size):
    """A big sparse file with markers, hashed as it streams (256 MiB by default, >2 GiB when slow)."""
    daemon, server, vol = served
    path = vol / "world" / "huge.bin"
    expected = make_big_sparse(path, size)
    r = fetch(file_url(daemon, server, "world/huge.bin"), hash_only=True, timeout=300)
    assert r.status == 200, r
    assert r.headers["Content-Length"] == str(size)
    assert r.length == size
    assert r.sha256 == expected
    assert peak_rss_kib(daemon.pid) < RSS_LIMIT_KIB


def test_download_over_2gib_headers_and_ranges(served, fetch):
    """Sizes and offsets past 2^31 (cheap: HEAD and ranges of a sparse file just over 2 GiB)."""
    daemon, server, vol = served
    path = vol / "world" / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(BIG_SIZE)
        f.seek((2 << 30) - 10)
        f.write(b"0123456789ABCDEFGHIJ")
        f.seek(BIG_SIZE - 5)
        f.write(b"tail!")
    h = fetch(file_url(daemon, server, "world/huge.bin"), method="HEAD")
    assert h.status == 200, h
    assert_file_headers(h, path, "huge.bin")
    start, end = (2 << 30) - 10, (2 << 30) + 9
    r = fetch(file_url(daemon, server, "world/huge.bin"), range_=f"{start}-{end}")
    assert r.status == 206, r
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{BIG_SIZE}"
    assert r.body == b"0123456789ABCDEFGHIJ"
    r = fetch(file_url(daemon, server, "world/huge.bin"), range_="-5")
    assert r.status == 206 and r.body == b"tail!", r
    assert r.headers["Content-Range"] == f"bytes {BIG_SIZE - 5}-{BIG_SIZE - 1}/{BIG_SIZE}"
    r = fetch(file_url(daemon, server, "world/huge.bin"), range_=f"{BIG_SIZE}-")
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{BIG_SIZE}", r


@pytest.mark.parametrize("spec,first,last", [("1000-1999", 1000, 1999), ("-500", None, None),
                                             ("204000-", 204000, None), ("0-0", 0, 0)])
def test_ranged_download(served, fetch, spec, first, last):
    daemon, server, vol = served
    data = (vol / "logs" / "latest.log").read_bytes()
    size = len(data)
    if first is None:
        first, last = size - 500, size - 1
    if last is None:
        last = size - 1
    r = fetch(file_url(daemon, server, "logs/latest.log"), range_=spec)
    assert r.status == 206, r
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
    assert r.headers["Content-Length"] == str(last - first + 1)
    assert r.body == data[first:last + 1]


def test_head(served, fetch):
    daemon, server, vol = served
    src = vol / "world" / "region" / "r.0.0.mca"
    r = fetch(file_url(daemon, server, "world/region/r.0.0.mca"), method="HEAD")
    assert r.status == 200, r
    assert_file_headers(r, src, "r.0.0.mca")
    g = fetch(file_url(daemon, server, "world/region/r.0.0.mca"))
    assert g.status == 200 and g.body == src.read_bytes()
    assert g.headers["ETag"] == r.headers["ETag"]


def test_head_sends_no_body(served):
    """On the wire: a HEAD answer is headers only (read to EOF; the daemon closes the connection)."""
    daemon, server, vol = served
    url = file_url(daemon, server, "logs/latest.log")
    path = url[len(daemon.url):]
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply[:300]
    size = (vol / "logs" / "latest.log").stat().st_size
    assert f"Content-Length: {size}".lower().encode() in head.lower()
    assert rest == b""


def test_unsatisfiable_range_416(served, fetch):
    daemon, server, vol = served
    size = (vol / "eula.txt").stat().st_size
    r = fetch(file_url(daemon, server, "eula.txt"), range_=f"{size}-")
    assert r.status == 416, r
    assert r.headers["Content-Range"] == f"bytes */{size}"
    r = fetch(file_url(daemon, server, "eula.txt"), range_="999999-1000000")
    assert r.status == 416, r


def test_multiple_ranges_get_the_whole_file(served, fetch):
    daemon, server, vol = served
    data = (vol / "logs" / "latest.log").read_bytes()
    r = fetch(file_url(daemon, server, "logs/latest.log"), range_="0-9,100-199")
    assert r.status == 200, r
    assert r.body == data
    assert "Content-Range" not in r.headers


def test_replayed_token_is_404(served, fetch):
    daemon, server, vol = served
    url = file_url(daemon, server, "eula.txt")
    first = fetch(url)
    assert first.status == 200 and first.body == (vol / "eula.txt").read_bytes()
    again = fetch(url)
    assert again.status == 404, again
    assert error_text(again)
    # A range from byte 0 is a new download, not a resume: still refused.
    assert fetch(url, range_="0-").status == 404


@pytest.mark.parametrize("path,status", [("../x", 400), ("logs/../../x", 400), ("..", 400),
                                         ("/etc/passwd", 404), ("etc/passwd", 404),
                                         ("logs", 404), ("logs/", 404), ("plugins/Empty Dir", 404),
                                         ("no/such/file.txt", 404), ("/", 404)])
def test_bad_file_paths(served, fetch, path, status):
    daemon, server, vol = served
    assert not (vol / "etc").exists()
    r = fetch(file_url(daemon, server, path))
    assert r.status == status, r
    err = error_text(r)
    assert "root:" not in r.body.decode(errors="replace"), err


def test_absolute_path_is_volume_relative(served, fetch):
    daemon, server, vol = served
    (vol / "etc").mkdir()
    marker = f"not the host's passwd {secrets.token_hex(8)}\n".encode()
    (vol / "etc" / "passwd").write_bytes(marker)
    for path in ("/etc/passwd", "etc/passwd", "//etc//passwd"):
        r = fetch(file_url(daemon, server, path))
        assert r.status == 200, (path, r)
        assert r.body == marker


def test_symlinks_leading_outside_are_404_and_nothing_is_read(served, fetch, tmp_path):
    daemon, server, vol = served
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    marker = f"outside secret {secrets.token_hex(8)}".encode()
    secret.write_bytes(marker)
    # Created after the server exists, as a user could from a game-server console.
    os.symlink("/etc/passwd", vol / "evil")
    os.symlink(str(secret), vol / "evil-abs")
    os.symlink(os.path.relpath(secret, vol / "logs"), vol / "logs" / "evil-rel")
    os.symlink(str(outside), vol / "evil-dir")
    os.symlink("../" * 12 + "etc", vol / "world" / "evil-up")
    # atime older than mtime: under relatime, any read of the file would move it.
    st = secret.stat()
    os.utime(secret, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))
    before = secret.stat().st_atime_ns
    for path in ("evil", "evil-abs", "logs/evil-rel", "evil-dir/secret.txt", "world/evil-up/passwd"):
        r = fetch(file_url(daemon, server, path))
        assert r.status == 404, (path, r)
        body = r.body.decode(errors="replace")
        assert marker.decode() not in body and "root:" not in body, (path, body)
        error_text(r)
    assert secret.stat().st_atime_ns == before, "the daemon read a file outside the volume"
    # The detector works: reading it does move atime here.
    secret.read_bytes()
    assert secret.stat().st_atime_ns != before or "noatime" in Path("/proc/mounts").read_text()


def test_unknown_server_is_404(served, fetch):
    daemon, server, vol = served
    r = fetch(file_url(daemon, str(uuid.uuid4()), "eula.txt"))
    assert r.status == 404, r
    error_text(r)


# ---------------------------------------------------------------- resumed downloads


def test_curl_resume_with_same_token(served, tmp_path):
    daemon, server, vol = served
    data = (vol / "world" / "region" / "r.-1.0.mca").read_bytes()
    url = file_url(daemon, server, "world/region/r.-1.0.mca")
    out = tmp_path / "r.mca"
    first = subprocess.run(["curl", "-sS", "-r", "0-999", "-o", str(out), url], capture_output=True, timeout=30)
    assert first.returncode == 0, first.stderr
    assert out.read_bytes() == data[:1000]
    heads = tmp_path / "resume.headers"
    second = subprocess.run(["curl", "-sS", "-C", "-", "-D", str(heads), "-o", str(out), url],
                            capture_output=True, timeout=30)
    assert second.returncode == 0, second.stderr
    assert heads.read_text().startswith("HTTP/1.1 206"), heads.read_text()
    assert f"Content-Range: bytes 1000-{len(data) - 1}/{len(data)}" in heads.read_text()
    assert out.read_bytes() == data


def test_curl_resume_after_killed_download(served, tmp_path):
    daemon, server, vol = served
    path = vol / "world" / "big-region.bin"
    write_counter_file(path, 24 * MiB, seed=11)
    url = file_url(daemon, server, "world/big-region.bin")
    out = tmp_path / "big-region.bin"
    proc = subprocess.Popen(["curl", "-sS", "--limit-rate", "2M", "-o", str(out), url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 512 * 1024):
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    have = out.stat().st_size
    assert 0 < have < path.stat().st_size
    done = subprocess.run(["curl", "-sS", "-C", "-", "-o", str(out), url], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sha256_path(out) == sha256_path(path)


def test_resume_rules(served):
    """Reuse of a download token is only a resume: same client, Range past byte 0."""
    daemon, server, vol = served
    data = (vol / "logs" / "latest.log").read_bytes()
    url = file_url(daemon, server, "logs/latest.log")
    assert requests.get(url, headers={"Range": "bytes=0-99"}, timeout=30).status_code == 206
    r = requests.get(url, headers={"Range": "bytes=100-"}, timeout=30)
    assert r.status_code == 206 and r.content == data[100:]
    # Another client address (loopback 127.0.0.2) may not ride on it.
    other = subprocess.run(["curl", "-sS", "--interface", "127.0.0.2", "-r", "100-", "-o", "/dev/null",
                            "-w", "%{http_code}", url], capture_output=True, text=True, timeout=30)
    assert other.stdout == "404", (other.stdout, other.stderr)
    assert requests.get(url, timeout=30).status_code == 404
    assert requests.get(url, headers={"Range": "bytes=0-"}, timeout=30).status_code == 404
    # A token seen first with a resume range still is one-time for everything else.
    fresh = file_url(daemon, server, "logs/latest.log")
    assert requests.get(fresh, headers={"Range": "bytes=10-19"}, timeout=30).content == data[10:20]
    assert requests.get(fresh, timeout=30).status_code == 404


# ---------------------------------------------------------------- uploads


def upload_files(daemon, server, files, directory=None, token=None, method="POST"):
    return requests.request(method, upload_url(daemon, server, directory, token), files=files, timeout=60)


def write_counter_file(path, size, seed):
    """`size` bytes of `counter_blocks` (distinct, checkable) written to `path` a block at a time."""
    with open(path, "wb") as f:
        for chunk in counter_blocks(size, seed=seed)():
            f.write(chunk)


def leftovers(directory):
    """Unfinished upload files: in `directory` (where they wait when staging is on another file
    system) and in the daemon's staging directory beside the volumes (where they normally wait)."""
    directory = Path(directory)
    names = sorted(p.name for p in directory.iterdir() if p.name.startswith(".upload-") or p.name.endswith(".part"))
    staging = next((d / ".staging" for d in [directory, *directory.parents] if (d / ".staging").is_dir()), None)
    if staging is not None:
        names += sorted(".staging/" + p.name for p in staging.iterdir() if p.name.startswith("upload."))
    return names


def start_half_upload(daemon, server, name, size, directory=None):
    """A socket that has sent the head and half of an upload's body, once the daemon is writing
    the file; returns (sock, rest)."""
    body = StreamedMultipart([("files", name, size, counter_blocks(size))])
    url = upload_url(daemon, server, directory)
    head = (f"POST {url[len(daemon.url):]} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
            f"Content-Type: {body.content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    payload = b"".join(body)
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
    try:
        sock.sendall(head + payload[: len(payload) // 2])
        assert wait_until(lambda: leftovers(daemon.volume(server)), 10), "the upload never started writing"
    except BaseException:
        sock.close()
        raise
    return sock, payload[len(payload) // 2:]


def test_an_upload_in_flight_is_never_inside_the_volume(daemon_factory, sample_volume, transfer_send):
    """Its unfinished file waits in staging: a push that reads the volume meanwhile sends exactly
    the volume (it used to carry a half-written .upload-*.part along), and the upload still lands."""
    source = daemon_factory(name="source")
    destination = daemon_factory(name="destination")
    server, vol = place_volume(source, sample_volume)
    before = volume_snapshot(vol)
    sock, rest = start_half_upload(source, server, "world.zip", 4 * MiB)
    try:
        assert all(name.startswith(".staging/") for name in leftovers(vol)), leftovers(vol)
        assert volume_snapshot(vol) == before
        p = subprocess.run([str(transfer_send), "push", "--volume", str(vol), "--url", destination.url,
                            "--secret", destination.token, "--server", server, "--quiet"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert compare_trees(sample_volume, destination.volume(server)) == []
        sock.sendall(rest)
        reply = read_response(sock)
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert (vol / "world.zip").stat().st_size == 4 * MiB
    assert leftovers(vol) == []


def test_a_daemon_killed_mid_upload_leaves_nothing_in_the_volume(daemon_factory, sample_volume):
    """SIGKILL cannot clean up: the unfinished file is outside the volume, and the next start
    empties staging."""
    daemon = daemon_factory(name="killed")
    server, vol = place_volume(daemon, sample_volume)
    before = volume_snapshot(vol)
    sock, _ = start_half_upload(daemon, server, "world.zip", 4 * MiB)
    try:
        daemon.stop(signal.SIGKILL)
    finally:
        sock.close()
    assert volume_snapshot(vol) == before
    again = daemon_factory(state=daemon.state, name="restarted")
    assert leftovers(vol) == [] and again.staging_entries() == []
    assert "unfinished transfer(s) or upload file(s)" in again.log()


def test_upload_thousand_small_files(served):
    daemon, server, vol = served
    files = [("files", (f"file-{i:04d}.txt", f"content of file {i}\n".encode() * (i % 7 + 1))) for i in range(1000)]
    r = upload_files(daemon, server, files, directory="many/small")
    assert r.status_code == 200, r.text
    target = vol / "many" / "small"
    names = sorted(os.listdir(target))
    assert names == [f"file-{i:04d}.txt" for i in range(1000)]
    for i in (0, 1, 499, 998, 999):
        assert (target / f"file-{i:04d}.txt").read_bytes() == f"content of file {i}\n".encode() * (i % 7 + 1)
    assert all((target / n).stat().st_size > 0 for n in names)


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_upload_single_file(served, tmp_path, client):
    daemon, server, vol = served
    payload = os.urandom(300_000)
    local = tmp_path / "plugin.jar"
    local.write_bytes(payload)
    (vol / "plugins" / "plugin.jar").write_bytes(b"old version")
    url = upload_url(daemon, server, "plugins")
    if client == "curl":
        done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-F", f"files=@{local}", url],
                              capture_output=True, text=True, timeout=30)
        assert done.stdout == "200", done
    else:
        with open(local, "rb") as f:
            r = requests.post(url, files=[("files", ("plugin.jar", f))], timeout=30)
        assert r.status_code == 200, r.text
    assert (vol / "plugins" / "plugin.jar").read_bytes() == payload
    assert leftovers(vol / "plugins") == []


def test_upload_names_reduced_to_base_name(served):
    daemon, server, vol = served
    files = [("files", ("../../escape.txt", b"one")), ("files", ("a/b/c/nested.txt", b"two"))]
    r = upload_files(daemon, server, files, directory="in")
    assert r.status_code == 200, r.text
    assert sorted(os.listdir(vol / "in")) == ["escape.txt", "nested.txt"]
    assert (vol / "in" / "escape.txt").read_bytes() == b"one"
    assert not (vol / "escape.txt").exists() and not (daemon.volumes / "escape.txt").exists()
    assert not (daemon.volumes.parent / "escape.txt").exists()


def test_upload_windows_client_path_reduced_to_base_name(served):
    """Browsers send the filename raw (HTML5: no backslash escaping); old ones send a whole Windows path."""
    daemon, server, vol = served
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="C:\\Users\\me\\report.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n")
    r = requests.post(upload_url(daemon, server, "win"), data=body,
                      headers={"Content-Type": "multipart/form-data; boundary=XyZ"}, timeout=30)
    assert r.status_code == 200, r.text
    assert os.listdir(vol / "win") == ["report.txt"]


def test_upload_get_method_accepted(served):
    daemon, server, vol = served
    r = upload_files(daemon, server, [("files", ("via-get.txt", b"hello"))], method="GET")
    assert r.status_code == 200, r.text
    assert (vol / "via-get.txt").read_bytes() == b"hello"


def test_upload_one_gib_streamed(daemon_factory, sample_volume, tmp_path):
    # 1 GiB is over the default api.upload_limit (100 MiB): raise it.
    daemon = config_daemon(daemon_factory, tmp_path, upload_limit=2048)
    server, vol = place_volume(daemon, sample_volume)
    size = 1 << 30
    sent = hashlib.sha256()
    body = StreamedMultipart([("files", "world-backup.bin", size, counter_blocks(size, hasher=sent))])
    r = requests.post(upload_url(daemon, server, "big"), data=body,
                      headers={"Content-Type": body.content_type}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.request.headers.get("Content-Length") == str(len(body))
    landed = vol / "big" / "world-backup.bin"
    try:
        digest, n = sha256_path(landed)
    finally:
        landed.unlink(missing_ok=True)  # pytest keeps old tmp dirs: don't leave 1 GiB behind
    assert n == size
    assert digest == sent.hexdigest()
    assert leftovers(vol / "big") == []
    rss = peak_rss_kib(daemon.pid)
    assert rss < RSS_LIMIT_KIB, f"daemon peak RSS {rss} KiB after a 1 GiB upload"


def test_upload_chunked_body(served):
    """Without Content-Length (chunked transfer encoding), several files of mixed sizes."""
    daemon, server, vol = served
    hashes = {}
    parts = []
    for name, size in [("a.bin", 0), ("b.bin", 1), ("c.bin", 3 * MiB + 17)]:
        h = hashlib.sha256()
        parts.append(("files", name, size, counter_blocks(size, block=65536, seed=len(name) + size, hasher=h)))
        hashes[name] = h
    body = StreamedMultipart(parts)
    r = requests.post(upload_url(daemon, server, "chunked"), data=iter(body),
                      headers={"Content-Type": body.content_type}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    for name, h in hashes.items():
        assert sha256_path(vol / "chunked" / name)[0] == h.hexdigest(), name


def test_upload_field_named_file_is_400(served):
    daemon, server, vol = served
    before = volume_entries(vol)
    r = upload_files(daemon, server, [("file", ("x.txt", b"data"))])
    assert r.status_code == 400, r.text
    assert "no files" in r.json()["error"]
    r = upload_files(daemon, server, [("other", (None, "just a field"))])
    assert r.status_code == 400, r.text
    assert "no files" in r.json()["error"]
    assert volume_entries(vol) == before


def test_upload_not_multipart_is_400(served):
    daemon, server, vol = served
    r = requests.post(upload_url(daemon, server), data=b"raw bytes", headers={"Content-Type": "text/plain"}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def config_daemon(daemon_factory, tmp_path, upload_limit=None):
    """A daemon started from a Wings-style config.yml (token, system.data, api.upload_limit)."""
    token = secrets.token_hex(32)
    data, backups = tmp_path / "data", tmp_path / "backups"
    config = write_config(tmp_path / "config.yml", token, data, backups, upload_limit=upload_limit)
    return daemon_factory(config=config, volumes=data, token=token)


def test_upload_over_limit(daemon_factory, sample_volume, tmp_path):
    daemon = config_daemon(daemon_factory, tmp_path, upload_limit=1)
    server, vol = place_volume(daemon, sample_volume)
    (vol / "uploads").mkdir()
    (vol / "uploads" / "keep.txt").write_bytes(b"existing")
    before = volume_entries(vol)
    files = [("files", ("small.txt", b"fine")), ("files", ("too-big.bin", b"\0" * (MiB + 1)))]
    r = upload_files(daemon, server, files, directory="uploads")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert "too-big.bin" in err and "1 MiB" in err, err
    assert volume_entries(vol) == before, "nothing of a refused upload may land"
    assert (vol / "uploads" / "keep.txt").read_bytes() == b"existing"
    # Exactly the limit is allowed.
    r = upload_files(daemon, server, [("files", ("exact.bin", b"\1" * MiB))], directory="uploads")
    assert r.status_code == 200, r.text
    assert (vol / "uploads" / "exact.bin").stat().st_size == MiB


def test_upload_far_over_limit_still_answers_400(daemon_factory, sample_volume, tmp_path):
    """curl reads an early answer while it is still sending; the daemon must send one."""
    daemon = config_daemon(daemon_factory, tmp_path, upload_limit=1)
    server, vol = place_volume(daemon, sample_volume)
    big = tmp_path / "far-too-big.bin"
    with open(big, "wb") as f:
        f.truncate(200 * MiB)
    done = subprocess.run(["curl", "-sS", "-o", str(tmp_path / "reply.json"), "-w", "%{http_code}",
                           "-F", f"files=@{big}", upload_url(daemon, server)], capture_output=True, text=True,
                          timeout=60)
    assert leftovers(vol) == []
    assert done.stdout == "400", (done.stdout, done.stderr)
    assert "far-too-big.bin" in json.loads((tmp_path / "reply.json").read_text())["error"]


@pytest.mark.parametrize("directory", ["../../x", "../x", "a/../../x", "/../x"])
def test_upload_directory_outside_is_400(served, directory):
    daemon, server, vol = served
    before = volume_entries(vol)
    r = upload_files(daemon, server, [("files", ("f.txt", b"x"))], directory=directory)
    assert r.status_code == 400, r.text
    assert r.json()["error"]
    assert volume_entries(vol) == before
    assert not (daemon.volumes / "x").exists() and not (daemon.volumes.parent / "x").exists()


def test_upload_through_symlink_leading_outside_is_refused(served, tmp_path):
    daemon, server, vol = served
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    os.symlink(str(outside), vol / "escape")
    r = upload_files(daemon, server, [("files", ("f.txt", b"x"))], directory="escape")
    assert r.status_code in (400, 404), r.text
    assert os.listdir(outside) == []


def test_upload_unknown_server_and_reused_token(served):
    daemon, server, vol = served
    r = upload_files(daemon, str(uuid.uuid4()), [("files", ("f.txt", b"x"))])
    assert r.status_code == 404, r.text
    token = mint(daemon.token, "file-upload", server, user_uuid=str(uuid.uuid4()))
    assert upload_files(daemon, server, [("files", ("once.txt", b"1"))], token=token).status_code == 200
    r = upload_files(daemon, server, [("files", ("twice.txt", b"2"))], token=token)
    assert r.status_code == 404, r.text
    assert not (vol / "twice.txt").exists()
    # A download token is not an upload token.
    wrong = mint(daemon.token, "file-download", server, file_path="eula.txt")
    r = upload_files(daemon, server, [("files", ("wrong.txt", b"3"))], token=wrong)
    assert r.status_code in (401, 403), r.text
    assert not (vol / "wrong.txt").exists()


def test_upload_cut_mid_body_leaves_nothing(served):
    daemon, server, vol = served
    target = vol / "uploads"
    target.mkdir()
    existing = target / "world.zip"
    existing.write_bytes(b"the previous world.zip")
    os.utime(existing, (1700000000, 1700000000))
    st = existing.stat()
    size = 16 * MiB
    body = StreamedMultipart([("files", "world.zip", size, counter_blocks(size))])
    url = upload_url(daemon, server, "uploads")
    path = url[len(daemon.url):]
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nContent-Type: {body.content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    try:
        sock.sendall(head)
        sent = 0
        for piece in body:
            piece = piece[: len(body) // 2 - sent]
            sock.sendall(piece)
            sent += len(piece)
            if sent >= len(body) // 2:
                break
        # The daemon is writing a temporary file (otherwise this test could not fail)...
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not leftovers(target):
            time.sleep(0.02)
        assert leftovers(target), "no temporary file appeared while the upload was in flight"
    finally:
        sock.close()
    # ...and removes it once the connection is gone.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and leftovers(target):
        time.sleep(0.05)
    assert sorted(os.listdir(target)) == ["world.zip"], os.listdir(target)
    now = existing.stat()
    assert existing.read_bytes() == b"the previous world.zip"
    assert (now.st_ino, now.st_mtime_ns, now.st_size) == (st.st_ino, st.st_mtime_ns, st.st_size)
    # The daemon is fine afterwards.
    r = upload_files(daemon, server, [("files", ("world.zip", b"new"))], directory="uploads")
    assert r.status_code == 200 and existing.read_bytes() == b"new"


@pytest.mark.parametrize("failure", ["bad-name", "cut", "over-limit"])
def test_a_failed_upload_removes_the_directories_it_made(daemon_factory, sample_volume, tmp_path, failure):
    """All or nothing covers the target directory too: the directories a failed upload made
    (here multi/level/deep below an existing, empty `kept`) go again; those it found stay."""
    daemon = config_daemon(daemon_factory, tmp_path, upload_limit=1)
    server, vol = place_volume(daemon, sample_volume)
    (vol / "kept").mkdir()
    before = volume_entries(vol)
    directory = "kept/multi/level/deep"
    if failure == "bad-name":
        files = [("files", ("fine.txt", b"fine")), ("files", ("..", b"x"))]
        r = upload_files(daemon, server, files, directory=directory)
        assert r.status_code == 400, r.text
    elif failure == "over-limit":
        files = [("files", ("small.txt", b"fine")), ("files", ("too-big.bin", b"\0" * (MiB + 1)))]
        r = upload_files(daemon, server, files, directory=directory)
        assert r.status_code == 400, r.text
    else:
        sock, _ = start_half_upload(daemon, server, "half.bin", 512 * 1024, directory=directory)
        assert wait_until(lambda: (vol / directory).is_dir(), timeout=10), "the upload never began its file"
        sock.close()
        assert wait_until(lambda: "connection closed mid-upload" in daemon.log(), timeout=10), daemon.log()
    assert wait_until(lambda: volume_entries(vol) == before, timeout=5), sorted(volume_entries(vol) - before)
    assert leftovers(vol / "kept") == []
    # A directory that got a file meanwhile stays: only empty ones this upload made are removed.
    r = upload_files(daemon, server, [("files", ("ok.txt", b"ok"))], directory=directory)
    assert r.status_code == 200, r.text
    assert (vol / directory / "ok.txt").read_bytes() == b"ok"


# ------------------------------------------------ uploads while the server is transferring
# A transfer holds its server in both directions: on the destination the volume is about to be
# replaced (an upload would be lost when it commits), on the source it is being sent (a file
# changing under the archiver fails the push). Uploads get 409 meanwhile and write nothing.


def volume_snapshot(vol):
    return sorted((str(p.relative_to(vol)), p.is_file() and p.read_bytes()) for p in vol.rglob("*") if not p.is_symlink())


def read_response(sock):
    """One HTTP response (head and Content-Length body) from `sock`, without waiting for a close."""
    reply = b""
    while b"\r\n\r\n" not in reply or len(reply.partition(b"\r\n\r\n")[2]) < int(
            re.search(rb"(?i)content-length: *(\d+)", reply.partition(b"\r\n\r\n")[0]).group(1)):
        data = sock.recv(65536)
        assert data, f"connection closed mid-response: {reply[:300]!r}"
        reply += data
    return reply


def assert_upload_refused_as_transferring(r, server):
    assert r.status_code == 409, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    assert f"server {server} is transferring" in r.json()["error"], r.text


def test_upload_refused_while_an_incoming_transfer_runs(served, sample_tgz, sample_volume):
    """The incoming transfer stalls half-way; an upload into the server is refused (409, nothing
    written, the token not spent), and the same upload works once the transfer has committed."""
    daemon, server, vol = served
    before = volume_snapshot(vol)
    token = mint(daemon.token, "file-upload", server, user_uuid=str(uuid.uuid4()))
    with HeldTransfer(daemon, server, sample_tgz) as held:
        r = upload_files(daemon, server, [("files", ("new.txt", b"uploaded"))], token=token)
        assert_upload_refused_as_transferring(r, server)
        assert volume_snapshot(vol) == before and leftovers(vol) == []
        held.release()
        assert held.result.status_code == 200, held.result
    assert compare_trees(sample_volume, daemon.volume(server)) == []
    r = upload_files(daemon, server, [("files", ("new.txt", b"uploaded"))], token=token)
    assert r.status_code == 200, r.text
    assert (daemon.volume(server) / "new.txt").read_bytes() == b"uploaded"


def test_upload_to_a_server_still_arriving_is_409_not_404(daemon, sample_tgz):
    """A server whose first transfer is running has no volume yet: it is busy, not unknown."""
    server = new_server_id()
    with HeldTransfer(daemon, server, sample_tgz):
        assert_upload_refused_as_transferring(upload_files(daemon, server, [("files", ("a.txt", b"a"))]), server)
    assert upload_files(daemon, server, [("files", ("a.txt", b"a"))]).status_code == 200


@pytest.mark.parametrize("transfer", ["running", "committed"])
def test_upload_whose_body_spans_a_transfer_lands_nothing(served, sample_tgz, other_tgz, other_volume, transfer):
    """An upload accepted before a transfer began, whose body ends while the transfer runs (or
    after it has replaced the volume), gets 409 and writes nothing: not into the old volume that
    the commit throws away (it used to answer 200 and the file was gone), not into the new one."""
    daemon, server, vol = served
    sock, second_half = start_half_upload(daemon, server, "late.bin", 4 * MiB)
    with sock:
        if transfer == "running":
            with HeldTransfer(daemon, server, other_tgz):
                sock.sendall(second_half)
                reply = read_response(sock)
        else:
            assert push_archive(daemon, server, other_tgz).status_code == 200
            sock.sendall(second_half)
            reply = read_response(sock)
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 409 Conflict", reply[:300]
    assert f"server {server} is transferring".encode() in rest, rest
    if transfer == "running":
        assert wait_until(lambda: compare_trees(other_volume, daemon.volume(server)) == [], 20)
    assert compare_trees(other_volume, daemon.volume(server)) == []
    assert leftovers(daemon.volume(server)) == [] and not (daemon.volume(server) / "late.bin").exists()


def test_upload_refused_while_the_server_is_being_pushed(served, tmp_path):
    """On the source: a panel-driven push holds the server (here stuck on a destination that
    never reads) and uploads are refused until it is cancelled."""
    daemon, server, vol = served
    before = volume_snapshot(vol)
    hole = BlackHole()
    try:
        body = {"url": hole.url + "/api/transfers", "token": "Bearer x.y.z", "server": {"uuid": server}}
        r = requests.post(f"{daemon.url}/api/servers/{server}/transfer", json=body, headers=node_headers(daemon),
                          timeout=30)
        assert r.status_code == 202, r.text
        assert_upload_refused_as_transferring(upload_files(daemon, server, [("files", ("n.txt", b"n"))]), server)
        assert volume_snapshot(vol) == before and leftovers(vol) == []
        c = requests.delete(f"{daemon.url}/api/servers/{server}/transfer", headers=node_headers(daemon), timeout=30)
        assert c.status_code == 202 and c.json()["state"] == "cancelled", c.text
    finally:
        hole.stop()
    assert upload_files(daemon, server, [("files", ("n.txt", b"n"))]).status_code == 200
    assert (vol / "n.txt").read_bytes() == b"n"


# ---------------------------------------------------------------- backups


def node_headers(daemon):
    return {"Authorization": f"Bearer {daemon.token}"}


def create_backup(daemon, server, backup, wait=True):
    url = f"{daemon.url}/api/servers/{server}/backup" + ("?wait=1" if wait else "")
    return requests.post(url, json={"uuid": backup}, headers=node_headers(daemon), timeout=120)


def tar_listing(path):
    done = subprocess.run(["tar", "-tzf", str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    names = set()
    for raw in done.stdout.decode("utf-8", errors="surrogateescape").splitlines():
        name = raw
        while name.startswith("./"):
            name = name[2:]
        name = name.rstrip("/")
        if name and name != ".":
            names.add(name)
    return names


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_backup_create_download_and_list(served, tmp_path, client):
    daemon, server, vol = served
    backup = str(uuid.uuid4())
    r = create_backup(daemon, server, backup)
    assert r.status_code == 200, r.text
    state = r.json()
    assert state["state"] == "completed"
    assert re.fullmatch(r"[0-9a-f]{64}", state["checksum"])
    status = requests.get(f"{daemon.url}/api/servers/{server}/backup/{backup}", headers=node_headers(daemon), timeout=30)
    assert status.status_code == 200 and status.json()["checksum"] == state["checksum"]

    out = tmp_path / f"{backup}.tar.gz"
    reply = CLIENTS[client](backup_url(daemon, server, backup), workdir=tmp_path / "client")
    assert reply.status == 200, reply
    out.write_bytes(reply.body)
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.headers["Content-Length"] == str(state["size"]) == str(out.stat().st_size)
    assert reply.headers["Content-Disposition"] == f'attachment; filename="{backup}.tar.gz"'
    assert reply.headers["Accept-Ranges"] == "bytes"
    assert reply.headers.get("ETag") and reply.headers.get("Last-Modified")
    cli = subprocess.run(["sha256sum", str(out)], capture_output=True, text=True, timeout=60)
    assert cli.stdout.split()[0] == state["checksum"]
    assert tar_listing(out) == volume_entries(vol)


def test_backup_async_conflict_delete_and_missing(served):
    daemon, server, vol = served
    backup = str(uuid.uuid4())
    r = create_backup(daemon, server, backup, wait=False)
    assert r.status_code == 202, r.text
    assert r.json()["state"] in ("running", "completed")
    status_url = f"{daemon.url}/api/servers/{server}/backup/{backup}"
    deadline = time.monotonic() + 30
    while True:
        s = requests.get(status_url, headers=node_headers(daemon), timeout=30).json()
        if s["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert s["state"] == "completed", s
    assert create_backup(daemon, server, backup).status_code == 409
    # A ranged backup download works like a file download.
    r = requests.get(backup_url(daemon, server, backup), headers={"Range": "bytes=0-1"}, timeout=30)
    assert r.status_code == 206 and r.content == b"\x1f\x8b"
    # Node token required.
    assert requests.get(status_url, timeout=30).status_code == 401
    assert requests.get(status_url, headers={"Authorization": "Bearer nope"}, timeout=30).status_code in (401, 403)
    d = requests.delete(status_url, headers=node_headers(daemon), timeout=30)
    assert d.status_code == 200, d.text
    assert requests.get(status_url, headers=node_headers(daemon), timeout=30).status_code == 404
    r = requests.get(backup_url(daemon, server, backup), timeout=30)
    assert r.status_code == 404 and r.json()["error"]
    r = requests.get(backup_url(daemon, server, str(uuid.uuid4())), timeout=30)
    assert r.status_code == 404 and r.json()["error"]


def test_backup_of_unknown_server_is_404(served):
    daemon, server, vol = served
    assert create_backup(daemon, str(uuid.uuid4()), str(uuid.uuid4())).status_code == 404


# ---------------------------------------------------------------- transfer-send download / upload


def send(transfer_send, *args, timeout=120):
    return subprocess.run([str(transfer_send), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_transfer_send_round_trip(served, transfer_send, tmp_path):
    daemon, server, vol = served
    secret = daemon.state / "node-token"
    a = tmp_path / "alpha.dat"
    b = tmp_path / "bravo ☃.txt"
    a.write_bytes(os.urandom(5 * MiB + 3))
    b.write_bytes("snow ☃\n".encode())
    up = send(transfer_send, "upload", "--quiet", "--url", daemon.url, "--secret-file", secret, "--server", server,
              "--directory", "incoming/today", a, b)
    assert up.returncode == 0, up.stderr
    assert (vol / "incoming" / "today" / "alpha.dat").read_bytes() == a.read_bytes()
    assert (vol / "incoming" / "today" / "bravo ☃.txt").read_bytes() == b.read_bytes()
    for src, rel in ((a, "incoming/today/alpha.dat"), (b, "incoming/today/bravo ☃.txt")):
        out = tmp_path / "back" / src.name
        out.parent.mkdir(exist_ok=True)
        down = send(transfer_send, "download", "--quiet", "--url", daemon.url, "--secret-file", secret,
                    "--server", server, "--file", rel, "--output", out)
        assert down.returncode == 0, down.stderr
        assert out.read_bytes() == src.read_bytes()
        assert not Path(str(out) + ".part").exists()
    # Backups too.
    backup = str(uuid.uuid4())
    assert create_backup(daemon, server, backup).status_code == 200
    out = tmp_path / "backup.tar.gz"
    down = send(transfer_send, "download", "--quiet", "--url", daemon.url, "--secret-file", secret,
                "--server", server, "--backup", backup, "--output", out)
    assert down.returncode == 0, down.stderr
    assert tar_listing(out) == volume_entries(vol)


def test_transfer_send_download_output_paths_stay_where_given(served, transfer_send, tmp_path):
    """--output DIR writes into the directory (nothing left beside it); --backup must be a UUID,
    since it names the output file; a --token with control characters never reaches a header."""
    daemon, server, vol = served
    secret = daemon.state / "node-token"
    outdir = tmp_path / "into"
    outdir.mkdir()
    down = send(transfer_send, "download", "--quiet", "--url", daemon.url, "--secret-file", secret,
                "--server", server, "--file", "server.properties", "--output", outdir)
    assert down.returncode == 0, down.stderr
    assert (outdir / "server.properties").read_bytes() == (vol / "server.properties").read_bytes()
    assert not list(tmp_path.glob("*.part*")) and os.listdir(outdir) == ["server.properties"]
    cwd = tmp_path / "cwd" / "deep"
    cwd.mkdir(parents=True)
    for bad in ("../../escaped", "/tmp/abs", "not-a-uuid"):
        r = subprocess.run([str(transfer_send), "download", "--url", daemon.url, "--secret-file", str(secret),
                            "--server", server, "--backup", bad], capture_output=True, text=True, cwd=cwd, timeout=30)
        assert r.returncode == 64 and "is not a backup UUID" in r.stderr, r.stderr
    assert not (tmp_path / "cwd" / "escaped.tar.gz").exists() and not Path("/tmp/abs.tar.gz").exists()
    r = send(transfer_send, "download", "--url", daemon.url, "--token", "abc\r\nX-Injected: yes", "--file", "x")
    assert r.returncode == 64 and "--token must be a JWT" in r.stderr, r.stderr


def test_transfer_send_download_missing_file_fails_cleanly(served, transfer_send, tmp_path):
    daemon, server, vol = served
    out = tmp_path / "missing.bin"
    down = send(transfer_send, "download", "--quiet", "--url", daemon.url, "--secret-file", daemon.state / "node-token",
                "--server", server, "--file", "no/such.bin", "--output", out)
    assert down.returncode != 0
    assert down.stderr.strip()
    assert not out.exists()


def etag_of(daemon, server, rel):
    """The file's current ETag, from a HEAD (which spends no token)."""
    r = requests.head(file_url(daemon, server, rel), timeout=30)
    assert r.status_code == 200, r
    return r.headers["ETag"]


def download(transfer_send, daemon, server, rel, out, *extra):
    return send(transfer_send, "download", "--quiet", "--url", daemon.url, "--secret-file", daemon.state / "node-token",
                "--server", server, "--file", rel, "--output", out, *extra)


def partial_of(out):
    return Path(str(out) + ".part"), Path(str(out) + ".part.etag")


@pytest.mark.parametrize("have", [1, 200_000, -1])
def test_transfer_send_resume(served, transfer_send, tmp_path, have):
    """A .part whose stored validator is the file's current one is continued (206), whatever its length."""
    daemon, server, vol = served
    data = (vol / "world" / "region" / "r.0.0.mca").read_bytes()
    out = tmp_path / "r.0.0.mca"
    part, etag = partial_of(out)
    part.write_bytes(data[:have])
    etag.write_text(etag_of(daemon, server, "world/region/r.0.0.mca"))
    down = send(transfer_send, "download", "--url", daemon.url, "--secret-file", daemon.state / "node-token",
                "--server", server, "--file", "world/region/r.0.0.mca", "--output", out, "--resume")
    assert down.returncode == 0, down.stderr
    assert "resumed" in down.stdout, down.stdout
    assert out.read_bytes() == data
    assert not part.exists() and not etag.exists()


def test_transfer_send_resume_after_killed_download(served, transfer_send, tmp_path):
    """A download cut off (SIGKILL) leaves the .part and its validator; --resume finishes it."""
    daemon, server, vol = served
    path = vol / "world" / "big-region.bin"
    with open(path, "wb") as f:
        for chunk in counter_blocks(384 * MiB, seed=5)():
            f.write(chunk)
    out = tmp_path / "big-region.bin"
    part, etag = partial_of(out)
    proc = subprocess.Popen([str(transfer_send), "download", "--quiet", "--url", daemon.url, "--secret-file",
                             str(daemon.state / "node-token"), "--server", server, "--file", "world/big-region.bin",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not part.exists() or part.stat().st_size < MiB):
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    have = part.stat().st_size
    if have >= path.stat().st_size:
        pytest.skip("the download finished before it could be cut off")
    assert etag.read_text() == etag_of(daemon, server, "world/big-region.bin")
    down = download(transfer_send, daemon, server, "world/big-region.bin", out, "--resume")
    assert down.returncode == 0, down.stderr
    assert "resumed" in down.stdout, down.stdout
    assert sha256_path(out) == sha256_path(path)
    assert not part.exists() and not etag.exists()


STALE_PARTS = {
    "longer": lambda data: b"stale bytes from some other download " * 100,
    "same length": lambda data: bytes(b ^ 0x55 for b in data),
    "shorter, other bytes": lambda data: b"X",
    "a true prefix": lambda data: data[:10],
}
BAD_VALIDATORS = {"none": None, "empty": "", "header injection": '"abc"\r\nX-Injected: 1', "binary": "\x00\x01"}


@pytest.mark.parametrize("validator", sorted(BAD_VALIDATORS))
@pytest.mark.parametrize("kind", sorted(STALE_PARTS))
def test_transfer_send_resume_refuses_a_part_it_cannot_check(served, transfer_send, tmp_path, kind, validator):
    """Without a usable stored validator a .part is never continued: one error line, exit 65, the
    .part left byte for byte, no output, and no request made (the same one-time token still works)."""
    daemon, server, vol = served
    data = (vol / "eula.txt").read_bytes()
    out = tmp_path / "eula.txt"
    part, etag = partial_of(out)
    stale = STALE_PARTS[kind](data)
    part.write_bytes(stale)
    if BAD_VALIDATORS[validator] is not None:
        etag.write_text(BAD_VALIDATORS[validator])
    token = mint(daemon.token, "file-download", server, file_path="eula.txt")
    down = send(transfer_send, "download", "--quiet", "--url", daemon.url, "--token", token, "--file", "eula.txt",
                "--output", out, "--resume")
    assert down.returncode == 65, down.stderr
    lines = [line for line in down.stderr.splitlines() if line.startswith("transfer-send:")]
    assert len(lines) == 1 and "without --resume" in lines[0] and "no stored validator" in lines[0], down.stderr
    assert part.read_bytes() == stale and not out.exists()
    again = send(transfer_send, "download", "--quiet", "--url", daemon.url, "--token", token, "--file", "eula.txt",
                 "--output", out)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == data and not part.exists() and not etag.exists()


@pytest.mark.parametrize("new_size", [5, 1500, 300_000])
@pytest.mark.parametrize("have", [1, 1500, 100_000])
def test_transfer_send_resume_restarts_when_the_file_changed(served, transfer_send, tmp_path, have, new_size):
    """The .part's validator names an older version of the file (If-Range no longer matches): the
    node sends the whole new file (200) and the .part is rewritten from byte 0, never spliced,
    whether it is shorter, as long as or longer than the new file."""
    daemon, server, vol = served
    path = vol / "changing.bin"
    old = os.urandom(max(have, 1500) + 7)
    path.write_bytes(old)
    out = tmp_path / "changing.bin"
    part, etag = partial_of(out)
    part.write_bytes(old[:have])
    etag.write_text(etag_of(daemon, server, "changing.bin"))
    new = os.urandom(new_size)
    time.sleep(0.01)
    path.write_bytes(new)
    down = download(transfer_send, daemon, server, "changing.bin", out, "--resume")
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == new
    assert "changed" in down.stderr and "resumed" not in down.stdout, (down.stdout, down.stderr)
    assert not part.exists() and not etag.exists()


def test_transfer_send_resume_with_current_validator_and_a_longer_part_is_refused(served, transfer_send, tmp_path):
    """The validator matches but the .part is longer than the file (written to by something else):
    416 from the node, one error line, the .part kept; one exactly as long is complete."""
    daemon, server, vol = served
    data = (vol / "eula.txt").read_bytes()
    out = tmp_path / "eula.txt"
    part, etag = partial_of(out)
    longer = data + b"appended locally"
    part.write_bytes(longer)
    etag.write_text(etag_of(daemon, server, "eula.txt"))
    down = download(transfer_send, daemon, server, "eula.txt", out, "--resume")
    assert down.returncode == 65, down.stderr
    lines = [line for line in down.stderr.splitlines() if line.startswith("transfer-send:")]
    assert len(lines) == 1 and "does not match the remote file" in lines[0], down.stderr
    assert part.read_bytes() == longer and etag.exists() and not out.exists()
    part.write_bytes(data)
    down = download(transfer_send, daemon, server, "eula.txt", out, "--resume")
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == data and not part.exists() and not etag.exists()


def test_transfer_send_resume_with_a_used_token(served, transfer_send, tmp_path):
    """curl fetched the start with a token (its ETag saved beside the .part); transfer-send
    finishes with the same token."""
    daemon, server, vol = served
    data = (vol / "logs" / "latest.log").read_bytes()
    token = mint(daemon.token, "file-download", server, file_path="logs/latest.log")
    out = tmp_path / "latest.log"
    part, etag = partial_of(out)
    heads = tmp_path / "first.headers"
    first = subprocess.run(["curl", "-sS", "-r", "0-4095", "-D", str(heads), "-o", str(part),
                            f"{daemon.url}/download/file?token={token}"], capture_output=True, timeout=30)
    assert first.returncode == 0 and part.stat().st_size == 4096
    etag.write_text(re.search(r"(?im)^ETag: (.*?)\r?$", heads.read_text()).group(1))
    down = send(transfer_send, "download", "--url", daemon.url, "--token", token, "--file", "logs/latest.log",
                "--output", out, "--resume")
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == data


@pytest.mark.parametrize("if_range", ["stale-etag", "old-date", "garbage"])
def test_replayed_token_never_gets_the_whole_file_again(served, if_range):
    """A used token may only continue a download: with an If-Range that does not match (which
    would turn the answer into the whole file) the replay is refused; a matching one gets 206."""
    daemon, server, vol = served
    data = (vol / "logs" / "latest.log").read_bytes()
    url = file_url(daemon, server, "logs/latest.log")
    first = requests.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
    assert first.status_code == 206
    value = {"stale-etag": '"1-2-3"', "old-date": http_date(1_000_000), "garbage": "x"}[if_range]
    r = requests.get(url, headers={"Range": "bytes=100-", "If-Range": value}, timeout=30)
    assert r.status_code == 404 and "already used" in r.json()["error"], (r.status_code, r.content[:200])
    for validator in ("ETag", "Last-Modified"):
        # A resume to the end spends the link, so each validator gets its own.
        used = file_url(daemon, server, "logs/latest.log")
        current = requests.get(used, headers={"Range": "bytes=0-99"}, timeout=30).headers[validator]
        r = requests.get(used, headers={"Range": "bytes=100-", "If-Range": current}, timeout=30)
        assert r.status_code == 206 and r.content == data[100:]
    # A fresh token with a stale If-Range is an ordinary first download: the whole file.
    r = requests.get(file_url(daemon, server, "logs/latest.log"), headers={"Range": "bytes=100-", "If-Range": value},
                     timeout=30)
    assert r.status_code == 200 and r.content == data


def test_request_header_sizes(served):
    """Headers share libmicrohttpd's per-connection pool: large-but-sane headers (a panel's cookies,
    a long token) are served; oversized ones get a 4xx and the daemon keeps serving."""
    daemon, server, vol = served
    url = lambda: file_url(daemon, server, "logs/latest.log")  # tokens are single-use
    big = {"X-Padding": "a" * (96 * 1024), "Cookie": "; ".join(f"c{i}={'v' * 200}" for i in range(200))}
    r = requests.get(url(), headers=big, timeout=30)
    assert r.status_code == 200
    assert r.content == (vol / "logs" / "latest.log").read_bytes()
    try:
        huge = requests.get(url(), headers={"X-Padding": "a" * (2 * MiB)}, timeout=30)
        assert 400 <= huge.status_code < 500, huge.status_code
    except requests.ConnectionError:
        pass  # closing the connection on an oversized request is also a clean refusal
    assert requests.get(url(), timeout=30).status_code == 200
    assert daemon.proc.poll() is None


def test_one_client_cannot_hold_every_connection(daemon):
    """Half-sent requests held open (a slowloris) are capped per client address; the refusals
    are logged once, not per connection, and the daemon serves normally once they go."""
    held = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            s.sendall(b"GET /api/system HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(s)
        time.sleep(1.0)
        refused = 0
        for s in held:
            s.settimeout(0.05)
            try:
                refused += s.recv(1) == b""
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                refused += 1
        assert refused >= 200 - 128, refused
        assert refused <= 200 - 100, refused  # the rest were served (held open, waiting for headers)
    finally:
        for s in held:
            s.close()
    time.sleep(0.5)
    log = daemon.log()
    assert "refusing connections" in log and log.count("refusing connections") <= 2, log[-2000:]
    r = requests.get(daemon.url + "/api/system", timeout=10)
    assert r.status_code in (200, 401), r.text


def owners_below(root):
    """{(uid, gid)} of the root and every entry below it (symlinks themselves)."""
    found = {(os.lstat(root).st_uid, os.lstat(root).st_gid)}
    for d, dirs, names in os.walk(root):
        for n in dirs + names:
            st = os.lstat(os.path.join(d, n))
            found.add((st.st_uid, st.st_gid))
    return found


@pytest.mark.parametrize("how", ["flag", "config"])
def test_volume_owner_applies_to_transfers_and_uploads(daemon_factory, transfer_send, sample_volume, tmp_path, how):
    """Wings gives what it writes to its system user (a game server runs as that uid): so do we,
    for a pushed tree (files, directories, symlinks, the root) and for uploaded files."""
    if how == "flag":
        daemon = daemon_factory("--volume-owner", "1234:5678")
    else:
        token = secrets.token_hex(16)
        config = write_config(tmp_path / "config.yml", token, tmp_path / "data", tmp_path / "backups")
        config.write_text(config.read_text() + "  user:\n    uid: 1234\n    gid: 5678\n")
        daemon = daemon_factory(config=config, token=token, volumes=tmp_path / "data")
    server = str(uuid.uuid4())
    r = subprocess.run([str(transfer_send), "push", "--volume", str(sample_volume), "--url", daemon.url,
                        "--token", mint(daemon.token, "transfer", server, sub=server), "--server", server, "--quiet"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    volume = daemon.volume(server)
    assert owners_below(volume) == {(1234, 5678)}
    url = upload_url(daemon, server)
    r = requests.post(url, files=[("files", ("new.txt", b"uploaded"))], timeout=30)
    assert r.status_code == 200, r.text
    st = os.lstat(volume / "new.txt")
    assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_volume_owner_must_be_numbers(transferd, tmp_path):
    r = subprocess.run([str(transferd), "--state", str(tmp_path / "s"), "--listen", "127.0.0.1:0",
                        "--volume-owner", "pterodactyl"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 64 and "--volume-owner must be UID:GID" in r.stderr, r.stderr
    config = write_config(tmp_path / "config.yml", secrets.token_hex(16), tmp_path / "data", tmp_path / "backups")
    config.write_text(config.read_text() + "  user:\n    uid: 988\n")
    r = subprocess.run([str(transferd), "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "system.user needs both uid and gid" in r.stderr, r.stderr


def test_backup_keeps_symlinks_a_transfer_leaves_out(served, tmp_path):
    """A local backup is the volume as it is: a link out of the volume stays in it (only a
    transfer leaves such links out, since the destination refuses them)."""
    daemon, server, vol = served
    os.symlink("/etc/passwd", vol / "abs-link")
    os.symlink("../..", vol / "up-link")
    backup = str(uuid.uuid4())
    r = create_backup(daemon, server, backup)
    assert r.status_code == 200, r.text
    reply = requests.get(backup_url(daemon, server, backup), timeout=30)
    assert reply.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(reply.content)) as tar:
        links = {m.name.lstrip("./"): m.linkname for m in tar.getmembers() if m.issym()}
    assert links.get("abs-link") == "/etc/passwd" and links.get("up-link") == "../..", links


@pytest.mark.parametrize("crit", [["exp"], [], "server_uuid"], ids=["list", "empty", "string"])
def test_signed_url_token_with_crit_header_is_refused(served, crit):
    """RFC 7515 §4.1.11: a download token whose JOSE header has `crit` (extensions we do not
    understand) is refused like any bad token, although its signature is right."""
    daemon, server, _ = served
    now = int(time.time())
    claims = {"iss": "https://panel.example.test", "jti": secrets.token_hex(16), "iat": now, "nbf": now - 300,
              "exp": now + 900, "unique_id": secrets.token_urlsafe(12), "scope": "file-download",
              "server_uuid": server, "file_path": "logs/latest.log"}
    token = jwt.encode(claims, daemon.token, algorithm="HS256", headers={"crit": crit})
    r = requests.get(f"{daemon.url}/download/file?token={token}", timeout=30)
    assert r.status_code in (401, 403), (r.status_code, r.text)
    assert "crit" in r.json()["error"]
    # The same claims without crit are fine.
    token = jwt.encode(claims | {"jti": secrets.token_hex(16)}, daemon.token, algorithm="HS256")
    assert requests.get(f"{daemon.url}/download/file?token={token}", timeout=30).status_code == 200


@pytest.mark.parametrize("directory", ["/a\x00b", "a\x00", "\x00", "/plugins/x\x00/../..", "/ok/\x00/"])
def test_upload_directory_with_a_nul_is_refused(served, directory):
    """A NUL in ?directory= (%00) is refused, not cut short: '/a%00b' once wrote into '/a'."""
    daemon, server, vol = served
    before = sorted(str(p.relative_to(vol)) for p in vol.rglob("*"))
    r = requests.post(upload_url(daemon, server, directory=directory), files={"files": ("f.txt", b"x")}, timeout=30)
    assert r.status_code == 400, (directory, r.status_code, r.text)
    assert "NUL" in r.json()["error"]
    assert sorted(str(p.relative_to(vol)) for p in vol.rglob("*")) == before


def test_query_values_keep_every_byte(served):
    """A token with a NUL in it is not cut at the NUL into something else."""
    daemon, server, _ = served
    token = mint(daemon.token, "file-download", server, file_path="server.properties")
    ok = requests.get(f"{daemon.url}/download/file?token={token}", timeout=30)
    assert ok.status_code == 200
    token = mint(daemon.token, "file-download", server, file_path="server.properties")
    r = requests.get(f"{daemon.url}/download/file?token={token}%00garbage", timeout=30)
    assert r.status_code in (401, 403), (r.status_code, r.text)


def test_upload_log_line_names_the_server(served):
    daemon, server, vol = served
    r = requests.post(upload_url(daemon, server, directory="/plugins"), files={"files": ("p.jar", b"jar")}, timeout=30)
    assert r.status_code == 200, r.text
    assert wait_until(lambda: f"upload: server {server}: 1 files, 3 B into /plugins" in daemon.log(), 10), daemon.log()[-1000:]


# ---------------------------------------------------------------- spent links stay spent


@pytest.mark.parametrize("replay", ["1-", "-99999", "50000-", "1-99998", "-1", "1-10,20-"])
def test_a_link_downloaded_to_the_end_is_never_replayed(served, replay):
    """Once a download delivered the file through its last byte, no range gets any of it again
    (found by a hostile trial: `bytes=1-` or `bytes=-N` replayed a used link without limit)."""
    daemon, server, vol = served
    (vol / "world" / "replay.bin").write_bytes(secrets.token_bytes(100000))
    url = file_url(daemon, server, "world/replay.bin")
    whole = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", url],
                           capture_output=True, text=True, timeout=30)
    assert whole.stdout == "200 100000", whole
    for _ in range(3):
        again = subprocess.run(["curl", "-sS", "-H", f"Range: bytes={replay}", "-o", "/dev/null", "-w", "%{http_code}",
                                url], capture_output=True, text=True, timeout=30)
        assert again.stdout == "404", (replay, again)
        r = requests.get(url, headers={"Range": f"bytes={replay}"}, timeout=30)
        assert r.status_code == 404 and "already used" in r.json()["error"], (replay, r.status_code)
    assert requests.head(url, headers={"Range": "bytes=1-"}, timeout=30).status_code == 404


def test_a_resume_to_the_end_spends_the_link(served):
    daemon, server, vol = served
    data = secrets.token_bytes(100000)
    (vol / "world" / "replay.bin").write_bytes(data)
    url = file_url(daemon, server, "world/replay.bin")
    assert requests.get(url, headers={"Range": "bytes=0-999"}, timeout=30).content == data[:1000]
    r = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=30)
    assert r.status_code == 206 and r.content == data[1000:]
    for replay in ("1000-", "1-", "-5"):
        assert requests.get(url, headers={"Range": f"bytes={replay}"}, timeout=30).status_code == 404, replay


def test_a_used_link_resumes_only_to_the_end_and_never_by_suffix(served):
    daemon, server, vol = served
    data = secrets.token_bytes(100000)
    (vol / "world" / "replay.bin").write_bytes(data)
    url = file_url(daemon, server, "world/replay.bin")
    assert requests.get(url, headers={"Range": "bytes=0-999"}, timeout=30).status_code == 206
    # Pieces that stop short of the end, a suffix or several ranges never complete a download.
    for replay in ("1000-1999", "-99000", "1000-1999,5000-"):
        assert requests.get(url, headers={"Range": f"bytes={replay}"}, timeout=30).status_code == 404, replay
    r = requests.get(url, headers={"Range": "bytes=1000-99999"}, timeout=30)
    assert r.status_code == 206 and r.content == data[1000:]


def test_a_cut_download_resumes_once_to_the_end_then_the_link_is_spent(served, tmp_path):
    daemon, server, vol = served
    path = vol / "world" / "cut.bin"
    write_counter_file(path, 64 * MiB, seed=5)
    url = file_url(daemon, server, "world/cut.bin")
    with requests.get(url, stream=True, timeout=30) as r:
        assert r.status_code == 200
        got = r.raw.read(MiB)
    assert len(got) == MiB  # and the connection is closed with most of the file unsent
    out = tmp_path / "cut.bin"
    out.write_bytes(got)
    done = subprocess.run(["curl", "-sS", "-C", "-", "-o", str(out), "-w", "%{http_code}", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "206", done
    assert sha256_path(out) == sha256_path(path)
    for replay in (f"{MiB}-", "1-", "-100"):
        r = requests.get(url, headers={"Range": f"bytes={replay}"}, stream=True, timeout=30)
        assert r.status_code == 404, replay
        r.close()


def test_concurrent_uses_of_one_link_never_both_get_the_file(served):
    """The first use and a resume racing it: at most one of them sends anything."""
    daemon, server, vol = served
    path = vol / "world" / "race.bin"
    write_counter_file(path, 64 * MiB, seed=6)
    url = file_url(daemon, server, "world/race.bin")
    with requests.get(url, stream=True, timeout=30) as first:
        assert first.status_code == 200
        first.raw.read(64 * 1024)  # the first download is under way, held open
        others = [requests.get(url, headers={"Range": f"bytes={start}-"}, stream=True, timeout=30)
                  for start in (1, 1000)]
        statuses = [o.status_code for o in others]
        for o in others:
            o.close()
        assert statuses == [409, 409], statuses
        assert requests.get(url, timeout=30).status_code == 404
    # Plain first uses racing each other: exactly one 200.
    fresh = file_url(daemon, server, "world/race.bin")
    from concurrent.futures import ThreadPoolExecutor

    def grab(_):
        with requests.get(fresh, stream=True, timeout=30) as r:
            return r.status_code
    with ThreadPoolExecutor(8) as pool:
        got = sorted(pool.map(grab, range(8)))
    assert got.count(200) == 1 and set(got) <= {200, 404}, got


def test_the_log_says_whether_a_download_reached_its_end(served):
    """A download's log line names the file's size, and says when the client left before the end
    (it used to read "-> 200" either way)."""
    daemon, server, vol = served
    path = vol / "world" / "logged.bin"
    write_counter_file(path, 64 * MiB, seed=8)
    whole = requests.get(file_url(daemon, server, "world/logged.bin"), timeout=30)
    assert whole.status_code == 200 and len(whole.content) == 64 * MiB
    with requests.get(file_url(daemon, server, "world/logged.bin"), stream=True, timeout=30) as cut:
        assert cut.status_code == 200
        cut.raw.read(MiB)
    assert wait_until(lambda: len([l for l in daemon.log().splitlines() if "GET /download/file" in l]) == 2, 10)
    lines = [l for l in daemon.log().splitlines() if "GET /download/file" in l]
    assert "-> 200 file=64.0 MiB " in lines[0] and "CUT SHORT" not in lines[0], lines
    assert "-> 200 file=64.0 MiB CUT SHORT (the client went away)" in lines[1], lines
