"""transferd configuration and lifecycle: a real Wings config.yml, the embedded default, bad
configurations, --help, and stopping on signals (also mid-transfer)."""
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from e2elib import (HeldTransfer, compare_trees, error_lines, error_of, free_port, mint, new_server_id,
                    push_archive, run_cli, wait_until)

NODE_TOKEN = "Xq3bV9mK2pL7sR4tW8yZ1aC5dF6gH0jN3kM9qP2rS5uV8wY1zB4cE7fG0hJ3kL6m"

WINGS_CONFIG = """\
debug: false
app_name: Pterodactyl
uuid: 5f0a3e2c-9b7d-4c1e-8f6a-2d3b4c5e6f70
token_id: Ab12Cd34Ef56Gh78
token: {token}
api:
  host: {host}
  port: {port}
  ssl:
    enabled: false
    cert: /etc/letsencrypt/live/node.example.com/fullchain.pem
    key: /etc/letsencrypt/live/node.example.com/privkey.pem
  disable_remote_download: false
  upload_limit: 250
  trusted_proxies: []
system:
  root_directory: {root}
  log_directory: {root}/logs
  data: {root}/volumes
  archive_directory: {root}/archives
  backup_directory: {root}/backups
  tmp_directory: {root}/tmp
  username: pterodactyl
  timezone: Europe/Berlin
  user:
    rootless:
      enabled: false
      container_uid: 0
      container_gid: 0
    uid: 988
    gid: 988
  disk_check_interval: 150
  activity_send_interval: 60
  activity_send_count: 100
  check_permissions_on_boot: true
  enable_log_rotate: true
  websocket_log_count: 150
  sftp:
    bind_address: 0.0.0.0
    bind_port: 2022
    read_only: false
  crash_detection:
    enabled: true
    detect_clean_exit_as_crash: true
    timeout: 60
  backups:
    write_limit: 0
    compression_level: best_speed
  transfers:
    download_limit: 0
  openat_mode: auto
docker:
  network:
    interface: 172.18.0.1
    dns:
    - 1.1.1.1
    - 1.0.0.1
    name: pterodactyl_nw
    ispn: false
    driver: bridge
    network_mode: pterodactyl_nw
    is_internal: false
    enable_icc: true
    network_mtu: 1500
    interfaces:
      v4:
        subnet: 172.18.0.0/16
        gateway: 172.18.0.1
      v6:
        subnet: fdba:17c8:6c94::/64
        gateway: fdba:17c8:6c94::1011
  domainname: ""
  registries: {{}}
  tmpfs_size: 100
  container_pid_limit: 512
  installer_limits:
    memory: 1024
    cpu: 100
  overhead:
    override: false
    default_multiplier: 1.05
    multipliers: {{}}
  use_performant_inspect: true
  userns_mode: ""
  log_config:
    type: local
    config:
      compress: "false"
      max-file: "1"
      max-size: 5m
      mode: non-blocking
throttles:
  enabled: true
  lines: 2000
  line_reset_interval: 100
remote: {remote}
remote_query:
  timeout: 30
  boot_servers_per_page: 50
allowed_mounts: []
allowed_origins:
- https://panel.example.com
allow_cors_private_network: false
ignore_panel_config_updates: false
{extra}"""


# Loopback only: a port nothing listens on unless a test passes its own panel stub.
CLOSED_PANEL = "http://127.0.0.1:9"


def write_config(path, root, token=NODE_TOKEN, host="0.0.0.0", port=8080, extra="", remote=CLOSED_PANEL):
    path.write_text(WINGS_CONFIG.format(token=token, host=host, port=port, root=root, extra=extra, remote=remote))
    path.chmod(0o600)  # as Wings writes it: the file holds the node token
    return path


