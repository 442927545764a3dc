"""Errors a user can hit on the command line are one line, not a traceback."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest


def insiders(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c\n1,2,3\n", "unknown column layout"),
        ("", "the file is empty"),
    ],
)
def test_publish_rejects_a_bad_file_in_one_line_before_touching_kafka(tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    done = insiders("publish", str(bad), "--bootstrap", "127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("insiders: error: ") and message in done.stderr


def test_missing_file_is_one_line(tmp_path):
    done = insiders("replay", str(tmp_path / "nope.csv.gz"))
    assert done.returncode == 2
    assert done.stderr.strip().endswith("no such file; pass a .csv or .csv.gz of invoice lines")
    assert "Traceback" not in done.stderr


def test_unreachable_redis_is_one_line():
    done = insiders("export", "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert (
        done.stderr.count("\n") == 1
        and "Redis at redis://127.0.0.1:1/0 did not answer" in done.stderr
    )


def test_an_unreachable_redis_error_does_not_show_its_password():
    done = insiders("export", "--redis-url", "redis://:s3cret@127.0.0.1:1/0")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "redis://:***@127.0.0.1:1/0 did not answer" in done.stderr
    assert "s3cret" not in done.stderr


def test_unreachable_kafka_is_one_line_and_fast(tmp_path):
    done = insiders("consume", "--bootstrap", "127.0.0.1:1", "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode == 2
    assert "did not answer" in done.stderr and "Traceback" not in done.stderr


def test_help_explains_every_command():
    done = insiders("--help")
    assert done.returncode == 0
    for command in ("publish", "consume", "api", "export", "replay"):
        assert command in done.stdout
    assert "INSIDERS_KAFKA_BOOTSTRAP" in done.stdout


def test_port_in_use_is_one_line():
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = insiders("demo", "--port", str(port))
    assert done.returncode == 2
    message = f"port {port} on 127.0.0.1 is in use; stop what holds it or pass --port N"
    assert done.stderr == f"insiders: error: {message}\n"


def test_unreadable_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 this is not gzip data")
    done = insiders("replay", str(broken))
    assert done.returncode == 2
    assert done.stderr.startswith(f"insiders: error: {broken}: cannot read it")
    assert done.stderr.count("\n") == 1


def sample_rows(count: int) -> str:
    import gzip

    from tests.conftest import SAMPLE

    with gzip.open(SAMPLE, "rt") as f:
        return "".join(f.readline() for _ in range(count + 1))


def test_replay_until_stops_at_an_event_time(tmp_path):
    import pandas as pd

    from tests.conftest import SAMPLE

    out = tmp_path / "until.csv"
    done = insiders("replay", str(SAMPLE), "--until", "2011-03-01", "--export", str(out))
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out, parse_dates=["last_purchase_at"])
    lines = pd.read_csv(SAMPLE, parse_dates=["InvoiceDate"], dtype={"CustomerID": str})
    early = lines[lines["InvoiceDate"] <= "2011-03-01"]
    buyers = early[(early["Quantity"] > 0) & early["CustomerID"].notna() & (early["UnitPrice"] > 0)]
    buyers = buyers[buyers["StockCode"].astype(str).str.fullmatch(r"\d{5}[A-Za-z]{0,2}")]
    assert len(frame) == buyers["CustomerID"].nunique()
    assert frame["last_purchase_at"].max() <= pd.Timestamp("2011-03-01")


def test_snapshot_continues_where_it_stopped(tmp_path):
    import pandas as pd

    from tests.conftest import SAMPLE

    snap, first, whole = tmp_path / "state.snapshot", tmp_path / "a.csv", tmp_path / "b.csv"
    done = insiders("replay", str(SAMPLE), "--until", "2011-06-30", "--snapshot", str(snap))
    assert done.returncode == 0 and snap.exists(), done.stderr
    done = insiders("replay", str(SAMPLE), "--snapshot", str(snap), "--export", str(first))
    assert done.returncode == 0, done.stderr
    assert "0 duplicate" in done.stderr and "already applied" in done.stderr
    skipped = int(done.stderr.split(" already applied")[0].rsplit(", ", 1)[1].replace(",", ""))
    assert skipped > 10_000  # the lines up to June were not applied a second time
    done = insiders("replay", str(SAMPLE), "--export", str(whole))
    assert done.returncode == 0, done.stderr
    features = ["customer_id", "revenue", "invoices", "lines", "units", "last_purchase_at"]
    pd.testing.assert_frame_equal(pd.read_csv(first)[features], pd.read_csv(whole)[features])


def test_replay_writes_the_business_report(tmp_path):
    import pandas as pd

    from tests.conftest import SAMPLE

    report, export = tmp_path / "report.md", tmp_path / "out.csv"
    done = insiders("replay", str(SAMPLE), "--report", str(report), "--export", str(export))
    assert done.returncode == 0, done.stderr
    text = report.read_text(encoding="utf-8")
    frame = pd.read_csv(export, dtype={"customer_id": str})
    insiders_only = frame[frame["insider"]]
    share = insiders_only["revenue"].sum() / frame["revenue"].sum()
    assert f"**{len(insiders_only):,} Insiders**" in text
    assert f"of {len(frame):,} customers" in text and f"**{share:.1%}**" in text
    top = insiders_only.nlargest(3, "revenue")["customer_id"]
    assert all(f"| {cid} |" in text for cid in top)
    for heading in ("Entry and exit conditions", "Evidence", "Actions"):
        assert f"## {heading}" in text


def test_unwritable_report_is_one_line(tmp_path):
    from tests.conftest import SAMPLE

    done = insiders("replay", str(SAMPLE), "--report", str(tmp_path / "no" / "r.md"))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("insiders: error: cannot write")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("command", "variable", "value", "says"),
    [
        (("replay", "missing.csv"), "INSIDERS_BLOCK_SIZE", "abc", "valid integer"),
        (("export",), "INSIDERS_CLOCK", "moon", "'event' or 'wall'"),
        (("api",), "INSIDERS_STREAM_POLL", "0", "greater than 0"),
        (("api",), "INSIDERS_API_KEYS_FILE", "/no/such/keys", "does not point to a file"),
        (("replay", "missing.csv"), "INSIDERS_TARGET_SHARE", "1.5", "less than 1"),
    ],
)
def test_bad_setting_is_one_line_naming_variable_and_value(command, variable, value, says):
    import os

    done = insiders(*command, env={**os.environ, variable: value})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"insiders: error: setting {variable}={value!r}: ")
    assert says in lines[0]


def test_a_band_as_wide_as_the_target_share_is_one_line():
    import os

    from tests.conftest import SAMPLE

    env = {**os.environ, "INSIDERS_TARGET_SHARE": "0.01", "INSIDERS_SHARE_BAND": "0.015"}
    done = insiders("replay", str(SAMPLE), env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "insiders: error: INSIDERS_TARGET_SHARE / INSIDERS_SHARE_BAND: target share 0.01 with "
        "band 0.015: want 0 < target < 1 and 0 <= band < target"
    ]


# --- insiders api: protected mode ---------------------------------------------------------


def api_env(**settings: str) -> dict[str, str]:
    """The environment without any API key setting, plus ``settings``."""
    import os

    keys = ("INSIDERS_API_KEYS", "INSIDERS_API_KEYS_FILE", "INSIDERS_ADMIN_KEYS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(keys)}
    # Reads only, from a prefix no one writes: nothing of Redis is touched.
    return {**env, "INSIDERS_REDIS_PREFIX": "test:cli-api-unused:", **settings}


def test_api_on_a_public_address_without_keys_refuses_in_one_line():
    from tests.api.test_serve import free_port

    done = insiders("api", "--host", "0.0.0.0", "--port", str(free_port()), env=api_env())
    assert done.returncode == 2
    assert done.stderr == (
        "insiders: error: refusing to serve 0.0.0.0 without API keys: set INSIDERS_API_KEYS "
        "(or INSIDERS_API_KEYS_FILE), bind 127.0.0.1, or pass --insecure\n"
    )


def test_an_unreadable_keys_file_is_one_line(tmp_path):
    keys = tmp_path / "keys"
    keys.write_bytes(b"\xff\xfe")
    done = insiders("api", "--host", "0.0.0.0", env=api_env(INSIDERS_ADMIN_KEYS_FILE=str(keys)))
    assert done.returncode == 2
    assert done.stderr.startswith(f"insiders: error: cannot read INSIDERS_ADMIN_KEYS_FILE={keys}: ")
    assert done.stderr.count("\n") == 1


@contextlib.contextmanager
def running_api(*args: str, env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`insiders api ARGS` on a free port, once /healthz answers: (loopback URL, process)."""
    from tests.api.test_serve import free_port, get

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "api", *args, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/healthz", time.monotonic() + 30)["status"] == "ok"
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, a clean exit, and what it said on stderr."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    return proc.stderr.read() if proc.stderr else ""


def status_of(url: str, key: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10):
            return 200
    except urllib.error.HTTPError as error:
        return error.code


def test_api_with_insecure_serves_a_public_address_with_a_warning():
    with running_api("--host", "0.0.0.0", "--insecure", env=api_env()) as (base, proc):
        assert status_of(f"{base}/stats") == 200
        stderr = stop(proc)
    assert "serving 0.0.0.0 without API keys (--insecure)" in stderr
    assert "Traceback" not in stderr


def test_api_with_keys_serves_a_public_address_and_asks_for_them(tmp_path):
    secret = tmp_path / "keys"
    secret.write_text("key-from-a-file\n")
    env = api_env(INSIDERS_API_KEYS="key-one,key-two", INSIDERS_API_KEYS_FILE=str(secret))
    with running_api("--host", "0.0.0.0", env=env) as (base, proc):
        assert status_of(f"{base}/stats") == 401
        assert status_of(f"{base}/stats", "key-three") == 401
        for key in ("key-one", "key-two", "key-from-a-file"):
            assert status_of(f"{base}/stats", key) == 200
        stderr = stop(proc)
    assert "key-" not in stderr  # keys are never logged
