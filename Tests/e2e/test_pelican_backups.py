"""Pelican's transfer dialect with backups: `checksum_archive`, then `backup_<file>` +
`checksum_backup_<file>` pairs. Backups land in the backup directory only when the whole transfer
commits and every checksum matched; otherwise nothing is kept (no volume, no backup, no temp file).
"""
import os
import shutil

import pytest

from e2elib import (Part, archive_part, compare_trees, field, go_boundary, mint, multipart_stream, new_server_id,
                    post_transfer, rechunk, sha256_hex)


def backups_dir(daemon):
    return daemon.state / "backups"


def leftovers(daemon):
    directory = backups_dir(daemon)
    return sorted(n for n in os.listdir(directory) if n.startswith(".")) if directory.exists() else []


def pelican_body(archive, backups, wrong=None, omit_checksum=None):
    parts = [archive_part(archive), field("checksum_archive", sha256_hex(archive))]
    for name, data in backups.items():
        parts.append(Part(f"backup_{name}", data, filename=name, content_type="application/octet-stream"))
        if name != omit_checksum:
            parts.append(field(f"checksum_backup_{name}", "0" * 64 if name == wrong else sha256_hex(data)))
    parts.append(field("install_logs", "installed fine\n"))
    return parts


def post(daemon, server, parts, sizes=(65536,)):
    boundary = go_boundary()
    return post_transfer(daemon.url, mint(daemon.token, sub=server),
                         rechunk(multipart_stream(parts, boundary), list(sizes)), boundary)


def test_backups_are_stored_with_the_volume(daemon, sample_tgz, sample_volume):
    server = new_server_id()
    first, second = os.urandom(300_000), b"small backup"
    names = {f"{new_server_id()}.tar.gz": first, f"{new_server_id()}.tar.gz": second}
    r = post(daemon, server, pelican_body(sample_tgz, names), sizes=(7, 4093, 65536))
    assert r.status_code == 200, r.text
    assert compare_trees(sample_volume, daemon.volume(server)) == []
    for name, data in names.items():
        assert (backups_dir(daemon) / name).read_bytes() == data
    assert leftovers(daemon) == []


def test_wrong_backup_checksum_keeps_nothing(daemon, sample_tgz):
    server = new_server_id()
    names = {"a.tar.gz": b"aaaa", "b.tar.gz": b"bbbb"}
    r = post(daemon, server, pelican_body(sample_tgz, names, wrong="b.tar.gz"))
    assert r.status_code == 422, r.text
    assert "b.tar.gz" in r.json()["error"]
    assert not daemon.volume(server).exists()
    assert not (backups_dir(daemon) / "a.tar.gz").exists() and not (backups_dir(daemon) / "b.tar.gz").exists()
    assert leftovers(daemon) == [] and daemon.staging_entries() == []


def test_backup_without_checksum_is_refused(daemon, sample_tgz):
    server = new_server_id()
    r = post(daemon, server, pelican_body(sample_tgz, {"c.tar.gz": b"cc"}, omit_checksum="c.tar.gz"))
    assert r.status_code == 400, r.text
    assert not daemon.volume(server).exists() and leftovers(daemon) == []


def test_backup_names_cannot_leave_the_backup_directory(daemon, sample_tgz):
    for bad in ("../escape.tar.gz", "sub/dir.tar.gz", ".hidden", ""):
        server = new_server_id()
        r = post(daemon, server, pelican_body(sample_tgz, {bad: b"x"}))
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert not daemon.volume(server).exists()
    assert not (daemon.state / "escape.tar.gz").exists()
    assert leftovers(daemon) == []


def test_a_backup_never_replaces_another(daemon, sample_tgz, sample_volume):
    """The backup directory is shared by every server: a transfer for one server may not rewrite
    a backup that is already there (another server's, or one the node made). The same bytes sent
    again are fine; other bytes fail the whole transfer with 409 and keep everything as it was."""
    name = f"{new_server_id()}.tar.gz"
    original = os.urandom(200_000)
    owner = new_server_id()
    assert post(daemon, owner, pelican_body(sample_tgz, {name: original})).status_code == 200
    for attempt in (b"attacker data", original[:-1], original + b"x", b""):
        server = new_server_id()
        r = post(daemon, server, pelican_body(sample_tgz, {name: attempt}))
        assert r.status_code == 409, (len(attempt), r.status_code, r.text)
        assert "already exists" in r.json()["error"] and name in r.json()["error"]
        assert not daemon.volume(server).exists()
        assert (backups_dir(daemon) / name).read_bytes() == original
    again = new_server_id()
    r = post(daemon, again, pelican_body(sample_tgz, {name: original}))
    assert r.status_code == 200, r.text
    assert compare_trees(sample_volume, daemon.volume(again)) == []
    assert (backups_dir(daemon) / name).read_bytes() == original
    assert leftovers(daemon) == [] and daemon.staging_entries() == []


def test_backup_names_are_plain(daemon, sample_tgz):
    """Names that a shell, a path or a log line could misread are refused (400, nothing kept):
    option-like, spaces, backslashes, non-ASCII, control bytes, over 255 bytes."""
    for bad in ("-rf", "a b", "a\\..\\b", "é.tar.gz", "x" * 256, "tab\tname", "semi;colon", "$(id)"):
        server = new_server_id()
        r = post(daemon, server, pelican_body(sample_tgz, {bad: b"x"}))
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert "invalid backup part name" in r.json()["error"]
        assert not daemon.volume(server).exists()
    assert leftovers(daemon) == []
    assert not any(n.startswith("-") or " " in n for n in os.listdir(backups_dir(daemon))) if backups_dir(daemon).exists() else True


@pytest.mark.parametrize("how", ["removed", "replaced"])
def test_backup_parts_into_a_backup_directory_that_is_gone_are_a_named_500(daemon, sample_tgz, sample_volume, how):
    """The backup directory the daemon started with disappears (removed, or another directory at
    its path: its disk unmounted): a transfer with backup parts fails with 500 naming the directory
    and an ERROR line, commits nothing, and does not make the directory again (that would write
    the backups to the disk under the lost mount). A transfer without backup parts still commits."""
    directory = backups_dir(daemon)
    assert directory.is_dir()
    if how == "removed":
        shutil.rmtree(directory)
    else:
        os.rename(directory, directory.with_name("backups.away"))
        directory.mkdir()
    server = new_server_id()
    r = post(daemon, server, pelican_body(sample_tgz, {f"{new_server_id()}.tar.gz": b"backup bytes"}))
    assert r.status_code == 500, (r.status_code, r.text)
    assert f"backup directory {directory} " in r.json()["error"], r.text
    assert not daemon.volume(server).exists() and daemon.staging_entries() == []
    if how == "removed":
        assert not directory.exists(), "the backup directory was made again"
    else:
        assert os.listdir(directory) == [], "a backup was written into the directory now at that path"
    assert any(" ERROR backups: " in line and str(directory) in line for line in daemon.log().splitlines())
    plain = new_server_id()
    r = post(daemon, plain, [archive_part(sample_tgz), field("checksum", sha256_hex(sample_tgz))])
    assert r.status_code == 200, r.text
    assert compare_trees(sample_volume, daemon.volume(plain)) == []
