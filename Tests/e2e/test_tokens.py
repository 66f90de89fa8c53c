"""Tokens: `transfer-send token` output read by PyJWT, PyJWT tokens read by transferd, and every
refusal leaving the existing volume exactly as it was."""
import time

import jwt
import pytest

from e2elib import (alg_none_token, compare_trees, error_of, go_boundary, mint, multipart_stream,
                    new_server_id, panel_claims, post_transfer, push_archive, run_cli, transfer_parts)

SECRET = "e2e-node-token-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ"
PANEL_CLAIMS = {"iss", "aud", "jti", "iat", "nbf", "exp", "unique_id", "scope"}


def cli_token(transfer_send, secret, *args):
    r = run_cli(transfer_send, "token", "--secret", secret, *args)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token, r.stdout
    return token


def test_cli_transfer_token_decodes_with_pyjwt(transfer_send):
    server = new_server_id()
    secret = SECRET
    before = int(time.time())
    token = cli_token(transfer_send, secret, "--scope", "transfer", "--server", server,
                      "--issuer", "https://panel.example.test", "--audience", "http://node.example.test:8080")
    after = int(time.time())
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience="http://node.example.test:8080",
                        issuer="https://panel.example.test")
    assert PANEL_CLAIMS | {"sub"} <= claims.keys(), claims
    assert claims["sub"] == server
    assert claims["scope"] == "transfer"
    assert isinstance(claims["unique_id"], str) and claims["unique_id"]
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert before <= claims["iat"] <= after
    assert claims["nbf"] == claims["iat"] - 300
    assert claims["exp"] == claims["iat"] + 900
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert header["jti"] == claims["jti"]
    assert header.get("sub") == server
    # A wrong secret must not verify.
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "other-secret-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKL", algorithms=["HS256"], audience="http://node.example.test:8080")


