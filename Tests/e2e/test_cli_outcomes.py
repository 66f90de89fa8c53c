"""What transfer-send tells a script and an operator, item by item:
- exit statuses: "not found" is 66 and "already exists" 73, apart from "busy, retry" (75);
- --ttl needs a unit;
- options that would silently override each other are usage errors;
- a file named twice is uploaded once;
- a node token can come from any readable file (stdin, a pipe, a FIFO);
- URL credentials are never printed;
- stdout that cannot be written is a failure (74);
- with --json every outcome, a failure too, is one JSON object on stdout.
"""
import json
import os
import shutil
import subprocess

import jwt
import pytest

from e2elib import REPO, HeldTransfer, free_port, new_server_id, run_cli
from http_helpers import place_volume
from test_push import EarlyAnswer

SECRET = "cli-outcomes-node-token-0123456789abcdefghijklmnopqrstuvwxyz"
SERVER = "11111111-2222-3333-4444-555555555555"


def error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("transfer-send: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def json_outcome(result):
    """stdout holds exactly one JSON object (one line)."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


# ---------------------------------------------------------------- 1. --json: every outcome is an object


def push_failures(daemon, sample_volume, tmp_path):
    """Failing push command lines (without --json) and the status each must give."""
    secret = daemon.state / "node-token"
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-node-token\n")
    server = new_server_id()
    base = ["push", "--volume", sample_volume, "--server", server, "--quiet"]
    return {
        "usage-unknown-option": (base + ["--url", daemon.url, "--secret-file", secret, "--bogus"], 64),
        "usage-conflict": (base + ["--url", daemon.url, "--secret-file", secret, "--token", "a.b.c"], 64),
        "volume-missing": (["push", "--volume", tmp_path / "nope", "--url", daemon.url, "--secret-file", secret,
                            "--server", server], 66),
        "unreachable": (base + ["--url", f"http://127.0.0.1:{free_port()}", "--secret-file", secret,
                                "--compression", "gzip"], 69),
        "token-refused": (base + ["--url", daemon.url, "--secret-file", wrong], 77),
    }


@pytest.mark.parametrize("case", ["usage-unknown-option", "usage-conflict", "volume-missing", "unreachable",
                                  "token-refused"])
def test_push_json_failure_is_one_object_on_stdout(daemon, transfer_send, sample_volume, tmp_path, case):
    argv, status = push_failures(daemon, sample_volume, tmp_path)[case]
    plain = run_cli(transfer_send, *argv)
    r = run_cli(transfer_send, *argv, "--json")
    assert plain.returncode == status and r.returncode == status, (plain.returncode, r.returncode, r.stderr)
    line = error_line(r)
    assert line == error_line(plain)
    outcome = json_outcome(r)
    assert outcome["ok"] is False and outcome["success"] is False and outcome["command"] == "push", outcome
    assert outcome["exit_status"] == status
    assert line.startswith("transfer-send: error: " + outcome["error"]), (line, outcome)
    if case in ("unreachable", "token-refused"):
        # What was known by then comes along.
        assert outcome["url"].endswith("/api/transfers") and outcome["server"] == argv[argv.index("--server") + 1]
    if case == "token-refused":
        assert outcome["http_status"] in (401, 403), outcome


@pytest.mark.parametrize("status, expected", [(404, 66), (409, 75), (500, 74)])
def test_push_json_failure_carries_the_nodes_status(transfer_send, sample_volume, status, expected):
    node = EarlyAnswer(status, close=True, message="nope")
    try:
        r = run_cli(transfer_send, "push", "--volume", sample_volume, "--url", node.url, "--secret", "s",
                    "--server", new_server_id(), "--compression", "gzip", "--json")
    finally:
        node.stop()
    assert r.returncode == expected, (r.returncode, r.stderr)
    outcome = json_outcome(r)
    assert outcome["http_status"] == status and outcome["exit_status"] == expected and outcome["compression"] == "gzip"
    assert "nope" in outcome["error"] and "nope" in error_line(r)


def test_push_json_success_says_ok(daemon, transfer_send, sample_volume):
    url = daemon.url.replace("http://", "http://operator:hunter2@", 1)
    r = run_cli(transfer_send, "push", "--volume", sample_volume, "--url", url, "--secret-file",
                daemon.state / "node-token", "--server", new_server_id(), "--json")
    assert r.returncode == 0, r.stderr
    outcome = json_outcome(r)
    assert outcome["ok"] is True and outcome["success"] is True
    assert outcome["url"].startswith("http://***@127.0.0.1:") and outcome["url"].endswith("/api/transfers"), outcome


@pytest.mark.parametrize("missing, args, status", [(True, [], 74), (False, ["--parallel", "0"], 64)])
def test_evacuate_json_failure_is_one_object_on_stdout(daemon, transfer_send, tmp_path, missing, args, status):
    data = tmp_path / "volumes"
    if not missing:
        data.mkdir()
    argv = ["evacuate", "--data", data, "--url", daemon.url, "--secret-file", daemon.state / "node-token", *args]
    r = run_cli(transfer_send, *argv, "--json")
    assert r.returncode == status, r.stderr
    outcome = json_outcome(r)
    assert outcome["ok"] is False and outcome["command"] == "evacuate" and outcome["exit_status"] == status
    assert outcome["error"] in error_line(r)


def test_bench_json_file_gets_the_failure(transfer_send, sample_volume, tmp_path):
    """bench's --json names a file: a run that fails leaves the failure there, not nothing (or an
    earlier run's figures)."""
    out = tmp_path / "bench.json"
    out.write_text('{"stale": true}')
    secret = tmp_path / "token"
    secret.write_text(SECRET)
    r = run_cli(transfer_send, "bench", "--volume", sample_volume, "--url", f"http://127.0.0.1:{free_port()}",
                "--secret-file", secret, "--modes", "gzip", "--runs", "1", "--no-warmup", "--no-baselines",
                "--work", tmp_path / "work", "--json", out, timeout=120)
    assert r.returncode == 69, (r.returncode, r.stderr)
    outcome = json.loads(out.read_text())
    assert outcome["ok"] is False and outcome["exit_status"] == 69 and outcome["error"] in error_line(r), outcome


# ---------------------------------------------------------------- 2. --secret-file: any readable file


def token_with(transfer_send, how, tmp_path, secret=SECRET):
    """`transfer-send token` with the secret handed over `how`."""
    args = ["--scope", "transfer", "--server", SERVER]
    if how == "regular":
        f = tmp_path / "secret"
        f.write_text(secret + "\n")
        return run_cli(transfer_send, "token", "--secret-file", f, *args)
    if how == "stdin":
        return run_cli(transfer_send, "token", "--secret-file", "/dev/stdin", *args, input=secret + "\n")
    if how == "process-substitution":
        script = f'exec "$0" token --secret-file <(printf "%s\\n" "$1") {" ".join(args)}'
        return subprocess.run(["bash", "-c", script, str(transfer_send), secret], capture_output=True, text=True,
                              timeout=30)
    if how == "fifo":
        fifo = tmp_path / "secret.fifo"
        os.mkfifo(fifo)
        proc = subprocess.Popen([str(transfer_send), "token", "--secret-file", str(fifo), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with open(fifo, "w") as w:  # blocks until the CLI opened it
                w.write(secret + "\n")
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["regular", "stdin", "process-substitution", "fifo"])
def test_secret_file_may_be_any_readable_file(transfer_send, tmp_path, how):
    r = token_with(transfer_send, how, tmp_path)
    assert r.returncode == 0, (r.returncode, r.stderr)
    claims = jwt.decode(r.stdout.strip(), SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["sub"] == SERVER


def test_a_secret_file_over_64_kib_is_refused(transfer_send, tmp_path):
    r = token_with(transfer_send, "stdin", tmp_path, secret="x" * (64 * 1024 + 1))
    assert r.returncode == 65, r.stderr
    assert "more than 64 KiB" in error_line(r) and r.stdout == ""
    assert token_with(transfer_send, "stdin", tmp_path, secret="x" * (64 * 1024 - 1)).returncode == 0


@pytest.mark.parametrize("command", ["push", "download", "upload", "evacuate-dry-run"])
def test_every_command_takes_a_piped_secret(daemon, transfer_send, sample_volume, tmp_path, command):
    server, vol = place_volume(daemon, sample_volume)
    up = tmp_path / "up.txt"
    up.write_text("up")
    data = tmp_path / "volumes"
    data.mkdir()
    argv = {
        "push": ["push", "--volume", sample_volume, "--server", new_server_id(), "--quiet"],
        "download": ["download", "--server", server, "--file", "eula.txt", "--output", tmp_path / "eula.txt", "--quiet"],
        "upload": ["upload", "--server", server, "--quiet", up],
        "evacuate-dry-run": ["evacuate", "--data", data, "--dry-run"],
    }[command]
    r = run_cli(transfer_send, *argv, "--url", daemon.url, "--secret-file", "/dev/stdin",
                input=(daemon.state / "node-token").read_text())
    assert r.returncode == 0, (r.returncode, r.stderr)


def test_bench_reads_a_piped_secret_once_for_every_push(daemon, transfer_send, tmp_path):
    """Each of bench's pushes is a child process: a pipe read by the first would be empty for the next."""
    volume = tmp_path / "small"
    volume.mkdir()
    (volume / "a.txt").write_text("a" * 1000)
    work = tmp_path / "work"
    r = run_cli(transfer_send, "bench", "--volume", volume, "--url", daemon.url, "--secret-file", "/dev/stdin",
                "--modes", "gzip", "--runs", "2", "--no-baselines", "--work", work,
                input=(daemon.state / "node-token").read_text(), timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stderr.count("bench: volume gzip ") == 3, r.stderr  # warm-up and two runs
    assert not (work / "destination-node-token").exists()  # the private copy is gone


# ---------------------------------------------------------------- 3. --ttl needs a unit


@pytest.mark.parametrize("ttl", ["15", "900", "0"])
def test_a_ttl_without_a_unit_is_refused(transfer_send, ttl):
    r = run_cli(transfer_send, "token", "--secret", SECRET, "--scope", "transfer", "--server", SERVER, "--ttl", ttl)
    assert r.returncode == 64, (r.returncode, r.stdout)
    assert error_line(r).startswith("transfer-send: error: --ttl needs a unit: 90s, 15m, 2h, 1d"), r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("ttl, seconds", [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400)])
def test_a_ttl_with_a_unit_still_works(transfer_send, ttl, seconds):
    r = run_cli(transfer_send, "token", "--secret", SECRET, "--scope", "transfer", "--server", SERVER, "--ttl", ttl)
    assert r.returncode == 0, r.stderr
    claims = jwt.decode(r.stdout.strip(), SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["exp"] - claims["iat"] == seconds


def test_help_documents_the_ttl_units(transfer_send):
    r = run_cli(transfer_send, "--help")
    assert "90s, 15m (default), 2h, 1d" in r.stdout and "bare number is refused" in r.stdout


# ---------------------------------------------------------------- 4. options that would silently override each other


def conflicting_lines(daemon, volume, server, tmp_path, other_token):
    secret = daemon.state / "node-token"
    url = daemon.url
    up = tmp_path / "up.txt"
    up.write_text("up")
    cacert = tmp_path / "ca.pem"
    cacert.write_text("x")
    return {
        "push-token-and-secret-file": ["push", "--volume", volume, "--url", url, "--token", other_token,
                                       "--secret-file", secret],
        "push-token-and-secret": ["push", "--volume", volume, "--url", url, "--token", other_token,
                                  "--secret", "s"],
        "push-secret-and-secret-file": ["push", "--volume", volume, "--url", url, "--secret", "s",
                                        "--secret-file", secret, "--server", server],
        "push-insecure-and-cacert": ["push", "--volume", volume, "--url", url, "--secret-file", secret,
                                     "--server", server, "--insecure", "--cacert", cacert],
        "push-url-twice": ["push", "--volume", volume, "--url", f"http://127.0.0.1:{free_port()}",
                           "--url", url, "--secret-file", secret, "--server", server],
        "download-token-and-secret-file": ["download", "--url", url, "--token", other_token, "--secret-file", secret,
                                           "--server", server, "--file", "eula.txt", "--output", tmp_path / "out"],
        "upload-token-and-secret-file": ["upload", "--url", url, "--token", other_token, "--secret-file", secret,
                                         "--server", server, up],
        "upload-token-for-another-server": ["upload", "--url", url, "--token", other_token, "--server", server, up],
        "token-file-for-transfer-scope": ["token", "--secret-file", secret, "--scope", "transfer", "--server", server,
                                          "--file", "/eula.txt"],
        "evacuate-secret-and-secret-file": ["evacuate", "--data", tmp_path, "--url", url, "--secret", "s",
                                            "--secret-file", secret],
    }


@pytest.mark.parametrize("case", ["push-token-and-secret-file", "push-token-and-secret", "push-secret-and-secret-file",
                                  "push-insecure-and-cacert", "push-url-twice", "download-token-and-secret-file",
                                  "upload-token-and-secret-file", "upload-token-for-another-server",
                                  "token-file-for-transfer-scope", "evacuate-secret-and-secret-file"])
def test_conflicting_options_are_usage_errors(daemon, transfer_send, sample_volume, tmp_path, case):
    server, vol = place_volume(daemon, sample_volume)
    # A valid token for another server: were it silently preferred, the command would work on that one.
    other = new_server_id()
    scope = "file-upload" if case.startswith("upload") else "transfer"
    minted = run_cli(transfer_send, "token", "--secret-file", daemon.state / "node-token", "--scope", scope,
                     "--server", other, "--user", new_server_id())
    assert minted.returncode == 0, minted.stderr
    argv = conflicting_lines(daemon, sample_volume, server, tmp_path, minted.stdout.strip())[case]
    before = sorted(os.listdir(daemon.volumes))
    r = run_cli(transfer_send, *argv)
    assert r.returncode == 64, (r.returncode, r.stdout, r.stderr)
    line = error_line(r)
    assert line.endswith("(see 'transfer-send --help')"), line
    assert r.stdout == ""
    assert sorted(os.listdir(daemon.volumes)) == before
    assert not (vol / "up.txt").exists() and not (tmp_path / "out").exists()


def test_secret_and_token_alone_still_work(daemon, transfer_send, sample_volume):
    r = run_cli(transfer_send, "push", "--volume", sample_volume, "--url", daemon.url, "--secret-file",
                daemon.state / "node-token", "--server", new_server_id(), "--quiet",
                "--url", daemon.url)  # the same value twice is no conflict
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- 5. URL credentials are never printed


def with_credentials(url, userinfo="operator:hunter2"):
    return url.replace("http://", f"http://{userinfo}@", 1)


def assert_redacted(result, secrets=("hunter2", "operator")):
    text = result.stdout + result.stderr
    assert not [s for s in secrets if s in text], text
    return text


def test_push_output_hides_url_credentials(daemon, transfer_send, sample_volume):
    url = with_credentials(daemon.url)
    for extra in ([], ["--json"]):
        r = run_cli(transfer_send, "push", "--volume", sample_volume, "--url", url, "--secret-file",
                    daemon.state / "node-token", "--server", new_server_id(), *extra)
        assert r.returncode == 0, r.stderr
        text = assert_redacted(r)
        if not extra:  # the summary names the destination
            assert "http://***@127.0.0.1:" in text, text


@pytest.mark.parametrize("case", ["unreachable", "not-found", "query-string", "not-a-node", "at-sign-in-password"])
def test_errors_hide_url_credentials(daemon, transfer_send, sample_volume, tmp_path, case):
    server, _ = place_volume(daemon, sample_volume)
    secret = daemon.state / "node-token"
    if case == "unreachable":
        argv = ["push", "--volume", sample_volume, "--url", with_credentials(f"http://127.0.0.1:{free_port()}"),
                "--secret-file", secret, "--server", server, "--compression", "gzip"]
    elif case == "not-found":
        argv = ["download", "--url", with_credentials(daemon.url), "--secret-file", secret, "--server", server,
                "--file", "missing.txt", "--output", tmp_path / "m"]
    elif case == "query-string":
        argv = ["push", "--volume", sample_volume, "--url", with_credentials(daemon.url) + "/?x=1", "--secret-file",
                secret, "--server", server]
    elif case == "not-a-node":
        argv = ["evacuate", "--data", tmp_path, "--url", with_credentials(daemon.url) + "/nowhere",
                "--secret-file", secret, "--dry-run", "--json"]
    else:
        # An unescaped "@" in the password: all of the userinfo is hidden, not just what follows the first "@".
        argv = ["push", "--volume", sample_volume, "--url", with_credentials(daemon.url, "operator:hun@ter2"),
                "--secret-file", secret, "--server", server, "--compression", "gzip"]
    r = run_cli(transfer_send, *argv, "--quiet")
    text = assert_redacted(r, ("hunter2", "operator", "hun@", "ter2"))
    if case != "at-sign-in-password":
        assert r.returncode != 0, text
    if case in ("query-string", "not-a-node"):  # the messages that name the URL name it redacted
        assert "http://***@127.0.0.1:" in text, text
    if case == "not-a-node":
        assert json.loads(r.stdout)["destination"]["url"].startswith("http://***@127.0.0.1:")


def test_evacuate_lines_hide_url_credentials(daemon, transfer_send, sample_volume, tmp_path):
    data = tmp_path / "volumes"
    data.mkdir()
    shutil.copytree(sample_volume, data / new_server_id(), symlinks=True)
    url = with_credentials(daemon.url)
    for extra in (["--dry-run"], []):
        r = run_cli(transfer_send, "evacuate", "--data", data, "--url", url, "--secret-file",
                    daemon.state / "node-token", *extra)
        assert r.returncode == 0, r.stderr
        assert "***@127.0.0.1:" in assert_redacted(r)


# ---------------------------------------------------------------- 6. a lost stdout is a failure


def run_to_dev_full(binary, *args, input=None):
    with open("/dev/full", "w") as full:
        return subprocess.run([str(binary), *map(str, args)], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60, input=input, stdin=None if input is not None else subprocess.DEVNULL)


@pytest.mark.parametrize("command", ["token", "help", "version", "push", "push-json", "download", "upload",
                                     "evacuate-dry-run"])
def test_stdout_that_cannot_be_written_exits_74(daemon, transfer_send, sample_volume, tmp_path, command):
    server, vol = place_volume(daemon, sample_volume)
    secret = daemon.state / "node-token"
    up = tmp_path / "up.txt"
    up.write_text("up")
    data = tmp_path / "volumes"
    data.mkdir()
    argv = {
        "token": ["token", "--secret-file", secret, "--scope", "transfer", "--server", server],
        "help": ["--help"],
        "version": ["--version"],
        "push": ["push", "--volume", sample_volume, "--url", daemon.url, "--secret-file", secret,
                 "--server", new_server_id(), "--quiet"],
        "push-json": ["push", "--volume", sample_volume, "--url", daemon.url, "--secret-file", secret,
                      "--server", new_server_id(), "--json"],
        "download": ["download", "--url", daemon.url, "--secret-file", secret, "--server", server, "--file",
                     "eula.txt", "--output", tmp_path / "eula.txt", "--quiet"],
        "upload": ["upload", "--url", daemon.url, "--secret-file", secret, "--server", server, "--quiet", up],
        "evacuate-dry-run": ["evacuate", "--data", data, "--url", daemon.url, "--secret-file", secret, "--dry-run"],
    }[command]
    r = run_to_dev_full(transfer_send, *argv)
    assert r.returncode == 74, (r.returncode, r.stderr)
    assert error_line(r) == "transfer-send: error: cannot write standard output: No space left on device", r.stderr


def test_a_failed_command_keeps_its_status_when_stdout_is_lost_too(transfer_send, sample_volume):
    r = run_to_dev_full(transfer_send, "push", "--volume", sample_volume, "--url", f"http://127.0.0.1:{free_port()}",
                        "--secret", "s", "--server", new_server_id(), "--compression", "gzip", "--json")
    assert r.returncode == 69, r.stderr
    assert "cannot reach the destination" in error_line(r)


# ---------------------------------------------------------------- 7. not found 66, already exists 73, busy 75


def files_command(daemon, secret, server, tmp_path, what):
    if what == "download-missing-file":
        return ["download", "--url", daemon.url, "--secret-file", secret, "--server", server, "--file", "nope.txt",
                "--output", tmp_path / "nope.txt", "--quiet"]
    if what == "download-missing-backup":
        return ["download", "--url", daemon.url, "--secret-file", secret, "--server", server, "--backup",
                new_server_id(), "--output", tmp_path / "b.tar.gz", "--quiet"]
    if what == "download-missing-server":
        return ["download", "--url", daemon.url, "--secret-file", secret, "--server", new_server_id(), "--file",
                "eula.txt", "--output", tmp_path / "e.txt", "--quiet"]
    if what == "upload-missing-local-file":
        return ["upload", "--url", daemon.url, "--secret-file", secret, "--server", server, "--quiet",
                tmp_path / "not-here.txt"]
    raise AssertionError(what)


@pytest.mark.parametrize("what", ["download-missing-file", "download-missing-backup", "download-missing-server",
                                  "upload-missing-local-file"])
def test_not_found_exits_66(daemon, transfer_send, sample_volume, tmp_path, what):
    server, _ = place_volume(daemon, sample_volume)
    r = run_cli(transfer_send, *files_command(daemon, daemon.state / "node-token", server, tmp_path, what))
    assert r.returncode == 66, (r.returncode, r.stderr)
    error_line(r)
    assert not (tmp_path / "nope.txt").exists() and not (tmp_path / "nope.txt.part").exists()


def test_upload_onto_an_existing_directory_exits_73(daemon, transfer_send, sample_volume, tmp_path):
    server, vol = place_volume(daemon, sample_volume)
    (vol / "taken").mkdir()
    f = tmp_path / "taken"
    f.write_text("a file")
    r = run_cli(transfer_send, "upload", "--url", daemon.url, "--secret-file", daemon.state / "node-token",
                "--server", server, "--quiet", f)
    assert r.returncode == 73, (r.returncode, r.stderr)
    assert "already exists" in error_line(r)
    assert (vol / "taken").is_dir()


def test_upload_while_the_server_is_transferring_stays_75(daemon, transfer_send, sample_volume, sample_tgz, tmp_path):
    server, vol = place_volume(daemon, sample_volume)
    f = tmp_path / "late.txt"
    f.write_text("late")
    with HeldTransfer(daemon, server, sample_tgz):
        r = run_cli(transfer_send, "upload", "--url", daemon.url, "--secret-file", daemon.state / "node-token",
                    "--server", server, "--quiet", f)
    assert r.returncode == 75, (r.returncode, r.stderr)
    assert "transferring" in error_line(r)


def test_help_and_readme_list_66_and_73(transfer_send):
    r = run_cli(transfer_send, "--help")
    readme = (REPO / "README.md").read_text()
    for text in (r.stdout, readme):
        assert "66" in text and "not found" in text and "73" in text and "already exists" in text


# ---------------------------------------------------------------- 8. one file named twice


def upload(daemon, transfer_send, server, *files, cwd=None):
    return subprocess.run([str(transfer_send), "upload", "--url", daemon.url, "--secret-file",
                           str(daemon.state / "node-token"), "--server", server, "--quiet", *map(str, files)],
                          capture_output=True, text=True, timeout=60, cwd=cwd, stdin=subprocess.DEVNULL)


def test_a_file_named_twice_is_uploaded_once(daemon, transfer_send, sample_volume, tmp_path):
    server, vol = place_volume(daemon, sample_volume)
    (tmp_path / "a.txt").write_text("aaa")
    (tmp_path / "b.txt").write_text("bb")
    r = upload(daemon, transfer_send, server, "a.txt", "b.txt", "a.txt", "./a.txt", tmp_path / "a.txt", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("uploaded 2 files, 5 B "), r.stdout
    notes = [line for line in r.stderr.splitlines() if line.startswith("transfer-send: note: ")]
    assert len(notes) == 3 and all("named more than once; it is uploaded once" in n for n in notes), r.stderr
    assert (vol / "a.txt").read_text() == "aaa" and (vol / "b.txt").read_text() == "bb"


def test_two_files_with_one_name_are_refused(daemon, transfer_send, sample_volume, tmp_path):
    server, vol = place_volume(daemon, sample_volume)
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "a.txt").write_text(d)
    r = upload(daemon, transfer_send, server, tmp_path / "x" / "a.txt", tmp_path / "y" / "a.txt")
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert "would both be uploaded as 'a.txt'" in error_line(r)
    assert not (vol / "a.txt").exists()


def test_a_symlink_under_its_own_name_is_not_a_repeat(daemon, transfer_send, sample_volume, tmp_path):
    server, vol = place_volume(daemon, sample_volume)
    (tmp_path / "a.txt").write_text("aaa")
    os.symlink("a.txt", tmp_path / "alias.txt")
    r = upload(daemon, transfer_send, server, tmp_path / "a.txt", tmp_path / "alias.txt")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("uploaded 2 files"), r.stdout
    assert (vol / "alias.txt").read_text() == "aaa"
