"""HTTPS from a Wings-style config (`api.ssl.enabled`, `api.ssl.cert`, `api.ssl.key`)."""
import subprocess

import pytest

from e2elib import compare_trees, new_server_id, run_cli

TOKEN = "tls-node-token-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def tls_daemon(daemon_factory, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    config = tmp_path / "config.yml"
    config.write_text(f"""token_id: tls
token: {TOKEN}
api:
  host: 127.0.0.1
  port: 0
  ssl:
    enabled: true
    cert: {cert}
    key: {key}
system:
  data: {tmp_path / 'volumes'}
  backup_directory: {tmp_path / 'backups'}
""")
    started = daemon_factory(config=config, token=TOKEN, volumes=tmp_path / "volumes", listen=False)
    return started, cert


def https_url(daemon):
    return daemon.stdout().split("listening on ", 1)[1].split()[0]


def test_push_over_https_with_the_node_certificate(transfer_send, tls_daemon, sample_volume):
    daemon, cert = tls_daemon
    url = https_url(daemon)
    assert url.startswith("https://127.0.0.1:")
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", str(sample_volume), "--url", url, "--secret", TOKEN,
                "--server", server, "--cacert", str(cert))
    assert r.returncode == 0, r.stderr
    assert compare_trees(sample_volume, daemon.volumes / server) == []


def test_untrusted_certificate_is_a_clear_error(transfer_send, tls_daemon, sample_volume):
    daemon, _ = tls_daemon
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", str(sample_volume), "--url", https_url(daemon), "--secret", TOKEN,
                "--server", server, "--compression", "gzip")
    assert r.returncode == 69, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("transfer-send: error:")]
    assert len(lines) == 1 and "TLS" in lines[0]
    assert not (daemon.volumes / server).exists()


def test_insecure_flag_accepts_a_self_signed_node(transfer_send, tls_daemon, sample_volume):
    daemon, _ = tls_daemon
    server = new_server_id()
    r = run_cli(transfer_send, "push", "--volume", str(sample_volume), "--url", https_url(daemon), "--secret", TOKEN,
                "--server", server, "--insecure")
    assert r.returncode == 0, r.stderr
    assert compare_trees(sample_volume, daemon.volumes / server) == []