def test_wings_config_token_and_data_dir_are_used(daemon_factory, transfer_send, tmp_path, other_volume, panel):
    root = tmp_path / "pterodactyl"
    config = write_config(tmp_path / "config.yml", root, remote=panel.url + "/")
    daemon = daemon_factory(config=config, volumes=root / "volumes", token=NODE_TOKEN)
    assert (root / "volumes").is_dir() and (root / "backups").is_dir()
    # Node-token endpoint: the configured token, nothing else.
    r = requests.get(daemon.url + "/api/system", headers={"Authorization": f"Bearer {NODE_TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert "version" in r.json()
    r = requests.get(daemon.url + "/api/system", headers={"Authorization": "Bearer " + NODE_TOKEN[:-1] + "x"},
                     timeout=10)
    assert r.status_code == 403
    error_of(r)
    r = requests.get(daemon.url + "/api/system", timeout=10)
    assert r.status_code == 401 and r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    # A transfer signed with the configured token lands in system.data.
    server = new_server_id()
    p = run_cli(transfer_send, "push", "--volume", other_volume, "--url", daemon.url, "--secret", NODE_TOKEN,
                "--server", server, "--quiet")
    assert p.returncode == 0, p.stderr
    assert compare_trees(other_volume, root / "volumes" / server) == []
    assert os.listdir(root / "volumes" / ".staging") == []
    # The destination tells the panel (config `remote`) with `Bearer <token_id>.<token>`.
    success = f"/api/remote/servers/{server}/transfer/success"
    assert wait_until(lambda: success in panel.paths(), timeout=10), panel.paths()
    call = next(r for r in panel.requests if r["path"] == success)
    assert call["headers"].get("Authorization") == f"Bearer Ab12Cd34Ef56Gh78.{NODE_TOKEN}"
    # ... and one signed with anything else is refused.
    p = run_cli(transfer_send, "push", "--volume", other_volume, "--url", daemon.url,
                "--secret", "a-different-token-0123456789", "--server", new_server_id(), "--quiet")
    assert p.returncode == 77, p.stderr
    # The embedded default's state directory is not used with a config file.
    assert not (daemon.workdir / "transferd-data").exists()
    assert NODE_TOKEN not in daemon.log() + daemon.stdout()


def test_wings_config_listen_address_from_file(daemon_factory, tmp_path, other_tgz, other_volume):
    root = tmp_path / "node"
    port = free_port()
    config = write_config(tmp_path / "config.yml", root, host="127.0.0.1", port=port)
    daemon = daemon_factory(config=config, volumes=root / "volumes", token=NODE_TOKEN, listen=False)
    assert daemon.port == port
    server = new_server_id()
    r = push_archive(daemon, server, other_tgz)
    assert r.status_code == 200, r.text
    assert compare_trees(other_volume, root / "volumes" / server) == []


def test_wings_config_allow_unscoped_tokens(daemon_factory, tmp_path, other_tgz, other_volume):
    root = tmp_path / "node"
    config = write_config(tmp_path / "config.yml", root, extra="")
    text = config.read_text().replace("  trusted_proxies: []\n", "  trusted_proxies: []\n  allow_unscoped_tokens: true\n")
    config.write_text(text)
    daemon = daemon_factory(config=config, volumes=root / "volumes", token=NODE_TOKEN)
    server = new_server_id()
    r = push_archive(daemon, server, other_tgz, token=mint(NODE_TOKEN, sub=server, scope=None))
    assert r.status_code == 200, r.text
    assert compare_trees(other_volume, root / "volumes" / server) == []
    r = push_archive(daemon, new_server_id(), other_tgz,
                     token=mint(NODE_TOKEN, sub=server, scope=None, server_uuid=server,
                                user_uuid=new_server_id(), permissions=["websocket.connect"]))
    assert r.status_code == 403, r.text


BAD_CONFIGS = {
    "unclosed-flow-sequence": "token: abc\napi:\n  host: [127.0.0.1\n  port: 8080\n",
    "bad-indentation": "token: abc\napi:\n  host: 127.0.0.1\n port: 8080\n",
    "tab-indentation": "token: abc\napi:\n\thost: 127.0.0.1\n",
    "unterminated-quote": "token: \"abc\napi:\n  port: 8080\n",
    "missing-token": "api:\n  host: 127.0.0.1\n  port: 8080\n",
    "port-not-a-number": "token: abc\napi:\n  host: 127.0.0.1\n  port: eighty\n",
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_with_one_clear_line(transferd, tmp_path, case):
    config = tmp_path / "config.yml"
    config.write_text(BAD_CONFIGS[case])
    r = run_cli(transferd, "--config", config, "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode != 0, r.stdout
    lines = error_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("transferd: error: "), r.stderr
    assert str(config) in lines[0], r.stderr
    assert "listening" not in r.stdout


def test_tls_enabled_without_readable_certificate(transferd, tmp_path):
    root = tmp_path / "node"
    config = write_config(tmp_path / "config.yml", root).read_text().replace("    enabled: false", "    enabled: true", 1)
    (tmp_path / "config.yml").write_text(config)
    (tmp_path / "config.yml").chmod(0o600)
    r = run_cli(transferd, "--config", tmp_path / "config.yml", "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode != 0
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("transferd: error: ") and "api.ssl" in lines[0], r.stderr


def test_missing_config_file(transferd, tmp_path):
    missing = tmp_path / "nope.yml"
    r = run_cli(transferd, "--config", missing, "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode != 0
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("transferd: error: ") and str(missing) in lines[0], r.stderr


def test_help_and_version_exit_0(transferd):
    r = run_cli(transferd, "--help", timeout=10)
    assert r.returncode == 0
    assert "usage: transferd" in r.stdout
    r = run_cli(transferd, "--version", timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("transferd ")


@pytest.mark.parametrize("args", [["--bogus"], ["--listen", "localhost"], ["--log-level", "loud"], ["extra"],
                                  ["--idle-timeout", "0"], ["--idle-timeout", "2m"], ["--idle-timeout", "86401"]])
def test_usage_errors_exit_64(transferd, tmp_path, args):
    r = run_cli(transferd, "--state", tmp_path / "state", *args, timeout=10)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert any(line.startswith("transferd: error: ") for line in error_lines(r.stderr)), r.stderr
    assert "listening" not in r.stdout


@pytest.mark.parametrize("flag", ["--data", "--state", "--backups"])
def test_empty_directory_flags_are_refused_and_nothing_lands_in_root(transferd, tmp_path, flag):
    """`--data ""` used to become "/" (staging at "/.staging", volumes at "/<uuid>")."""
    before = set(os.listdir("/"))
    args = [flag, ""] if flag == "--state" else ["--state", tmp_path / "state", flag, ""]
    r = run_cli(transferd, *args, "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert error_lines(r.stderr) == [f"transferd: error: {flag} needs a value (got an empty one) (see 'transferd --help')"], r.stderr
    assert "listening" not in r.stdout
    assert set(os.listdir("/")) == before


@pytest.mark.parametrize("key", ["data", "backup_directory"])
def test_empty_directories_in_config_are_refused(transferd, tmp_path, key):
    config = write_config(tmp_path / "config.yml", tmp_path / "node")
    text = config.read_text()
    assert f"  {key}: " in text
    lines = [f"  {key}: \"\"" if line.startswith(f"  {key}: ") else line for line in text.splitlines()]
    config.write_text("\n".join(lines) + "\n")
    before = set(os.listdir("/"))
    r = run_cli(transferd, "--config", config, "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode != 0 and "listening" not in r.stdout
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and f"system.{key} must be a directory path" in lines[0], r.stderr
    assert set(os.listdir("/")) == before


def test_control_characters_never_split_a_log_line(daemon_factory, tmp_path):
    """A data directory named with a newline and an escape sequence: every stderr line is still one
    whole log event (timestamp first), the characters shown escaped."""
    odd = tmp_path / "vols\n2026-01-01T00:00:00.000Z INFO  forged\x1b[31m"
    d = daemon_factory("--data", odd, name="odd")
    d.stop()
    for line in d.log().splitlines():
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARN |ERROR) ", line), line
        assert "\x1b" not in line
    assert os.path.isdir(odd)
    # The same holds for a one-line error about such a path.
    blocker = tmp_path / "file\nwith newline"
    blocker.write_text("x")
    r = run_cli(d.binary, "--state", tmp_path / "s2", "--data", blocker / "vols", "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode != 0
    last = error_lines(r.stderr)[-1]
    assert last.startswith("transferd: error: ") and "file\\nwith newline/vols" in last, r.stderr


def test_port_in_use_is_a_clear_error(daemon, transferd, tmp_path):
    r = run_cli(transferd, "--state", tmp_path / "second", "--listen", f"127.0.0.1:{daemon.port}", timeout=10)
    assert r.returncode != 0
    lines = error_lines(r.stderr)
    assert lines and lines[-1].startswith("transferd: error: "), r.stderr
    assert daemon.alive()


def test_embedded_default_state(daemon_factory, tmp_path):
    state = tmp_path / "state"
    first = daemon_factory(state=state, name="first")
    token_file = state / "node-token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = first.token
    assert len(token) >= 32
    assert (state / "volumes").is_dir() and (state / "backups").is_dir()
    assert first.stop() == 0
    second = daemon_factory(state=state, name="second")
    assert second.token == token, "the node token must be generated once and kept"
    assert token not in second.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_idle_daemon_with_exit_0(daemon, sig):
    started = time.monotonic()
    assert daemon.stop(sig, timeout=5) == 0, daemon.log()
    assert time.monotonic() - started < 5


def test_sigterm_during_transfer_exits_0_and_commits_nothing(daemon_factory, seeded, sample_volume, sample_tgz,
                                                              other_tgz):
    daemon, server = seeded
    with HeldTransfer(daemon, server, other_tgz) as held:
        started = time.monotonic()
        rc = daemon.stop(signal.SIGTERM, timeout=5)
        elapsed = time.monotonic() - started
        held.release()
    assert rc == 0, f"exit {rc} after {elapsed:.1f}s; log:\n{daemon.log()}"
    assert elapsed < 5
    assert not (hasattr(held.result, "status_code") and held.result.status_code == 200), "an abandoned transfer succeeded"
    assert compare_trees(sample_volume, daemon.volume(server)) == []
    # Restart on the same state: staging leftovers are gone and the server takes a transfer.
    again = daemon_factory(state=daemon.state, name="restarted")
    assert again.staging_entries() == []
    assert compare_trees(sample_volume, again.volume(server)) == []
    r = push_archive(again, server, sample_tgz)
    assert r.status_code == 200, r.text


def test_daemon_raises_its_open_file_limit_to_the_hard_limit(transferd, tmp_path):
    """A service started with systemd's soft limit (1,024, here 256) gets the hard limit: 1,000
    connections and deep trees each hold descriptors."""
    proc = subprocess.Popen(["prlimit", "--nofile=256:8192", str(transferd), "--state", str(tmp_path / "s"),
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = ""
        while "listening on" not in seen:
            line = proc.stdout.readline()
            assert line, seen
            seen += line
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        row = next(l for l in limits.splitlines() if l.startswith("Max open files"))
        assert row.split()[3:5] == ["8192", "8192"], row
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_one_daemon_per_volumes_directory(daemon_factory, transferd, tmp_path):
    """A second transferd on the same volumes directory would remove the first one's transfers in
    flight as 'leftovers': it refuses to start, with one line, and the first keeps serving."""
    first = daemon_factory(state=tmp_path / "shared")
    staging = first.state / "volumes" / ".staging" / "in-flight"
    staging.mkdir()
    r = run_cli(transferd, "--state", tmp_path / "shared", "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode != 0 and "listening" not in r.stdout
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and "another transferd is already using" in lines[0], r.stderr
    assert staging.exists()
    assert first.alive()
    first.stop()
    second = daemon_factory(state=tmp_path / "shared", name="second")  # free again once the first has gone
    assert second.alive() and not staging.exists()


@pytest.mark.parametrize("text, message", [
    ("token: first\n---\ntoken: other\n", "a second document"),
    ("---\ntoken: first\n...\n---\ntoken: other\n", "a second document"),
    ("token: first\ntoken: second\n", "key 'token' appears twice"),
    ("token: t\napi:\n  host: 127.0.0.1\n  port: 1\n  port: 2\n", "key 'port' appears twice"),
])
def test_ambiguous_yaml_is_refused(transferd, tmp_path, text, message):
    """Several documents, or a key given twice: which one was meant is a guess (Wings' parser
    refuses duplicate keys), so the daemon refuses to start instead of picking one silently."""
    config = tmp_path / "config.yml"
    config.write_text(text + f"system:\n  data: {tmp_path / 'vols'}\n" if "---" not in text else text)
    r = run_cli(transferd, "--config", config, "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode != 0 and "listening" not in r.stdout
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "vols").exists()


def test_tls_certificate_and_key_that_do_not_match(transferd, tmp_path):
    for name in ("a", "b"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / f"{name}.key"),
                        "-out", str(tmp_path / f"{name}.crt"), "-days", "2", "-subj", f"/CN={name}"],
                       check=True, capture_output=True, timeout=60)
    config = write_config(tmp_path / "config.yml", tmp_path / "node").read_text().replace("    enabled: false", "    enabled: true", 1)
    config = re.sub(r"cert: .*", f"cert: {tmp_path / 'a.crt'}", config)
    config = re.sub(r"key: .*", f"key: {tmp_path / 'b.key'}", config)
    (tmp_path / "config.yml").write_text(config)
    (tmp_path / "config.yml").chmod(0o600)
    r = run_cli(transferd, "--config", tmp_path / "config.yml", "--listen", "127.0.0.1:0", timeout=10)
    assert r.returncode != 0 and "listening" not in r.stdout
    assert "TLS certificate and key do not match" in error_lines(r.stderr)[-1], r.stderr


def test_sighup_is_logged_and_ignored(daemon_factory):
    """A hangup (a closed terminal, a reflexive `kill -HUP`) does not end the daemon silently."""
    d = daemon_factory()
    os.kill(d.pid, signal.SIGHUP)
    assert wait_until(lambda: "SIGHUP received" in d.log(), 10), d.log()
    assert d.alive()
    assert requests.get(d.url + "/api/system", headers={"Authorization": f"Bearer {d.token}"}, timeout=10).status_code == 200
    assert d.stop() == 0


# ------------------------------------------------ a volume owner the daemon cannot apply


@pytest.fixture
def as_nobody():
    """(argv prefix that runs a command as nobody, a directory nobody owns, (uid, gid)), or a skip."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run transferd as another user")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    # Outside pytest's tmp tree, whose parents nobody cannot enter.
    home = Path(tempfile.mkdtemp(prefix="transferd-nobody-"))
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    # setpriv execs the command (no child of its own): the PID it gets is transferd's.
    argv = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    yield argv, home, (nobody.pw_uid, nobody.pw_gid)
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("how", ["flag", "config"])
def test_a_volume_owner_the_daemon_cannot_apply_refuses_to_start(transferd, as_nobody, how):
    """Not root and no CAP_CHOWN: giving files to 0:0 would fail every transfer after it was
    received in full, so the daemon does not start (one error line, exit 77 EX_NOPERM)."""
    prefix, home, _ = as_nobody
    if how == "flag":
        args = ["--state", str(home / "state"), "--listen", "127.0.0.1:0", "--volume-owner", "0:0"]
    else:
        config = home / "config.yml"
        config.write_text(f"token: {NODE_TOKEN}\napi:\n  host: 127.0.0.1\n  port: 0\nsystem:\n"
                          f"  data: {home / 'data'}\n  backup_directory: {home / 'backups'}\n"
                          "  user:\n    uid: 0\n    gid: 0\n")
        args = ["--config", str(config)]
    r = subprocess.run([*prefix, str(transferd), *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 77, (r.returncode, r.stdout, r.stderr)
    assert "listening" not in r.stdout
    errors = [line for line in error_lines(r.stderr) if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("transferd: error: "), r.stderr
    assert "cannot give files to the volume owner 0:0" in errors[0] and "Operation not permitted" in errors[0], errors
    leftovers = [p for p in home.rglob("*") if p.name.startswith(".owner-probe")]
    assert leftovers == []


def test_a_volume_owner_the_daemon_can_apply_starts(transferd, as_nobody):
    """Its own uid and gid are fine without any privilege."""
    prefix, home, (uid, gid) = as_nobody
    proc = subprocess.Popen([*prefix, str(transferd), "--state", str(home / "state"), "--listen", "127.0.0.1:0",
                             "--volume-owner", f"{uid}:{gid}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, (line, proc.poll())
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("mode,warned", [(0o644, True), (0o640, True), (0o600, False)])
def test_a_config_file_others_can_read_is_warned_about(daemon_factory, tmp_path, mode, warned):
    """config.yml holds the node token: whoever reads it can mint tokens for every server here."""
    root = tmp_path / "node"
    config = write_config(tmp_path / "config.yml", root, host="127.0.0.1", port=0)
    os.chmod(config, mode)
    daemon = daemon_factory(config=config, volumes=root / "volumes", token=NODE_TOKEN)
    warnings = [l for l in daemon.log().splitlines() if "WARN" in l and "config.yml" in l]
    if warned:
        assert len(warnings) == 1 and f"mode {mode:o}" in warnings[0] and "chmod 600" in warnings[0], warnings
    else:
        assert warnings == [], warnings
    assert NODE_TOKEN not in daemon.log()


def test_the_hint_on_a_wildcard_address_is_a_url_another_node_can_use(transferd, tmp_path):
    """Listening on 0.0.0.0 (Wings' default api.host) must not suggest --url http://0.0.0.0:PORT.
    Run in a network namespace of its own, so the wildcard address reaches nothing but its loopback."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip")
    root = tmp_path / "node"
    config = write_config(tmp_path / "config.yml", root, host="0.0.0.0", port=0)
    os.chmod(config, 0o600)
    script = f'ip link set lo up && exec "{transferd}" --config "{config}"'
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "listening on http://0.0.0.0:" in lines[0], lines
    hint = next(l for l in lines if "push a volume here" in l)
    assert "--url http://<this node's address>:" in hint and "0.0.0.0" not in hint, hint


@pytest.mark.parametrize("token,warned", [("x", True), ("s3cret-but-short-0123456789abcd", True), (NODE_TOKEN, False)])
def test_a_short_node_token_is_warned_about(daemon_factory, tmp_path, token, warned):
    """The node token is the HMAC key of every transfer token: a short one can be found offline."""
    root = tmp_path / "node"
    config = write_config(tmp_path / "config.yml", root, token=token, host="127.0.0.1", port=0)
    daemon = daemon_factory(config=config, volumes=root / "volumes", token=token)
    warnings = [l for l in daemon.log().splitlines() if "WARN" in l and "node token is only" in l]
    assert len(warnings) == (1 if warned else 0), daemon.log()
    if warned:
        assert f"only {len(token)} characters" in warnings[0] and token not in warnings[0].split("config.yml")[-1]
