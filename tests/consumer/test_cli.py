"""Errors a user can hit on the command line are one line, not a traceback."""

from __future__ import annotations

import subprocess
import sys

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