def test_cli_tokens_are_unique_and_honour_ttl(transfer_send):
    server = new_server_id()
    a = jwt.decode(cli_token(transfer_send, SECRET, "--scope", "transfer", "--server", server, "--ttl", "90s"),
                   SECRET, algorithms=["HS256"], options={"verify_aud": False})
    b = jwt.decode(cli_token(transfer_send, SECRET, "--scope", "transfer", "--server", server, "--ttl", "2h"),
                   SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert a["exp"] - a["iat"] == 90
    assert b["exp"] - b["iat"] == 7200
    assert a["jti"] != b["jti"] and a["unique_id"] != b["unique_id"]


@pytest.mark.parametrize("scope,args,expected", [
    ("file-download", ["--file", "logs/latest.log"], {"file_path": "logs/latest.log"}),
    ("backup-download", ["--backup", "0d9c3e0e-6c8b-4a4b-9d6e-1f2a3b4c5d6e"],
     {"backup_uuid": "0d9c3e0e-6c8b-4a4b-9d6e-1f2a3b4c5d6e"}),
    ("file-upload", ["--user", "7e1f1c2a-0b1c-4d2e-8f3a-4b5c6d7e8f90"],
     {"user_uuid": "7e1f1c2a-0b1c-4d2e-8f3a-4b5c6d7e8f90"}),
    ("websocket", ["--user", "7e1f1c2a-0b1c-4d2e-8f3a-4b5c6d7e8f90", "--permissions", "websocket.connect,control.start"],
     {"user_uuid": "7e1f1c2a-0b1c-4d2e-8f3a-4b5c6d7e8f90", "permissions": ["websocket.connect", "control.start"]}),
])
def test_cli_other_scopes(transfer_send, scope, args, expected):
    server = new_server_id()
    token = cli_token(transfer_send, SECRET, "--scope", scope, "--server", server, *args)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["scope"] == scope
    assert claims["server_uuid"] == server
    assert PANEL_CLAIMS <= claims.keys()
    for key, value in expected.items():
        assert claims[key] == value
    assert jwt.get_unverified_header(token)["jti"] == claims["jti"]


def test_cli_no_scope_leaves_scope_out(transfer_send):
    token = cli_token(transfer_send, SECRET, "--scope", "transfer", "--server", new_server_id(), "--no-scope")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert "scope" not in claims and "sub" in claims


# ---------------------------------------------------------------- the daemon's side


def test_pyjwt_token_is_accepted(daemon, other_tgz, other_volume):
    server = new_server_id()
    r = push_archive(daemon, server, other_tgz, token=mint(daemon.token, sub=server, scope="transfer"))
    assert r.status_code == 200, r.text
    assert compare_trees(other_volume, daemon.volume(server)) == []


def test_token_with_several_scopes_is_accepted(daemon, other_tgz, other_volume):
    server = new_server_id()
    r = push_archive(daemon, server, other_tgz, token=mint(daemon.token, sub=server, scope="file-upload transfer"))
    assert r.status_code == 200, r.text
    assert compare_trees(other_volume, daemon.volume(server)) == []


def test_cli_minted_token_is_accepted(daemon, transfer_send, other_tgz, other_volume):
    server = new_server_id()
    token = cli_token(transfer_send, daemon.token, "--scope", "transfer", "--server", server)
    r = push_archive(daemon, server, other_tgz, token=token)
    assert r.status_code == 200, r.text
    assert compare_trees(other_volume, daemon.volume(server)) == []


def _refusals():
    """name -> (function(secret, server) -> Authorization header value or None, expected status)."""
    now = int(time.time())
    bearer = lambda t: f"Bearer {t}"  # noqa: E731
    return {
        "bad-signature": (lambda s, u: bearer(mint("some-other-node-token-0123456789abcdefghijklmnopqrstuvwxyz", sub=u)), 403),
        "expired": (lambda s, u: bearer(mint(s, sub=u, ttl=-3600)), 403),
        "alg-none": (lambda s, u: bearer(alg_none_token(panel_claims(sub=u))), 403),
        "alg-none-with-signature": (
            lambda s, u: bearer(alg_none_token(panel_claims(sub=u)) + mint(s, sub=u).split(".")[2]), 403),
        "alg-hs512": (lambda s, u: bearer(mint(s, sub=u, algorithm="HS512")), 403),
        # RFC 7515 §4.1.11: we understand no extensions, so any crit member refuses the token.
        "crit-exp": (lambda s, u: bearer(mint(s, sub=u, header_extra={"crit": ["exp"]})), 403),
        "crit-b64": (lambda s, u: bearer(mint(s, sub=u, header_extra={"crit": ["b64"], "b64": False})), 403),
        "crit-empty": (lambda s, u: bearer(mint(s, sub=u, header_extra={"crit": []})), 403),
        "crit-not-a-list": (lambda s, u: bearer(mint(s, sub=u, header_extra={"crit": "x"})), 403),
        "not-before-in-future": (lambda s, u: bearer(mint(s, sub=u, nbf=now + 3600)), 403),
        "issued-in-future": (lambda s, u: bearer(mint(s, sub=u, iat=now + 3600)), 403),
        "no-scope": (lambda s, u: bearer(mint(s, sub=u, scope=None)), 403),
        "scope-file-upload": (lambda s, u: bearer(mint(s, sub=u, scope="file-upload")), 403),
        "scope-websocket": (lambda s, u: bearer(mint(s, sub=u, scope="websocket", server_uuid=u,
                                                     user_uuid=new_server_id(),
                                                     permissions=["websocket.connect"])), 403),
        "scope-substring": (lambda s, u: bearer(mint(s, sub=u, scope="transfers")), 403),
        "sub-missing": (lambda s, u: bearer(mint(s, sub=None)), 403),
        "sub-not-a-uuid": (lambda s, u: bearer(mint(s, sub="../../etc")), 403),
        "not-a-jwt": (lambda s, u: "Bearer not-a-jwt", 403),
        "missing-authorization": (lambda s, u: None, 401),
        "basic-authorization": (lambda s, u: "Basic dXNlcjpwYXNz", 401),
        "bearer-without-token": (lambda s, u: "Bearer ", 401),
        "raw-token-without-scheme": (lambda s, u: mint(s, sub=u), 401),
    }


REFUSALS = sorted(_refusals())


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_tokens_commit_nothing(seeded, other_tgz, untouched, case):
    daemon, server = seeded
    make, status = _refusals()[case]
    authorization = make(daemon.token, server)
    boundary = go_boundary()
    r = post_transfer(daemon.url, body=multipart_stream(transfer_parts(other_tgz), boundary), boundary=boundary,
                      authorization=authorization)
    assert r.status_code == status, (r.status_code, r.text)
    error_of(r)
    if status == 401:
        assert r.headers.get("WWW-Authenticate", "").split(" ")[0] == "Bearer", r.headers
    untouched(daemon, server)
    # The daemon's log never shows a credential.
    if authorization and len(authorization) > 40:
        assert authorization.split(" ")[-1] not in daemon.log()
    # And the server is not left "transferring": a valid push still works.
    assert push_archive(daemon, server, other_tgz).status_code == 200


def test_unscoped_token_is_accepted_with_allow_unscoped_tokens(daemon_factory, other_tgz, other_volume):
    daemon = daemon_factory("--allow-unscoped-tokens")
    server = new_server_id()
    r = push_archive(daemon, server, other_tgz, token=mint(daemon.token, sub=server, scope=None))
    assert r.status_code == 200, r.text
    assert compare_trees(other_volume, daemon.volume(server)) == []


@pytest.mark.parametrize("foreign", [
    {"server_uuid": "SELF", "user_uuid": "7e1f1c2a-0b1c-4d2e-8f3a-4b5c6d7e8f90", "permissions": ["websocket.connect"]},
    {"user_uuid": "7e1f1c2a-0b1c-4d2e-8f3a-4b5c6d7e8f90"},
    {"file_path": "server.properties"},
    {"backup_uuid": "0d9c3e0e-6c8b-4a4b-9d6e-1f2a3b4c5d6e"},
], ids=["websocket-shaped", "upload-shaped", "download-shaped", "backup-shaped"])
def test_unscoped_foreign_token_is_refused_even_when_allowed(daemon_factory, sample_tgz, sample_volume,
                                                             other_tgz, foreign):
    daemon = daemon_factory("--allow-unscoped-tokens")
    server = new_server_id()
    assert push_archive(daemon, server, sample_tgz).status_code == 200
    claims = {k: (server if v == "SELF" else v) for k, v in foreign.items()}
    r = push_archive(daemon, server, other_tgz, token=mint(daemon.token, sub=server, scope=None, **claims))
    assert r.status_code == 403, r.text
    error_of(r)
    assert compare_trees(sample_volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []


def test_cli_unscoped_websocket_token_is_refused_even_when_allowed(daemon_factory, transfer_send, other_tgz):
    daemon = daemon_factory("--allow-unscoped-tokens")
    server = new_server_id()
    token = cli_token(transfer_send, daemon.token, "--scope", "websocket", "--no-scope", "--server", server,
                      "--user", new_server_id())
    r = push_archive(daemon, server, other_tgz, token=token)
    assert r.status_code == 403, r.text
    error_of(r)
    assert not daemon.volume(server).exists()


@pytest.mark.parametrize("scope", [["file-upload"], 7], ids=["array-file-upload", "number"])
def test_malformed_scope_is_not_unscoped(daemon_factory, sample_tgz, sample_volume, other_tgz, scope):
    daemon = daemon_factory("--allow-unscoped-tokens")
    server = new_server_id()
    assert push_archive(daemon, server, sample_tgz).status_code == 200
    r = push_archive(daemon, server, other_tgz, token=mint(daemon.token, sub=server, scope=scope))
    assert r.status_code == 403, r.text
    assert compare_trees(sample_volume, daemon.volume(server)) == []


@pytest.mark.parametrize("scope", [["transfer"], 7], ids=["array", "number"])
def test_malformed_scope_is_refused_by_default(seeded, other_tgz, untouched, scope):
    daemon, server = seeded
    r = push_archive(daemon, server, other_tgz, token=mint(daemon.token, sub=server, scope=scope))
    assert r.status_code == 403, r.text
    error_of(r)
    untouched(daemon, server)
