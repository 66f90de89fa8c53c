"""Fixtures for the end-to-end suite: binaries, daemons (started and stopped by PID), volumes, archives.

Binaries come from $TRANSFER_BIN (`swift build --show-bin-path`). Every daemon runs on
127.0.0.1 with port 0 and its own state directory under the test's tmp_path; every process a
fixture starts is stopped by its PID in the fixture's finalizer.
"""
import http.server
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from e2elib import (FIXTURES, Daemon, compare_trees, gnu_tar_gz, new_server_id, push_archive)

BASE_MTIME = 1717200000  # 2024-06-01, distinct from the sample volume's times


@pytest.fixture(scope="session")
def bin_dir():
    path = os.environ.get("TRANSFER_BIN")
    if not path:
        pytest.fail("TRANSFER_BIN is not set: run with TRANSFER_BIN=$(swift build --show-bin-path)", pytrace=False)
    path = Path(path)
    for name in ("transferd", "transfer-send"):
        if not os.access(path / name, os.X_OK):
            pytest.fail(f"{path / name} is missing or not executable (build first)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def transferd(bin_dir):
    return bin_dir / "transferd"


@pytest.fixture(scope="session")
def transfer_send(bin_dir):
    return bin_dir / "transfer-send"


# ---------------------------------------------------------------- volumes and archives


@pytest.fixture(scope="session")
def sample_volume(tmp_path_factory):
    """fixtures/make_sample_volume.py output: symlinks, empty dirs/files, unicode, modes, mtimes."""
    out = tmp_path_factory.mktemp("sample") / "volume"
    subprocess.run([sys.executable, str(FIXTURES / "make_sample_volume.py"), str(out)], check=True, timeout=60)
    return out


def make_other_volume(out):
    """A small volume unlike the sample one: same top-level names with other contents and types,
    none of the sample's logs/plugins/world files. Deterministic."""
    rng = random.Random(4242)
    files = {
        "server.properties": (b"server-port=25566\nmotd=Other\n", 0o640),
        "eula.txt": (b"eula=false\n", 0o600),
        "world/other-level.dat": (rng.randbytes(12000), 0o644),
        "bin/run.sh": (b"#!/bin/sh\necho other\n", 0o755),
        "config/empty.cfg": (b"", 0o644),
        "config/\u00e9t\u00e9 \u2603.yml": ("neige: oui\n".encode(), 0o444),
    }
    dirs = {"world": 0o750, "bin": 0o755, "config": 0o700, "cache/empty": 0o755, "cache": 0o755}
    out.mkdir()
    for rel, (data, mode) in files.items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, mode)
    (out / "cache" / "empty").mkdir(parents=True)
    os.symlink("config", out / "cfg")
    os.symlink("bin/run.sh", out / "start")
    entries = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    for i, rel in enumerate(entries):
        p = out / rel
        if not p.is_dir() or p.is_symlink():
            os.utime(p, (BASE_MTIME + i * 777,) * 2, follow_symlinks=False)
    for rel in sorted(dirs, key=lambda r: -r.count("/")):
        os.chmod(out / rel, dirs[rel])
        os.utime(out / rel, (BASE_MTIME + 99 * 777 + len(rel),) * 2)
    os.chmod(out, 0o755)
    return out


@pytest.fixture(scope="session")
def other_volume(tmp_path_factory):
    return make_other_volume(tmp_path_factory.mktemp("other") / "volume")


@pytest.fixture(scope="session")
def sample_tgz(sample_volume, tmp_path_factory):
    """GNU tar -czf of the sample volume, as bytes."""
    return gnu_tar_gz(sample_volume, tmp_path_factory.mktemp("tgz") / "sample.tar.gz").read_bytes()


@pytest.fixture(scope="session")
def other_tgz(other_volume, tmp_path_factory):
    return gnu_tar_gz(other_volume, tmp_path_factory.mktemp("tgz") / "other.tar.gz").read_bytes()


# ---------------------------------------------------------------- daemons


@pytest.fixture
def daemon_factory(transferd, tmp_path):
    """start(*args, state=..., config=...) -> a running Daemon; all are stopped (by PID) at teardown,
    and any that does not exit 0 on SIGTERM, or died of a signal during the test, fails the test."""
    started = []

    def start(*args, state=None, config=None, name=None, volumes=None, token=None, listen=True):
        name = name or f"daemon{len(started)}"
        workdir = tmp_path / name
        argv = []
        if config is not None:
            argv += ["--config", str(config)]
        else:
            state = Path(state) if state else workdir / "state"
            argv += ["--state", str(state)]
        argv += (["--listen", "127.0.0.1:0"] if listen else []) + [str(a) for a in args]
        d = Daemon(transferd, workdir, argv, state=state, token=token)
        started.append(d)
        return d.start(volumes=volumes)

    yield start
    failures = []
    for d in started:
        if d.alive():
            rc = d.stop()
            if rc != 0:
                failures.append(f"transferd pid {d.pid} exited {rc} on SIGTERM; log:\n{d.log()[-2000:]}")
        elif not d.stopped_by_test and d.proc is not None and d.proc.returncode < 0:
            # Died of a signal nobody sent it through stop(): a crash (SIGSEGV, SIGABRT from malloc).
            failures.append(f"transferd pid {d.pid} crashed during the test (signal {-d.proc.returncode}); "
                            f"log:\n{d.log()[-2000:]}")
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


@pytest.fixture
def seeded(daemon, sample_tgz, sample_volume):
    """A daemon that already holds the sample volume for one server: (daemon, server)."""
    server = new_server_id()
    r = push_archive(daemon, server, sample_tgz)
    assert r.status_code == 200, r.text
    assert compare_trees(sample_volume, daemon.volume(server)) == []
    return daemon, server


def assert_untouched(daemon, server, sample_volume):
    """The server's volume is still exactly the sample volume and staging is empty."""
    assert compare_trees(sample_volume, daemon.volume(server)) == []
    assert daemon.staging_entries() == []


@pytest.fixture
def untouched(sample_volume):
    return lambda daemon, server: assert_untouched(daemon, server, sample_volume)


class PanelStub:
    """A panel's remote API on 127.0.0.1 that records every request (for transfer callbacks)."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with stub.lock:
                    stub.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                reply = json.dumps({}).encode()
                self.send_response(204 if not reply else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def paths(self):
        with self.lock:
            return [r["path"] for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def panel():
    stub = PanelStub()
    yield stub
    stub.close()
