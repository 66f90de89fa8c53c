"""fixtures/hostile/*.tar.gz posted as proper transfers (correct checksum): the refused ones fail
with 400 and write nothing anywhere; setuid.tar.gz is accepted with setuid/setgid stripped."""
import glob
import gzip
import io
import os
import re
import stat
import tarfile

import pytest
import requests

from e2elib import HOSTILE, error_of, push_archive, scan_names
from http_helpers import file_url


def readme_outcomes():
    """archive name -> expected outcome line, from fixtures/hostile/README.md."""
    outcomes = {}
    for line in (HOSTILE / "README.md").read_text().splitlines():
        m = re.match(r"- `([^`]+\.tar\.gz)`: .*\*\*(.+)\*\*", line)
        if m:
            outcomes[m.group(1)] = m.group(2)
    return outcomes


OUTCOMES = readme_outcomes()
REFUSED = sorted(name for name, outcome in OUTCOMES.items() if outcome.startswith("REFUSED"))


def test_readme_lists_every_archive():
    assert sorted(OUTCOMES) == sorted(os.path.basename(p) for p in glob.glob(str(HOSTILE / "*.tar.gz")))
    assert "setuid.tar.gz" in OUTCOMES and OUTCOMES["setuid.tar.gz"].startswith("ALLOWED")
    assert len(REFUSED) == len(OUTCOMES) - 1


def outside_snapshot():
    """Names an escaping entry could have created outside the state directory."""
    found = {}
    for pattern in ("/tmp/escaped*", "/tmp/outside*", "/escaped*", "/etc/escaped*", "/h", "/evil", "/pipe"):
        for p in glob.glob(pattern):
            st = os.lstat(p)
            found[p] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return found


def state_snapshot(daemon, server):
    """Every path in the daemon's state directory outside the server's own volume."""
    volume = os.path.join("volumes", server)
    entries = set()
    for d, dirs, names in os.walk(daemon.state):
        for n in dirs + names:
            rel = os.path.relpath(os.path.join(d, n), daemon.state)
            if not rel.startswith(volume + os.sep):
                entries.add(rel)
    return entries


@pytest.mark.parametrize("name", REFUSED)
def test_refused_archive_commits_nothing(seeded, untouched, tmp_path, name):
    daemon, server = seeded
    before = outside_snapshot()
    state_before = state_snapshot(daemon, server)
    passwd = os.stat("/etc/passwd")
    archive = (HOSTILE / name).read_bytes()
    r = push_archive(daemon, server, archive)
    assert r.status_code == 400, (r.status_code, r.text)
    error_of(r)
    assert daemon.alive(), "transferd died on a hostile archive"
    untouched(daemon, server)
    # Nothing escaped: not in the state dir, not beside it, not in /tmp.
    assert scan_names(tmp_path, "escaped") == []
    assert outside_snapshot() == before
    assert not os.path.exists("/tmp/escaped-absolute.txt") or "/tmp/escaped-absolute.txt" in before
    assert os.stat("/etc/passwd").st_nlink == passwd.st_nlink
    # The state directory holds nothing new beside the (unchanged) volume.
    assert state_snapshot(daemon, server) == state_before
    # And the server is free for a real transfer afterwards.
    assert push_archive(daemon, server, (HOSTILE / "setuid.tar.gz").read_bytes()).status_code == 200


def test_setuid_archive_is_extracted_without_setuid_bits(seeded):
    daemon, server = seeded
    r = push_archive(daemon, server, (HOSTILE / "setuid.tar.gz").read_bytes())
    assert r.status_code == 200, r.text
    volume = daemon.volume(server)
    entries = sorted(os.path.relpath(os.path.join(d, n), volume)
                     for d, dirs, names in os.walk(volume) for n in dirs + names)
    assert entries == ["sgid-file", "shared", "shared/suid-tool"]
    modes = {e: stat.S_IMODE(os.lstat(volume / e).st_mode) for e in entries}
    assert modes == {"shared": 0o775, "shared/suid-tool": 0o755, "sgid-file": 0o644}, {k: oct(v) for k, v in modes.items()}
    assert (volume / "shared" / "suid-tool").read_bytes() == b"#!/bin/sh\nid\n"
    assert (volume / "sgid-file").read_bytes() == b"x\n"
    for e in entries:
        assert os.lstat(volume / e).st_mtime == 1704067200
    assert daemon.staging_entries() == []


