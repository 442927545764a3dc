"""The webhook worker's metrics, scraped over HTTP and parsed as Prometheus parses them, against
what local receivers counted themselves: deliveries, failures by reason, lag and parking. Then
`insiders webhooks --metrics-port` on the real Redis, as a deployment runs it."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.memory import MemoryFeatureStore
from consumer.redis_store import RedisFeatureStore
from consumer.subscriptions import (
    MemorySubscriptionStore,
    RedisSubscriptionStore,
    Subscription,
)
from consumer.webhook_metrics import WebhookMetrics
from consumer.webhooks import RetryPolicy, WebhookWorker
from tests.api.test_serve import free_port
from tests.conftest import REDIS_URL, REPO
from tests.consumer.test_webhooks import SECRET, STORY, Clock, Receiver, commit
from tests.consumer.test_webhooks_cli import insiders, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample at ``url``, parsed by prometheus_client's own parser."""
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def refusals(receiver: Receiver) -> Counter[str]:
    """What the receiver refused, by status class: its own count."""
    return Counter(f"{status // 100}xx" for _, _, status in receiver.requests if status >= 300)


def test_the_scrape_matches_what_each_receiver_counted():
    # One receiver refuses now and then (a 503, a 404, a 302), one answers too late, and one
    # address has nobody listening; the last subscription is parked after its failures.
    answers = {3: 503, 5: 404, 7: 302}  # each followed by a success: never parked
    flaky = Receiver(answer=lambda n: answers.get(n, 204))
    slow = Receiver(delay=1.0)
    events = MemoryFeatureStore()
    subs = MemorySubscriptionStore(events)
    metrics = WebhookMetrics(subs)
    clock = Clock()
    policy = RetryPolicy(first=1.0, most=1.0, give_up_after=2.5)
    worker = WebhookWorker(
        subs, events, policy, timeout=0.3, clock=clock, rng=random.Random(1), metrics=metrics
    )
    closed = f"http://127.0.0.1:{free_port()}/hook"
    for sub_id, url in (("flaky", flaky.url), ("slow", slow.url), ("closed", closed)):
        subs.add(Subscription(sub_id, url, SECRET), "oldest")
    commit(events, *STORY)
    server = metrics.serve("127.0.0.1:0")
    tries: Counter[str] = Counter()  # attempts at the address nobody listens on, by count
    try:
        for _ in range(8):  # each turn, every due subscription is tried; time moves on 2 s
            for sub in subs.all():
                if worker.due(sub, clock.now):
                    tries[sub.id] += 1
                    worker.deliver(sub.id)
            clock.now += 2.0
        samples = scrape(server.url)
    finally:
        server.close()
        flaky.close()
        slow.close()

    delivered = len(flaky.accepted())
    assert delivered == len(STORY)  # the flaky one got everything in the end
    assert value(samples, "insiders_webhook_deliveries_total", subscription="flaky") == delivered
    for reason, count in refusals(flaky).items():
        got = value(samples, "insiders_webhook_failures_total", subscription="flaky", reason=reason)
        assert got == count, reason
    assert refusals(flaky) == Counter({"5xx": 1, "4xx": 1, "3xx": 1})
    # The slow receiver got each attempt, and the worker gave up on each before its answer.
    slow_got = len(slow.requests)
    assert slow_got >= 2
    assert value(samples, "insiders_webhook_failures_total", subscription="slow", reason="timeout")
    assert (
        value(samples, "insiders_webhook_failures_total", subscription="slow", reason="timeout")
        == slow_got
    )
    assert value(samples, "insiders_webhook_deliveries_total", subscription="slow") == 0
    failed = value(
        samples, "insiders_webhook_failures_total", subscription="closed", reason="connection"
    )
    assert failed == tries["closed"] >= 2
    # Lag: the events the outbox holds past what each receiver accepted.
    assert value(samples, "insiders_webhook_lag", subscription="flaky") == len(STORY) - delivered
    assert value(samples, "insiders_webhook_lag", subscription="slow") == len(STORY)
    assert value(samples, "insiders_webhook_lag", subscription="closed") == len(STORY)
    # Both failing ones failed for longer than give_up_after: parked.
    assert value(samples, "insiders_webhook_subscriptions", state="parked") == 2
    assert value(samples, "insiders_webhook_subscriptions", state="active") == 1
    assert value(samples, "insiders_webhook_store_up") == 1
    attempts = value(samples, "insiders_webhook_attempt_seconds_count")
    assert attempts == len(flaky.requests) + slow_got + tries["closed"]


