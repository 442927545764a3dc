"""`insiders api` serves the store in Redis over HTTP, and stops on SIGTERM, even with an
event-stream subscriber connected."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import orjson

from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from tests.conftest import REDIS_URL, SAMPLE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return orjson.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_api_command_serves_redis(redis_store, redis_prefix):
    pipeline = Pipeline(redis_store, MemoryEventSink())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    port = free_port()
    env = {**os.environ, "INSIDERS_REDIS_URL": REDIS_URL, "INSIDERS_REDIS_PREFIX": redis_prefix}
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health = get(f"{base}/healthz", time.monotonic() + 30)
        assert health == {"status": "ok", "store": "redis", "customers": 377}
        stats = get(f"{base}/stats", time.monotonic() + 5)
        assert stats["insiders"] == redis_store.insiders(0, 0)[1]
        with urllib.request.urlopen(f"{base}/events/stream", timeout=10) as subscriber:
            assert subscriber.readline().startswith(b"event: insider.")
            proc.send_signal(signal.SIGTERM)
            # The server ends the stream itself, well before uvicorn's 10 s backstop.
            started = time.monotonic()
            assert proc.wait(timeout=30) == 0
            assert time.monotonic() - started < 5
        output = proc.stdout.read() if proc.stdout else ""
        assert "Traceback" not in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
