"""The wire format from independent clients (Python requests, curl, raw sockets): what Wings and
Pelican send is accepted, and every malformed or interrupted body commits nothing."""
import json
import os
import socket
import subprocess

import pytest
import requests

from e2elib import (HeldTransfer, Part, archive_part, chunk_encode, compare_trees, error_of, field, go_boundary, mint,
                    multipart_bytes, multipart_stream, new_server_id, post_transfer, push_archive, raw_request, read_until_closed,
                    rechunk, sha256_hex, transfer_parts, wait_until)

WINGS_HEADERS = {"User-Agent": "Pterodactyl Wings/v1.11.13 (id:e2e)", "Accept": "application/json"}


def assert_committed(r, daemon, server, volume, archive):
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["checksum"] == sha256_hex(archive)
    assert compare_trees(volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []


# ---------------------------------------------------------------- accepted bodies


def test_wings_shaped_chunked_request(daemon, sample_tgz, sample_volume):
    """Exactly what a Wings source writes: Go mime/multipart, chunked, archive then checksum."""
    server = new_server_id()
    boundary = go_boundary()
    parts = [archive_part(sample_tgz[i:i + 32768] for i in range(0, len(sample_tgz), 32768)),
             field("checksum", sha256_hex(sample_tgz))]
    r = post_transfer(daemon.url, mint(daemon.token, sub=server), multipart_stream(parts, boundary), boundary,
                      extra_headers=WINGS_HEADERS)
    assert_committed(r, daemon, server, sample_volume, sample_tgz)


@pytest.mark.parametrize("layout", ["pelican", "unknown-part-first", "header-variations"])
def test_other_dialects_are_accepted(daemon, sample_tgz, sample_volume, layout):
    server = new_server_id()
    boundary = go_boundary()
    checksum = sha256_hex(sample_tgz)
    backup = os.urandom(3000)
    if layout == "pelican":
        parts = [archive_part(sample_tgz), field("checksum_archive", checksum),
                 Part("backup_x", backup, filename="x.tar.gz", content_type="application/octet-stream"),
                 field("checksum_backup_x", sha256_hex(backup)),
                 Part("install_logs", b"installing...\ndone\n", filename="install.log", content_type="text/plain")]
    elif layout == "unknown-part-first":
        parts = [field("server_id", "42"), Part("install_logs", b"log\r\n--not-a-boundary\r\n", filename="i.log"),
                 archive_part(sample_tgz), field("checksum", checksum), field("trailer", "ignored")]
    else:
        class Odd(Part):
            def header(self):
                return (b"content-type: application/octet-stream\r\nX-Extra: 1\r\n"
                        b"content-disposition: form-data; filename=\"archive.tar.gz\"; name=archive\r\n\r\n")
        parts = [Odd("archive", sample_tgz), field("checksum", checksum.upper() + "\r\n")]
    r = post_transfer(daemon.url, mint(daemon.token, sub=server), multipart_stream(parts, boundary), boundary)
    assert_committed(r, daemon, server, sample_volume, sample_tgz)


@pytest.mark.parametrize("content_type", [
    'multipart/form-data; boundary="{b}"',
    "Multipart/Form-Data; charset=utf-8; BOUNDARY={b}",
    'multipart/form-data;boundary="{b}" ; foo=bar',
], ids=["quoted", "case-and-params", "no-space-and-trailing-param"])
def test_content_type_variants(daemon, other_tgz, other_volume, content_type):
    server = new_server_id()
    boundary = "----=_Part_7_1234.5678:e2e"
    r = post_transfer(daemon.url, mint(daemon.token, sub=server),
                      multipart_stream(transfer_parts(other_tgz), boundary),
                      content_type=content_type.format(b=boundary))
    assert_committed(r, daemon, server, other_volume, other_tgz)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_curl_form_upload(daemon, sample_tgz, sample_volume, tmp_path, chunked):
    server = new_server_id()
    archive = tmp_path / "volume.tar.gz"
    archive.write_bytes(sample_tgz)
    out = tmp_path / "reply.json"
    cmd = ["curl", "-sS", "--max-time", "30", "-o", str(out), "-w", "%{http_code}",
           "-H", f"Authorization: Bearer {mint(daemon.token, sub=server)}",
           "-F", f"archive=@{archive}", "-F", f"checksum={sha256_hex(sample_tgz)}", daemon.url + "/api/transfers"]
    if chunked:
        cmd[1:1] = ["-H", "Transfer-Encoding: chunked"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=40)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "200", out.read_text()
    assert json.loads(out.read_text())["checksum"] == sha256_hex(sample_tgz)
    assert compare_trees(sample_volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []


def test_body_in_tiny_pieces(daemon, other_tgz, other_volume):
    """Every boundary, header and byte of the archive arrives in 1-7 byte chunks."""
    server = new_server_id()
    boundary = go_boundary()
    body = rechunk(multipart_stream(transfer_parts(other_tgz), boundary), [1, 2, 3, 4, 5, 6, 7, 3, 1])
    r = post_transfer(daemon.url, mint(daemon.token, sub=server), body, boundary)
    assert_committed(r, daemon, server, other_volume, other_tgz)


def test_framing_in_tiny_pieces_around_large_archive_chunks(daemon, sample_tgz, sample_volume):
    """Large archive chunks, but every delimiter and part header split byte by byte."""
    server = new_server_id()
    boundary = go_boundary()
    body = multipart_bytes(transfer_parts(sample_tgz), boundary)
    start = body.index(sample_tgz)
    end = start + len(sample_tgz)

    def pieces():
        yield from (body[i:i + 1] for i in range(0, start + 5))
        yield from (body[i:min(i + 65521, end - 5)] for i in range(start + 5, end - 5, 65521))
        yield from rechunk([body[end - 5:]], [1, 2, 1, 3])

    r = post_transfer(daemon.url, mint(daemon.token, sub=server), pieces(), boundary)
    assert_committed(r, daemon, server, sample_volume, sample_tgz)


# ---------------------------------------------------------------- refused bodies


def _bad_bodies(archive, boundary):
    """name -> (body bytes, Content-Type, expected status)."""
    ok = sha256_hex(archive)
    mp = f"multipart/form-data; boundary={boundary}"
    return {
        "missing-checksum": (multipart_bytes([archive_part(archive)], boundary), mp, 400),
        "checksum-before-archive": (multipart_bytes([field("checksum", ok), archive_part(archive)], boundary), mp, 400),
        "checksum-only": (multipart_bytes([field("checksum", ok)], boundary), mp, 400),
        "wrong-checksum": (multipart_bytes(transfer_parts(archive, sha256_hex(b"something else")), boundary), mp, 422),
        "empty-checksum": (multipart_bytes(transfer_parts(archive, ""), boundary), mp, 422),
        "pelican-wrong-checksum": (multipart_bytes(transfer_parts(archive, "0" * 64, "checksum_archive"), boundary),
                                   mp, 422),
        "not-multipart": (archive, "application/octet-stream", 400),
        "json-body": (b'{"archive": "x"}', "application/json", 400),
        "multipart-without-boundary": (multipart_bytes(transfer_parts(archive), boundary), "multipart/form-data", 400),
        "other-boundary-in-body": (multipart_bytes(transfer_parts(archive), go_boundary()), mp, 400),
        "ends-mid-archive": (multipart_bytes(transfer_parts(archive), boundary)[:len(archive) // 2], mp, 400),
        "no-closing-boundary": (multipart_bytes(transfer_parts(archive), boundary, close=False), mp, 400),
        "empty-body": (b"", mp, 400),
    }


BAD_BODIES = sorted(_bad_bodies(b"x", "b"))


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_bodies_commit_nothing(seeded, other_tgz, other_volume, untouched, case):
    daemon, server = seeded
    boundary = go_boundary()
    body, content_type, status = _bad_bodies(other_tgz, boundary)[case]
    r = post_transfer(daemon.url, mint(daemon.token, sub=server), body, content_type=content_type)
    assert r.status_code == status, (r.status_code, r.text)
    error_of(r)
    untouched(daemon, server)
    # Nothing is left behind: the same server takes a good transfer at once.
    r = push_archive(daemon, server, other_tgz)
    assert r.status_code == 200, r.text
    assert compare_trees(other_volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []


@pytest.mark.parametrize("layout,message", [
    ("upper-case-name", "no 'archive' part in the form (parts seen: ARCHIVE, checksum)"),
    ("checksum-only", "no 'archive' part in the form (parts seen: checksum)"),
    ("checksum-archive-only", "no 'archive' part in the form (parts seen: install_logs, checksum_archive)"),
    ("no-parts", "no 'archive' part in the form (it has no parts)"),
    ("checksum-then-archive", "the checksum part came before the archive part"),
])
def test_a_missing_or_late_archive_part_is_named_precisely(seeded, other_tgz, untouched, layout, message):
    """A form without an `archive` part says so and lists the parts it had (it used to say the
    checksum came before the archive); a checksum that does precede an archive is still that."""
    daemon, server = seeded
    checksum = sha256_hex(other_tgz)
    parts = {
        "upper-case-name": [archive_part(other_tgz, name="ARCHIVE"), field("checksum", checksum)],
        "checksum-only": [field("checksum", checksum)],
        "checksum-archive-only": [field("install_logs", "log"), field("checksum_archive", checksum)],
        "no-parts": [],
        "checksum-then-archive": [field("checksum", checksum), archive_part(other_tgz)],
    }[layout]
    boundary = go_boundary()
    body = multipart_bytes(parts, boundary) if parts else b"--" + boundary.encode() + b"--\r\n"
    r = post_transfer(daemon.url, mint(daemon.token, sub=server), body, boundary)
    assert r.status_code == 400, (r.status_code, r.text)
    assert error_of(r) == message
    untouched(daemon, server)


def _request_head(daemon, token, boundary, framing):
    return (f"POST /api/transfers HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"{framing}\r\n\r\n").encode()


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_connection_dropped_mid_archive(seeded, sample_tgz, other_tgz, other_volume, untouched, framing):
    daemon, server = seeded
    boundary = go_boundary()
    body = multipart_bytes(transfer_parts(sample_tgz), boundary)
    half = body[:len(body) // 2]
    token = mint(daemon.token, sub=server)
    if framing == "chunked":
        head = _request_head(daemon, token, boundary, "Transfer-Encoding: chunked")
        pieces = [chunk_encode(half[i:i + 50000]) for i in range(0, len(half), 50000)]
    else:
        head = _request_head(daemon, token, boundary, f"Content-Length: {len(body)}")
        pieces = [half]
    raw_request(daemon.port, head, pieces)  # sends headers and half the body, then closes
    # The daemon notices the closed connection, discards staging and frees the server.
    assert wait_until(lambda: "connection closed" in daemon.log(), timeout=10), daemon.log()
    assert wait_until(lambda: daemon.staging_entries() == [], timeout=10), (daemon.staging_entries(), daemon.log())
    untouched(daemon, server)
    # No 409 left behind: the server is free again.
    r = wait_until(lambda: (lambda r: r if r.status_code != 409 else None)(push_archive(daemon, server, other_tgz)),
                   timeout=5, interval=0.2)
    assert r is not None, "the server stayed 'already transferring' after the connection dropped"
    assert r.status_code == 200, r.text
    assert compare_trees(other_volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []


def test_second_transfer_for_same_server_gets_409(seeded, other_tgz, other_volume, sample_tgz, sample_volume):
    daemon, server = seeded
    with HeldTransfer(daemon, server, other_tgz) as held:
        r = push_archive(daemon, server, sample_tgz)
        assert r.status_code == 409, r.text
        error_of(r)
        assert compare_trees(sample_volume, daemon.volume(server)) == []
        assert len(daemon.staging_entries()) == 1
        # Another server is not blocked by this one.
        other_server = new_server_id()
        r = push_archive(daemon, other_server, sample_tgz)
        assert r.status_code == 200, r.text
        assert compare_trees(sample_volume, daemon.volume(other_server)) == []
        held.release()
    assert not isinstance(held.result, Exception), held.result
    assert held.result.status_code == 200, held.result.text
    assert compare_trees(other_volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []


def cancel_incoming(daemon, server, token=None):
    token = daemon.token if token is None else token
    return requests.delete(f"{daemon.url}/api/transfers/{server}", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)


def test_cancel_incoming_transfer_commits_nothing(seeded, other_tgz, untouched):
    daemon, server = seeded
    r = cancel_incoming(daemon, server)
    assert r.status_code == 409, r.text  # nothing running yet
    error_of(r)
    with HeldTransfer(daemon, server, other_tgz) as held:
        r = cancel_incoming(daemon, server, token="not-the-node-token")
        assert r.status_code in (401, 403), r.text
        r = cancel_incoming(daemon, server)
        assert r.status_code == 202, r.text
        held.release()
    assert not (hasattr(held.result, "status_code") and held.result.status_code == 200), "a cancelled transfer committed"
    assert wait_until(lambda: daemon.staging_entries() == [], timeout=10), daemon.staging_entries()
    untouched(daemon, server)
    assert push_archive(daemon, server, other_tgz).status_code == 200


def test_cancel_frees_the_server_even_if_the_source_stalls(seeded, other_tgz, untouched):
    daemon, server = seeded
    with HeldTransfer(daemon, server, other_tgz):
        assert cancel_incoming(daemon, server).status_code == 202
        freed = wait_until(lambda: daemon.staging_entries() == [], timeout=2)
        retry = push_archive(daemon, server, other_tgz)
        assert freed and retry.status_code == 200, (daemon.staging_entries(), retry.status_code, retry.text)


# ---------------------------------------------------------------- other requests


@pytest.mark.parametrize("method,path,status", [
    ("PUT", "/api/transfers", 405), ("PATCH", "/api/transfers", 405), ("GET", "/nope", 404),
    ("POST", "/api/transfers/a/b", 404),
])
def test_other_routes_answer_json_errors(daemon, method, path, status):
    r = requests.request(method, daemon.url + path, timeout=10)
    assert r.status_code == status, r.text
    error_of(r)
    if status == 405:
        assert "POST" in r.headers.get("Allow", ""), r.headers


# ------------------------------------------------ Transfer-Encoding together with Content-Length


@pytest.mark.parametrize("order", ["te-first", "cl-first"])
@pytest.mark.parametrize("te", ["chunked", "Chunked", "gzip, chunked"])
@pytest.mark.parametrize("cl", ["body", "0", "10"])
def test_transfer_encoding_with_content_length_is_refused(seeded, sample_tgz, untouched, order, te, cl):
    """RFC 9112 §6.3: a request framed both ways (a smuggling attempt) gets a 400 JSON error and the
    connection is closed by the server, whatever the header order and values; nothing is committed."""
    daemon, server = seeded
    boundary = go_boundary()
    body = b"".join(chunk_encode(piece) for piece in
                    multipart_stream(transfer_parts(sample_tgz), boundary)) + b"0\r\n\r\n"
    length = str(len(body)) if cl == "body" else cl
    framing = [f"Transfer-Encoding: {te}", f"Content-Length: {length}"]
    if order == "cl-first":
        framing.reverse()
    head = (f"POST /api/transfers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {mint(daemon.token, sub=server)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n" + "\r\n".join(framing) + "\r\n\r\n").encode()
    port = int(daemon.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            sock.sendall(body)
        except OSError:
            pass  # the server may already have answered and closed
        reply = read_until_closed(sock)  # no shutdown from our side: the server must close
    error = closing_json_refusal(reply, b"HTTP/1.1 400 Bad Request")
    assert "Transfer-Encoding and Content-Length" in error
    untouched(daemon, server)
    assert push_archive(daemon, server, sample_tgz).status_code == 200  # the daemon serves on


# ------------------------------------------------ more than one Content-Length


def closing_json_refusal(reply, status_line):
    """Checks that `reply` is one answer with `status_line`, a JSON body and `Connection: close`;
    returns its error message."""
    line, _, rest = reply.partition(b"\r\n")
    assert line == status_line, reply[:300]
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower() and b"application/json" in headers.lower(), headers
    assert reply.count(b"HTTP/1.1") == 1
    return json.loads(payload)["error"]


def _push_with_lengths(daemon, server, archive, lengths):
    """A push whose head carries one `Content-Length: …` field per item of `lengths` ("body" is the
    real length); returns the raw reply, read until the server closes."""
    boundary = go_boundary()
    body = b"".join(multipart_stream(transfer_parts(archive), boundary))
    fields = "".join(f"Content-Length: {str(len(body)) if v == 'body' else v}\r\n" for v in lengths)
    return _push_raw(daemon, server, boundary, fields, body)


def _push_raw(daemon, server, boundary, fields, body):
    """Sends a push's head with the framing `fields` given, then `body` as is; returns the raw
    reply, read until the server closes."""
    head = (f"POST /api/transfers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {mint(daemon.token, sub=server)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n{fields}Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(head)
        try:
            sock.sendall(body)
        except OSError:
            pass  # the server may already have answered and closed
        return read_until_closed(sock)


@pytest.mark.parametrize("lengths", [["1", "2"], ["2", "1"], ["body", "1"], ["1", "body"], ["body", "body", "7"]])
def test_differing_content_lengths_are_refused(seeded, sample_tgz, other_tgz, untouched, lengths):
    """RFC 9112 §6.3: differing Content-Length fields make the body's end unknowable (libmicrohttpd
    framed it by the first, routes saw the last: a smuggling gap). 400 JSON, connection closed,
    nothing committed, whatever the order."""
    daemon, server = seeded
    reply = _push_with_lengths(daemon, server, other_tgz, lengths)
    error = closing_json_refusal(reply, b"HTTP/1.1 400 Bad Request")
    assert "differing Content-Length" in error
    untouched(daemon, server)
    assert push_archive(daemon, server, sample_tgz).status_code == 200  # the daemon serves on


def test_a_content_length_list_of_differing_values_is_refused(seeded, other_tgz, untouched):
    """`Content-Length: 1, 2` in one field: libmicrohttpd refuses it itself (400, connection
    closed) before any route runs, with its own HTML body, not our JSON; nothing is committed."""
    daemon, server = seeded
    reply = _push_with_lengths(daemon, server, other_tgz, ["1, 2"])
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply[:300]
    assert b"connection: close" in reply.partition(b"\r\n\r\n")[0].lower()
    untouched(daemon, server)


def test_repeated_identical_content_lengths_are_accepted(seeded, other_tgz, other_volume):
    daemon, server = seeded
    reply = _push_with_lengths(daemon, server, other_tgz, ["body", "body"])
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply[:300]
    assert compare_trees(other_volume, daemon.volume(server)) == []


@pytest.mark.parametrize("length", [20_000, 100_000])
def test_a_huge_url_is_not_echoed_whole(daemon, length):
    """A client-chosen path goes into the 404 answer and the log clipped, not 100 KB at a time."""
    path = "/" + "a" * length
    r = requests.get(daemon.url + path, timeout=10)
    assert r.status_code in (404, 414, 431), r.status_code
    assert len(r.content) < 2000, len(r.content)
    if r.status_code == 404:
        assert "no route for GET /aaa" in r.json()["error"] and f"({length + 5} bytes)" in r.json()["error"], r.text
    assert wait_until(lambda: "http " in daemon.log(), 5)
    assert max(len(line) for line in daemon.log().splitlines()) < 2000


@pytest.mark.parametrize("target", ["http://127.0.0.1/api/system", "HTTP://node.example:8080/api/system"])
def test_an_absolute_form_target_is_served(daemon, target):
    """RFC 9112 §3.2.2: a server accepts the absolute form (what a client sends to a proxy)."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {daemon.token}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        reply = read_until_closed(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), reply[:300]
    assert "version" in json.loads(body)


# ------------------------------------------------ transfer codings other than chunked


def _push_with_codings(daemon, server, archive, codings):
    """A chunked push whose head carries one `Transfer-Encoding: …` field per item of `codings`;
    returns the raw reply, read until the server closes."""
    boundary = go_boundary()
    body = b"".join(multipart_stream(transfer_parts(archive), boundary))
    chunked = b"".join(chunk_encode(body[i:i + 8192]) for i in range(0, len(body), 8192)) + b"0\r\n\r\n"
    fields = "".join(f"Transfer-Encoding: {v}\r\n" for v in codings)
    return _push_raw(daemon, server, boundary, fields, chunked)


@pytest.mark.parametrize("codings,named", [
    (["gzip, chunked"], "gzip"), (["GZIP,chunked"], "GZIP"), (["deflate, chunked"], "deflate"),
    (["x-custom;q=1, chunked"], "x-custom"), (["gzip", "chunked"], "gzip"), (["chunked", "chunked"], "chunked, chunked"),
])
def test_transfer_codings_other_than_chunked_are_not_implemented(seeded, other_tgz, untouched, codings, named):
    """RFC 9112 §6.1: a transfer coding the server does not understand gets 501, before the body
    is read (libmicrohttpd read such a body to the close and handed the chunk framing on as
    multipart: 400 "malformed part header line"). JSON, connection closed, nothing committed."""
    daemon, server = seeded
    reply = _push_with_codings(daemon, server, other_tgz, codings)
    error = closing_json_refusal(reply, b"HTTP/1.1 501 Not Implemented")
    assert error == f"transfer coding '{named}' is not supported"
    untouched(daemon, server)


@pytest.mark.parametrize("coding", ["chunked", "CHUNKED", "Chunked"])
def test_a_lone_chunked_coding_in_any_case_is_accepted(seeded, other_tgz, other_volume, coding):
    daemon, server = seeded
    reply = _push_with_codings(daemon, server, other_tgz, [coding])
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply[:300]
    assert compare_trees(other_volume, daemon.volume(server)) == []


def test_chunked_with_trailing_blanks_is_refused_not_misframed(seeded, other_tgz, untouched):
    """libmicrohttpd compares the whole value with `chunked`: with a blank after it, it would read
    the body to the close (and the client would wait for ever). 400 JSON and close instead."""
    daemon, server = seeded
    reply = _push_with_codings(daemon, server, other_tgz, ["chunked "])
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request", reply[:300]
    assert "blanks around 'chunked'" in json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    untouched(daemon, server)