def test_the_worker_serves_its_metrics_and_they_count_what_the_receiver_got(redis_client):
    """`insiders webhooks --metrics-port`, on the real Redis: a receiver that refuses its
    first three requests, then takes every event."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    store = RedisFeatureStore(redis_client, prefix)
    receiver = Receiver(answer=lambda n: 500 if n <= 3 else 204)
    subs = RedisSubscriptionStore(redis_client, prefix)
    subs.add(Subscription("crm", receiver.url, SECRET), "oldest")
    commit(store, *STORY)  # type: ignore[arg-type]
    port = free_port()
    env = {
        "INSIDERS_REDIS_URL": REDIS_URL,
        "INSIDERS_REDIS_PREFIX": prefix,
        "INSIDERS_WEBHOOK_BACKOFF": "0.1",
        "INSIDERS_WEBHOOK_POLL": "0.1",
        "INSIDERS_WEBHOOK_METRICS_PORT": f"127.0.0.1:{port}",
    }
    worker = insiders("webhooks", env=env)
    try:
        wait_for(worker, "delivering Insider events to 1 subscription(s)")
        deadline = time.monotonic() + 30
        while len(receiver.accepted()) < len(STORY):
            assert time.monotonic() < deadline, receiver.requests
            time.sleep(0.1)
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        receiver.close()
        for key in redis_client.scan_iter(match=prefix + "*"):
            redis_client.delete(key)
    assert worker.returncode == 0, out
    assert value(samples, "insiders_webhook_deliveries_total", subscription="crm") == len(STORY)
    assert refusals(receiver) == Counter({"5xx": 3})
    assert value(samples, "insiders_webhook_failures_total", subscription="crm", reason="5xx") == 3
    assert value(samples, "insiders_webhook_lag", subscription="crm") == 0
    assert value(samples, "insiders_webhook_subscriptions", state="active") == 1
    assert value(samples, "insiders_webhook_subscriptions", state="parked") == 0


def test_a_metrics_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "consumer.cli", "webhooks", "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            env={**os.environ, "INSIDERS_REDIS_URL": REDIS_URL},
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"insiders: error: cannot serve the webhook worker's metrics on 127.0.0.1:{port}"
    )
    assert "INSIDERS_WEBHOOK_METRICS_PORT" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("address", ["localhost:http", "70000"])
def test_a_bad_metrics_address_is_one_line(address):
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "webhooks", "--metrics-port", address],
        capture_output=True,
        text=True,
        env={**os.environ, "INSIDERS_REDIS_URL": REDIS_URL},
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("insiders: error: --metrics-port / INSIDERS_WEBHOOK_METRICS_PORT")


def test_the_grafana_webhooks_row_queries_only_metrics_the_worker_serves():
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    row = next(p for p in dashboard["panels"] if p["title"].startswith("Webhooks"))
    exprs = [t["expr"] for panel in row["panels"] for t in panel["targets"]]
    queried = {name for expr in exprs for name in re.findall(r"\binsiders_\w+", expr)}
    subs = MemorySubscriptionStore(MemoryFeatureStore())
    subs.add(Subscription("s", "http://x", SECRET))
    metrics = WebhookMetrics(subs)
    metrics.attempted("s", 204, None, 0.1)
    metrics.attempted("s", None, TimeoutError(), 0.1)
    served = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert len(row["panels"]) >= 8 and queried, row["panels"]
    assert queried <= served, sorted(queried - served)
    assert all('job=~"$webhooks_job"' in expr for expr in exprs), exprs
    jobs = {v["name"]: v["query"] for v in dashboard["templating"]["list"]}
    assert jobs["webhooks_job"] == "insiders-webhooks"  # the job docs/prometheus.yml names
