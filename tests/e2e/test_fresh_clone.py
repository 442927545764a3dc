"""A new user's first minute: clone, run the README's first command as written, use the API.

No ../shared beside the clone, and the Kafka and Redis settings point at closed ports,
so the demo shows it needs neither.
"""

from __future__ import annotations

import csv
import gzip
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import orjson
import pytest

from tests.conftest import REPO, SAMPLE


def readme_first_command() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```\n(.*?)\n```", text, flags=re.S)
    assert blocks, "README.md has no command block"
    return blocks[0].strip()


def a_sample_customer() -> str:
    with gzip.open(SAMPLE, "rt", newline="") as f:
        for row in csv.DictReader(f):
            if row["CustomerID"] and int(row["Quantity"]) > 0:
                return row["CustomerID"]
    raise AssertionError("the sample has no customer")


class Lines:
    """Reads a process's output on a thread, so waiting for a line can time out."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.queue.put(line)
            self.queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def _read(self, until: float, pattern: str | None) -> str | None:
        """Collect lines until one matches ``pattern``, the output ends, or time is up."""
        while (left := until - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.seen.append(line)
            if pattern is not None and re.search(pattern, line):
                return line
        return None

    def wait_for(self, pattern: str, timeout: float) -> str:
        line = self._read(time.monotonic() + timeout, pattern)
        if line is None:
            raise AssertionError(
                f"no line matching {pattern!r} in {timeout}s:\n{''.join(self.seen)}"
            )
        return line

    def rest(self, timeout: float) -> str:
        self._read(time.monotonic() + timeout, None)
        return "".join(self.seen)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_readme_first_command_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "insiders"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    assert not (tmp_path / "shared").exists()
    command = readme_first_command()
    assert "insiders demo" in command
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSIDERS_", "VIRTUAL_ENV"))}
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if "/.venv/" not in p)
    env.update(
        INSIDERS_KAFKA_BOOTSTRAP="127.0.0.1:1",
        INSIDERS_REDIS_URL="redis://127.0.0.1:1/0",
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = Lines(proc)
        summary = lines.wait_for(r"Insiders \(", timeout=600)
        assert re.search(r"377 customers, \d+ Insiders .* holding \d+\.\d% of revenue", summary)
        lines.wait_for(r"serving the API on http://127\.0\.0\.1:8000", timeout=30)
        customer = a_sample_customer()
        with urllib.request.urlopen(f"http://127.0.0.1:8000/customers/{customer}", timeout=10) as r:
            body = orjson.loads(r.read())
        assert body["customer_id"] == customer and "insider" in body
        # The README promises the dashboard at /dashboard.
        with urllib.request.urlopen("http://127.0.0.1:8000/dashboard", timeout=30) as r:
            page = r.read().decode()
        assert r.status == 200 and "<h1>Insiders</h1>" in page and "of 377 customers" in page
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, lines.rest(5)
        rest = lines.rest(5)
        assert "stopped" in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
