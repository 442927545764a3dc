"""Webhooks end to end on the real servers: a subscription made through `insiders api`, events
from a backfill of the sample through real Kafka and Redis, delivered by `insiders webhooks` to
a real HTTP receiver that refuses the first three deliveries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import orjson
from standardwebhooks import Webhook

from consumer.redis_store import RedisFeatureStore
from tests.api.test_serve import free_port, get
from tests.conftest import SAMPLE
from tests.consumer.test_webhooks import Receiver
from tests.e2e.kafka_tools import read_topic, run_cli

ADMIN = "e2e-admin-key-0123456789"


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, float, str]:
    """SIGTERM, then (exit code, seconds to exit, output)."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    return process.returncode, time.monotonic() - sent, out


def test_a_receiver_that_refuses_three_deliveries_gets_every_event_of_a_backfill(
    env, redis_client, redis_prefix, kafka_bootstrap
):
    receiver = Receiver(answer=lambda n: 503 if n <= 3 else 204)
    port = free_port()
    env = {
        **env,
        "INSIDERS_ADMIN_KEYS": ADMIN,
        "INSIDERS_WEBHOOK_BACKOFF": "0.1",
        "INSIDERS_WEBHOOK_BACKOFF_MAX": "0.5",
        "INSIDERS_WEBHOOK_RETRY_FOR": "60",
        "INSIDERS_WEBHOOK_POLL": "0.1",
    }
    api = start("api", "--port", str(port), env=env)
    worker = None
    try:
        base = f"http://127.0.0.1:{port}"
        get(f"{base}/healthz", time.monotonic() + 30)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        made = httpx.post(f"{base}/subscriptions", json={"url": receiver.url}, headers=admin)
        assert made.status_code == 201, made.text
        sub_id, secret = made.json()["id"], made.json()["secret"]
        worker = start("webhooks", env=env)

        run_cli("publish", str(SAMPLE), env=env)
        run_cli("consume", "--exit-at-end", env=env)
        store = RedisFeatureStore(redis_client, redis_prefix)
        stored = store.events(None, 100_000).events
        wanted = {str(e["event_id"]) for e in stored}
        deadline = time.monotonic() + 60
        while not wanted <= {e["event_id"] for e in receiver.accepted()}:
            assert time.monotonic() < deadline, "not every event was delivered within 60 s"
            assert worker.poll() is None, worker.communicate()[0]
            time.sleep(0.2)
        shown = httpx.get(f"{base}/subscriptions/{sub_id}", headers=admin).json()
        code, seconds, log = stop(worker)
    finally:
        receiver.close()
        if worker is not None and worker.poll() is None:
            worker.kill()
        api.send_signal(signal.SIGTERM)
        api.communicate(timeout=30)

    # Every event of the backfill (the topic's too), each at least once.
    on_topic = {
        orjson.loads(m.value)["event_id"]
        for m in read_topic(kafka_bootstrap, env["INSIDERS_EVENTS_TOPIC"])
    }
    assert len(wanted) == 54 and on_topic == wanted
    accepted = receiver.accepted()
    assert {e["event_id"] for e in accepted} == wanted
    # The first three were refused, then sent again: the first event, three times over.
    statuses = [status for _, _, status in receiver.requests]
    assert statuses[:4] == [503, 503, 503, 204]
    first = str(stored[0]["event_id"])
    assert [orjson.loads(body)["event_id"] for _, body, _ in receiver.requests[:4]] == [first] * 4
    # Each request verifies with the library and the secret; webhook-id is the event id.
    for headers, body, _ in receiver.requests:
        event = Webhook(secret).verify(body, headers)
        assert headers["webhook-id"] == event["event_id"]
    # In order per customer: each customer's sequence numbers as first delivered.
    firsts = list(dict.fromkeys(e["event_id"] for e in accepted))
    by_customer: dict[str, list[int]] = {}
    for event_id in firsts:
        customer, _, seq = event_id.rpartition(":")
        by_customer.setdefault(customer, []).append(int(seq))
    assert all(seqs == sorted(seqs) for seqs in by_customer.values())
    assert firsts == [e["event_id"] for e in stored]  # the outbox's order, in fact
    # What its GET showed once all was delivered.
    assert shown["state"] == "active" and shown["lag"] == 0 and shown["attempts"] == 0
    assert shown["last_delivery"]["event_id"] == stored[-1]["event_id"]
    assert shown["last_error"]["status"] == 503 and shown["last_error"]["event_id"] == first
    # The worker said what it did, and stopped cleanly on SIGTERM.
    assert code == 0 and seconds < 5, log
    assert f"delivery of {first} to subscription {sub_id}" in log and "HTTP 503" in log
    assert f"delivered {stored[-1]['event_id']} to subscription {sub_id}" in log
    assert "webhook worker stopped" in log
    print(
        f"\n{len(receiver.requests)} requests for {len(wanted)} events; SIGTERM exit {seconds:.2f}s"
    )
