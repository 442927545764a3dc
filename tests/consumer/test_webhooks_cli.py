"""`insiders webhooks` and `insiders demo` as a user runs them: the help, a clean stop on
SIGTERM, and the demo's own worker delivering the sample's events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from standardwebhooks import Webhook

from tests.api.test_serve import free_port, get
from tests.conftest import REDIS_URL
from tests.consumer.test_webhooks import Receiver


def insiders(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(process: subprocess.Popen[str], text: str, seconds: float = 60) -> None:
    """Read the process's output until a line holds ``text``."""
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if text in line:
            return
        assert line or process.poll() is None, f"exited {process.returncode} before {text!r}"
    raise AssertionError(f"no {text!r} within {seconds}s")


def test_help_says_what_the_worker_does_and_its_settings():
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "webhooks", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = " ".join(done.stdout.split())
    for said in (
        "Standard Webhooks",
        "at least once, in order",
        "parked",
        "POST /subscriptions/{id}/resume",
        "SIGTERM",
        "INSIDERS_WEBHOOK_RETRY_FOR (86400 s, then parked)",
        "INSIDERS_WEBHOOK_TIMEOUT",
    ):
        assert said in text, said


def test_sigterm_stops_the_worker_cleanly(redis_prefix):
    env = {"INSIDERS_REDIS_URL": REDIS_URL, "INSIDERS_REDIS_PREFIX": redis_prefix}
    worker = insiders("webhooks", env=env)
    try:
        wait_for(worker, "delivering Insider events to 0 subscription(s)")
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
        seconds = time.monotonic() - sent
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0 and seconds < 5, out
    assert "webhook worker stopped" in out


def test_a_redis_that_does_not_answer_is_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "webhooks", "--redis-url", "redis://127.0.0.1:1/0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("insiders: error: Redis at redis://127.0.0.1:1/0 did not answer")
    assert done.stderr.count("\n") == 1


def test_the_demo_delivers_the_sample_s_events_to_a_subscription():
    receiver = Receiver()
    port = free_port()
    demo = insiders("demo", "--port", str(port), env={"INSIDERS_WEBHOOK_POLL": "0.1"})
    try:
        base = f"http://127.0.0.1:{port}"
        get(f"{base}/healthz", time.monotonic() + 120)
        made = httpx.post(f"{base}/subscriptions", json={"url": receiver.url, "start": "oldest"})
        assert made.status_code == 201, made.text
        events = httpx.get(f"{base}/events", params={"limit": 1000}).json()["events"]
        wanted = [e["event_id"] for e in events]
        deadline = time.monotonic() + 30
        while len(receiver.accepted()) < len(wanted) and time.monotonic() < deadline:
            time.sleep(0.1)
        shown = httpx.get(f"{base}/subscriptions/{made.json()['id']}").json()
    finally:
        receiver.close()
        demo.send_signal(signal.SIGTERM)
        out, _ = demo.communicate(timeout=30)
    assert len(wanted) == 54
    assert [e["event_id"] for e in receiver.accepted()] == wanted
    for headers, body, _ in receiver.requests:
        Webhook(made.json()["secret"]).verify(body, headers)
    assert shown["lag"] == 0 and shown["last_delivery"]["event_id"] == wanted[-1]
    assert demo.returncode == 0 and "stopped" in out
