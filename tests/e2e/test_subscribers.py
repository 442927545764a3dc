"""Marketing automation's two ways to subscribe, on real servers: the Kafka events topic and
the API's server-sent events. A subscriber connected before the consumer starts receives,
live, exactly the events the topic gets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import httpx
import orjson

from tests.api.test_serve import free_port, get
from tests.api.test_stream import frames
from tests.conftest import REDIS_URL, SAMPLE
from tests.e2e.kafka_tools import read_topic, run_cli


def test_sse_subscriber_sees_what_the_events_topic_gets(kafka_bootstrap, redis_prefix):
    tag = uuid.uuid4().hex[:8]
    env = {
        "INSIDERS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "INSIDERS_REDIS_URL": REDIS_URL,
        "INSIDERS_REDIS_PREFIX": redis_prefix,
        "INSIDERS_EVENTS_TOPIC": f"insiders.events-{tag}",
        "INSIDERS_TOPIC": f"invoices-{tag}",
        "INSIDERS_STREAM_POLL": "0.1",
    }
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "api", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    received: list[dict] = []
    connected = threading.Event()

    def subscribe() -> None:
        url = f"http://127.0.0.1:{port}/events/stream"
        with httpx.stream("GET", url, timeout=httpx.Timeout(120.0)) as response:
            connected.set()
            for frame in frames(response):
                if "data" in frame:
                    received.append(orjson.loads(frame["data"]))

    try:
        get(f"http://127.0.0.1:{port}/healthz", time.monotonic() + 30)
        subscriber = threading.Thread(target=subscribe, daemon=True)
        subscriber.start()
        assert connected.wait(10), "the event stream did not answer"
        assert received == []  # nothing has happened yet

        run_cli("publish", str(SAMPLE), env=env)
        run_cli("consume", "--group", "g", "--exit-at-end", env=env)
        published = [
            orjson.loads(m.value) for m in read_topic(kafka_bootstrap, env["INSIDERS_EVENTS_TOPIC"])
        ]
        assert len(published) > 10
        deadline = time.monotonic() + 30
        while len(received) < len(published) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received == published

        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=30) == 0
        subscriber.join(timeout=10)
        assert not subscriber.is_alive(), "the stream did not end when the API stopped"
    finally:
        if api.poll() is None:
            api.kill()