# ---------------------------------------------------------------- archives built here


def _tgz(members):
    """A .tar.gz of hand-built members [(TarInfo fields..., data)], written verbatim by tarfile."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, linkname, data in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mtime = kind, linkname, 1704067200
            ti.mode = {tarfile.DIRTYPE: 0o755, tarfile.SYMTYPE: 0o777}.get(kind, 0o644)
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if ti.size else None)
    return gzip.compress(buf.getvalue(), compresslevel=1, mtime=0)


def _escaping_symlinks(volume):
    """Symlinks in the committed volume whose real target is outside it."""
    real_root = os.path.realpath(volume)
    bad = []
    for d, dirs, names in os.walk(volume):
        for n in dirs + names:
            p = os.path.join(d, n)
            if os.path.islink(p):
                target = os.path.realpath(p)
                if target != real_root and not target.startswith(real_root + os.sep):
                    bad.append(f"{os.path.relpath(p, volume)} -> {os.readlink(p)} (= {target})")
    return bad


DEEP = "/".join(f"d{i}" for i in range(10))
HARDLINKED_SYMLINKS = {
    # `d/s -> ..` is inside the volume where it is; a hardlink `h` to it at the root is the same
    # symlink inode one level up, where `..` is the data directory (every other server's volume).
    "one-level": [("d/", tarfile.DIRTYPE, "", b""), ("d/s", tarfile.SYMTYPE, "..", b""),
                  ("h", tarfile.LNKTYPE, "d/s", b"")],
    # Ten levels deep, `../` x 10 + `etc` is lexically inside; hardlinked to the root it is /etc.
    "to-etc": [(DEEP + "/", tarfile.DIRTYPE, "", b""), (DEEP + "/s", tarfile.SYMTYPE, "../" * 10 + "etc", b""),
               ("h", tarfile.LNKTYPE, DEEP + "/s", b"")],
}


@pytest.mark.parametrize("case", sorted(HARDLINKED_SYMLINKS))
def test_hardlink_to_symlink_cannot_escape(seeded, untouched, case):
    daemon, server = seeded
    r = push_archive(daemon, server, _tgz(HARDLINKED_SYMLINKS[case]))
    committed = _escaping_symlinks(daemon.volume(server))
    assert committed == [], f"status {r.status_code}; escaping symlinks committed: {committed}"
    assert r.status_code == 400, (r.status_code, r.text)
    error_of(r)
    untouched(daemon, server)


def test_hardlink_to_symlink_in_same_directory_is_fine(seeded):
    daemon, server = seeded
    archive = _tgz([("d/", tarfile.DIRTYPE, "", b""), ("d/f", tarfile.REGTYPE, "", b"data\n"),
                    ("d/s", tarfile.SYMTYPE, "f", b""), ("d/h", tarfile.LNKTYPE, "d/s", b"")])
    r = push_archive(daemon, server, archive)
    assert r.status_code == 200, r.text
    volume = daemon.volume(server)
    assert os.readlink(volume / "d" / "h") == "f"
    assert (volume / "d" / "h").read_bytes() == b"data\n"
    assert _escaping_symlinks(volume) == []


def test_unsafe_entry_after_more_than_the_pipeline_buffers(seeded, untouched, tmp_path):
    """The refusal comes while the connection thread is blocked on a full buffer."""
    daemon, server = seeded
    archive = _tgz([("blob.bin", tarfile.REGTYPE, "", os.urandom(12 << 20)),
                    ("../escaped-late.txt", tarfile.REGTYPE, "", b"escaped\n")])
    r = push_archive(daemon, server, archive)
    assert r.status_code == 400, (r.status_code, r.text)
    error_of(r)
    untouched(daemon, server)
    assert scan_names(tmp_path, "escaped") == []


# ------------------------------------- names, targets, sizes and offsets beyond the file system


def _sparse(realsize, offset, count):
    """A pax GNU.sparse 1.0 file of `realsize` bytes whose one data region is `count` bytes at `offset`."""
    def build(tf):
        ti = tarfile.TarInfo("sp")
        sparse_map = f"1\n{offset}\n{count}\n".encode().ljust(512, b"\0")
        ti.size = 512 + count
        ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "sp",
                          "GNU.sparse.realsize": str(realsize)}
        tf.addfile(ti, io.BytesIO(sparse_map + b"x" * count))
    return build


def _raw_tgz(build):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        build(tf)
    return gzip.compress(buf.getvalue(), compresslevel=1, mtime=0)


OFF_MAX = 2**63 - 1
LIMIT = 4096 - 256  # the longest entry path or symlink target accepted (SafeExtractor.maxPathBytes)
# Each one makes a system call fail because of what the archive asks for (EFBIG, ENAMETOOLONG, ...)
# or is refused before that by the path limits: a 400, never a 500. The sizes exceed ext4's 16 TiB
# maximum file size (the e2e state directory is on ext4 here) or off_t itself.
BEYOND_THE_FILE_SYSTEM = {
    "sparse-size-9e18": lambda: _raw_tgz(_sparse(9 * 10**18, 9 * 10**18 - 1000, 0)),
    "sparse-size-off-max": lambda: _raw_tgz(_sparse(OFF_MAX, OFF_MAX, 0)),
    "sparse-data-at-2^62": lambda: _raw_tgz(_sparse(2**62 + 1, 2**62, 1)),
    "sparse-data-at-off-max": lambda: _raw_tgz(_sparse(OFF_MAX, OFF_MAX - 1, 1)),
    "sparse-data-at-17TiB": lambda: _raw_tgz(_sparse((17 << 40) + 4096, 17 << 40, 4096)),
    "symlink-target-6000": lambda: _tgz([("s", tarfile.SYMTYPE, "a/" * 3000, b"")]),
    "symlink-target-over-limit": lambda: _tgz([("s", tarfile.SYMTYPE, "a" * 200 + "/" + "b" * (LIMIT - 201 + 1), b"")]),
    "symlink-target-over-path-max": lambda: _tgz([("s", tarfile.SYMTYPE, ("x" * 255 + "/") * 20, b"")]),
    "path-over-path-max": lambda: _tgz([(("d" * 250 + "/") * 16 + "f", tarfile.REGTYPE, "", b"x")]),
    "path-over-limit": lambda: _tgz([("d" * 200 + "/" + "e" * 200 + "/" + "f" * (LIMIT - 402 + 1), tarfile.REGTYPE, "", b"x")]),
    "path-too-deep": lambda: _tgz([("d/" * 2000 + "f", tarfile.REGTYPE, "", b"x")]),
    "directory-over-limit": lambda: _tgz([(("d" * 255 + "/") * 16, tarfile.DIRTYPE, "", b"")]),
    "hardlink-target-over-limit": lambda: _tgz([("f", tarfile.REGTYPE, "", b"x"),
                                                ("h", tarfile.LNKTYPE, ("g" * 200 + "/") * 20, b"")]),
}


@pytest.mark.parametrize("case", sorted(BEYOND_THE_FILE_SYSTEM))
def test_entry_beyond_file_system_limits_is_refused_as_invalid(seeded, untouched, case):
    daemon, server = seeded
    r = push_archive(daemon, server, BEYOND_THE_FILE_SYSTEM[case]())
    assert r.status_code == 400, (r.status_code, r.text)
    message = error_of(r)
    assert message.startswith("unsafe archive entry") and len(message) < 600, message
    assert daemon.alive()
    untouched(daemon, server)


def test_entry_paths_up_to_the_limit_are_committed_and_downloadable(seeded):
    """Exactly at the limit (a long name path and a deep one, and a symlink target of that length)
    is accepted, and what was committed can be opened again by its full path."""
    daemon, server = seeded
    long_path = ("d" * 254 + "/") * 15 + "f" * (LIMIT - 255 * 15)
    # 480 levels (not 1,920 of "d/": Python's recursive rmtree would fail on the test's tmp_path).
    deep_path = "ddddddd/" * 479 + "g" * 8
    assert len(long_path) == LIMIT and len(deep_path) == LIMIT
    target = "./" * ((LIMIT - len("data")) // 2) + "data"
    assert len(target) == LIMIT
    r = push_archive(daemon, server, _tgz([(long_path, tarfile.REGTYPE, "", b"long\n"),
                                           (deep_path, tarfile.REGTYPE, "", b"deep\n"),
                                           ("data", tarfile.REGTYPE, "", b"data\n"),
                                           ("s", tarfile.SYMTYPE, target, b"")]))
    assert r.status_code == 200, r.text
    for path, data in [(long_path, b"long\n"), (deep_path, b"deep\n"), ("s", b"data\n")]:
        got = requests.get(file_url(daemon, server, path), timeout=30)
        assert got.status_code == 200 and got.content == data, (path[:40], got.status_code, got.text[:200])


# ------------------------------------------------------------- symlinks that lead nowhere


def _links(pairs):
    return [("data", tarfile.REGTYPE, "", b"data\n")] + [(n, tarfile.SYMTYPE, t, b"") for n, t in pairs]


NOWHERE = {
    "self-loop": [("loop", "loop")],
    "two-cycle": [("a", "b"), ("b", "a")],
    "cycle-across-directories": [("d/a", "../e/b"), ("e/b", "../d/a")],
    "into-a-cycle": [("into", "loop/x"), ("loop", "loop")],
    "chain-of-45": [(f"l{i}", f"l{i + 1}" if i < 44 else "data") for i in range(45)],
}


@pytest.mark.parametrize("case", sorted(NOWHERE))
def test_symlinks_leading_nowhere_are_committed(seeded, case):
    """Cycles and chains over the kernel's 40 hops resolve nowhere (ELOOP), so they are harmless
    and kept as GNU tar would: the transfer commits with every link as it was."""
    daemon, server = seeded
    members = _links(NOWHERE[case])
    for directory in sorted({n.rsplit("/", 1)[0] for n, _ in NOWHERE[case] if "/" in n}):
        members.insert(0, (directory + "/", tarfile.DIRTYPE, "", b""))
    r = push_archive(daemon, server, _tgz(members))
    assert r.status_code == 200, r.text
    volume = daemon.volume(server)
    for name, target in NOWHERE[case]:
        assert os.readlink(volume / name) == target
    assert _escaping_symlinks(volume) == []


@pytest.mark.parametrize("pairs", [
    [("loop", "loop"), ("esc", "dot/.."), ("dot", ".")],
    [(f"l{i}", f"l{i + 1}" if i < 59 else "esc") for i in range(60)] + [("esc", "dot/.."), ("dot", ".")],
    [("a", "b"), ("b", "a"), ("c", "dot/../a"), ("dot", "."), ("z", "dot/../..")],
], ids=["beside-a-loop", "behind-60-hops", "beside-a-cycle"])
def test_escaping_symlink_beside_cycles_is_still_refused(seeded, untouched, pairs):
    daemon, server = seeded
    r = push_archive(daemon, server, _tgz(_links(pairs)))
    assert r.status_code == 400, (r.status_code, r.text)
    assert "outside the volume" in error_of(r)
    untouched(daemon, server)


def test_empty_symlink_target_is_refused_as_empty(seeded, untouched):
    daemon, server = seeded
    r = push_archive(daemon, server, _tgz(_links([("s", "")])))
    assert r.status_code == 400, (r.status_code, r.text)
    message = error_of(r)
    assert "empty target" in message and "absolute" not in message, message
    untouched(daemon, server)


@pytest.mark.parametrize("mode", [0o000, 0o055, 0o444, 0o600, 0o1755])
def test_volume_root_keeps_owner_access_whatever_the_root_entry_says(seeded, mode):
    daemon, server = seeded
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        root = tarfile.TarInfo("./")
        root.type, root.mode = tarfile.DIRTYPE, mode
        tf.addfile(root)
        f = tarfile.TarInfo("./f")
        f.size = 2
        tf.addfile(f, io.BytesIO(b"x\n"))
    r = push_archive(daemon, server, gzip.compress(buf.getvalue()))
    assert r.status_code == 200, r.text
    volume = daemon.volume(server)
    assert stat.S_IMODE(os.stat(volume).st_mode) == mode | 0o700
    assert (volume / "f").read_bytes() == b"x\n"
    assert requests.get(file_url(daemon, server, "f"), timeout=30).content == b"x\n"
