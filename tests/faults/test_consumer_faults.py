"""The consumer under real faults: each ends with the state and the events of a clean run.

The full Online Retail file is published once to the shared broker. The clean run is the
embedded replay of the same file (the parity tests prove it equal to Kafka + Redis). Each
test then breaks something real while `insiders consume` runs as a subprocess: SIGKILL of
the consumer, a Redis killed and restarted (empty, or from its AOF), the broker restarted,
a topic that refuses what is produced. Every test prints its figures.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pandas as pd
import pytest
import redis
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from consumer.cli import build_pipeline
from consumer.export import export_frame
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.redis_store import RedisFeatureStore
from consumer.settings import ConsumerSettings
from tests.conftest import REDIS_URL, SAMPLE, delete_prefix
from tests.consumer.test_redis_store import layout
from tests.e2e.kafka_tools import read_topic, run_cli
from tests.faults.redis_server import RedisServer
from tests.reference import DATA, MISSING_DATA

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(not DATA.exists(), reason=MISSING_DATA),
]

# A short lock TTL keeps each restart after a SIGKILL short; the heartbeat renews at a third.
FAST_RESTART = {"INSIDERS_WRITER_TTL": "4", "INSIDERS_WRITER_WAIT": "15"}


def last_words(log: Path, size: int = 3000) -> str:
    """The end of a consumer's log for a failed assertion, with the start of its traceback:
    kafka-python's own frames alone can fill the end (a CI run showed nothing else)."""
    text = log.read_text()
    start = text.rfind("Traceback (most recent call last)")
    if start < 0 or len(text) - start <= size:
        return text[-size:]
    return text[start : start + size // 2] + "\n[...]\n" + text[-size // 2 :]


@dataclass
class Clean:
    """The clean run of a file: its features and its events as (event_id, canonical JSON)."""

    features: pd.DataFrame
    events: set[tuple[str, bytes]]
    lines: int
    ids: int  # distinct event ids applied


def canonical(event: dict) -> tuple[str, bytes]:
    return str(event["event_id"]), orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def clean_run(path: Path) -> Clean:
    store = MemoryFeatureStore()
    sink = MemoryEventSink()
    pipeline = build_pipeline(store, sink, ConsumerSettings())
    lines = 0
    for block in FileInvoiceSource(path, ConsumerSettings().block_size).blocks():
        pipeline.process(block)
        lines += len(block)
    frame = export_frame(store, store.watermark())
    return Clean(frame, {canonical(e) for e in sink.events}, lines, len(store.seen))


@pytest.fixture(scope="module")
def clean() -> Clean:
    return clean_run(DATA)


@pytest.fixture(scope="module")
def full_topic(kafka_bootstrap: str) -> str:
    """The full file on a topic of the shared broker, published once for the module."""
    topic = f"faults-invoices-{uuid.uuid4().hex[:8]}"
    env = {"INSIDERS_KAFKA_BOOTSTRAP": kafka_bootstrap}
    run_cli("publish", str(DATA), "--topic", topic, env=env)
    return topic


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    name = f"faults:{uuid.uuid4().hex[:10]}:"
    yield name
    delete_prefix(redis_client, name)


def consumer_env(bootstrap: str, redis_url: str, prefix: str, topic: str) -> dict[str, str]:
    return {
        **os.environ,
        **FAST_RESTART,
        "INSIDERS_KAFKA_BOOTSTRAP": bootstrap,
        "INSIDERS_REDIS_URL": redis_url,
        "INSIDERS_REDIS_PREFIX": prefix,
        "INSIDERS_TOPIC": topic,
        "INSIDERS_GROUP": f"g-{prefix}",
        "INSIDERS_EVENTS_TOPIC": f"{topic}.events-{uuid.uuid4().hex[:8]}",
        # Few buckets for the file's ids: they split from 41,000 ids on, so the faults land
        # while the applied ids' buckets grow (see ids_in_step).
        "INSIDERS_SEEN_BUCKETS": "1024",
    }


def start_consumer(env: dict[str, str], *flags: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "consume", *flags],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


def applied_offset(client: redis.Redis, prefix: str, topic: str) -> int:
    value = client.hget(f"{prefix}offsets", f"{topic}:0")
    return -1 if value is None else int(value)


def applied_at_least(
    client: redis.Redis, prefix: str, topic: str, lines: int, proc: subprocess.Popen
) -> int:
    """Wait until the consumer has applied ``lines`` lines; the offset applied then."""
    wait_for(
        lambda: applied_offset(client, prefix, topic) >= lines - 1,
        120,
        f"applying the first {lines:,} lines",
        proc,
    )
    return applied_offset(client, prefix, topic)


def settled(client: redis.Redis, prefix: str, topic: str, last: int) -> bool:
    """Every line applied, segmented, and every event published."""
    if applied_offset(client, prefix, topic) < last or client.zcard(f"{prefix}pending"):
        return False
    stream = client.xrevrange(f"{prefix}events", count=1)
    published = client.get(f"{prefix}events:published")
    return not stream or published == stream[0][0]


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> float:
    started = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the consumer exited ({proc.returncode}) while {what}")
        assert time.monotonic() - started < timeout, f"timed out after {timeout}s: {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def ids_in_step(client: redis.Redis, prefix: str) -> int:
    """The applied ids Redis holds, after checking that the buckets grew from 1,024 and that
    the count the apply script keeps agrees with what the buckets hold."""
    held_in = layout(client, prefix)
    buckets = held_in["n"] + held_in.get("split", 0)
    assert buckets > 1024, "the buckets split during the run"
    pipe = client.pipeline(transaction=False)
    for n in range(buckets):
        pipe.zcard(f"{prefix}seen:{n}")
    held = sum(pipe.execute())
    assert held_in["held"] == held
    return held


def outcome(
    client: redis.Redis, prefix: str, bootstrap: str, events_topic: str
) -> tuple[pd.DataFrame, list[tuple[str, bytes]]]:
    store = RedisFeatureStore(client, prefix)
    frame = export_frame(store, store.watermark())
    on_topic = [canonical(orjson.loads(m.value)) for m in read_topic(bootstrap, events_topic)]
    return frame, on_topic


def assert_same_as_clean(clean: Clean, frame: pd.DataFrame, on_topic: list) -> None:
    pd.testing.assert_frame_equal(frame, clean.features)
    contents: dict[str, set[bytes]] = {}
    for event_id, doc in on_topic:
        contents.setdefault(event_id, set()).add(doc)
    reused = {k: v for k, v in contents.items() if len(v) > 1}
    assert not reused, f"{len(reused)} event ids name two transitions, e.g. {next(iter(reused))}"
    assert set(on_topic) == clean.events


@pytest.mark.parametrize("mode", ["exit-at-end", "live"])
def test_sigkill_five_times(
    mode, clean, full_topic, redis_client, prefix, kafka_bootstrap, tmp_path
):
    env = consumer_env(kafka_bootstrap, REDIS_URL, prefix, full_topic)
    flags = ["--exit-at-end"] if mode == "exit-at-end" else []
    last = clean.lines - 1
    rng = random.Random(f"sigkill-{mode}")
    log = tmp_path / "consumer.log"
    kills: list[int] = []
    started = time.monotonic()
    for _ in range(5):
        dead = redis_client.get(f"{prefix}writer")  # the lock the last one left
        proc = start_consumer(env, *flags, log=log)
        try:
            # Kill it at a random moment after it took the lock: rebuilding, mid-block, ...
            wait_for(
                lambda: redis_client.get(f"{prefix}writer") not in (None, dead),  # noqa: B023
                60,
                "taking the lock",
                proc,
            )
            time.sleep(rng.uniform(0.5, 3.0))
            assert proc.poll() is None, f"the consumer ended before the kill:\n{log.read_text()}"
        finally:
            proc.kill()
            proc.wait()
        kills.append(applied_offset(redis_client, prefix, full_topic))
    proc = start_consumer(env, *flags, log=log)
    try:
        if mode == "exit-at-end":
            assert proc.wait(timeout=600) == 0, last_words(log)
        else:
            wait_for(
                lambda: settled(redis_client, prefix, full_topic, last), 600, "catching up", proc
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0, last_words(log)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - started
    frame, on_topic = outcome(redis_client, prefix, kafka_bootstrap, env["INSIDERS_EVENTS_TOPIC"])
    print(
        f"\nSIGKILL x5 ({mode}): killed at applied offsets {kills}; done in {elapsed:.0f}s; "
        f"{len(frame):,} customers; {len(on_topic):,} events on the topic, "
        f"{len(set(on_topic)):,} distinct, clean run {len(clean.events):,}"
    )
    assert kills == sorted(kills) and kills[-1] < last, "every kill came before the end"
    assert_same_as_clean(clean, frame, on_topic)
    assert ids_in_step(redis_client, prefix) == clean.ids
    assert redis_client.get(f"{prefix}writer") is None  # the clean stop released the lock


@pytest.mark.parametrize("persistence", ["none", "aof"])
def test_redis_killed_mid_stream(persistence, clean, full_topic, kafka_bootstrap, tmp_path):
    server = RedisServer(tmp_path / "redis", appendonly=persistence == "aof").start()
    try:
        client = redis.Redis.from_url(server.url)
        prefix = "insiders:"
        env = consumer_env(kafka_bootstrap, server.url, prefix, full_topic)
        log = tmp_path / "consumer.log"
        proc = start_consumer(env, "--exit-at-end", log=log)
        try:
            at = applied_at_least(client, prefix, full_topic, 150_000, proc)
            server.kill()
            time.sleep(1.0)
            server.restart()
            after = applied_offset(client, prefix, full_topic)  # the consumer may be back on it
            assert proc.wait(timeout=600) == 0, last_words(log)
        finally:
            if proc.poll() is None:
                proc.kill()
        frame, on_topic = outcome(client, prefix, kafka_bootstrap, env["INSIDERS_EVENTS_TOPIC"])
        text = log.read_text()
        print(
            f"\nRedis killed ({persistence}) at applied offset {at:,}; it came back with "
            f"{after + 1:,} lines applied; {len(on_topic):,} events on the topic, "
            f"{len(set(on_topic)):,} distinct, clean run {len(clean.events):,}"
        )
        if persistence == "none":
            assert "holds no state of prefix" in text
        else:
            assert after >= at, "the AOF kept what was applied"
            assert "holds no state of prefix" not in text
        assert "Redis did not answer" in text and "resuming from what Redis holds now" in text
        assert_same_as_clean(clean, frame, on_topic)
        assert ids_in_step(client, prefix) == clean.ids
    finally:
        server.stop()


def test_kafka_broker_restarted_mid_stream(clean, kafka_broker, redis_client, prefix, tmp_path):
    bootstrap = kafka_broker.bootstrap
    topic = "invoices"
    run_cli("publish", str(DATA), "--topic", topic, env={"INSIDERS_KAFKA_BOOTSTRAP": bootstrap})
    env = consumer_env(bootstrap, REDIS_URL, prefix, topic)
    log = tmp_path / "consumer.log"
    proc = start_consumer(env, "--exit-at-end", log=log)
    try:
        at = applied_at_least(redis_client, prefix, topic, 150_000, proc)
        down = time.monotonic()
        kafka_broker.stop()
        kafka_broker.restart()
        downtime = time.monotonic() - down
        assert proc.wait(timeout=600) == 0, last_words(log)
    finally:
        if proc.poll() is None:
            proc.kill()
    frame, on_topic = outcome(redis_client, prefix, bootstrap, env["INSIDERS_EVENTS_TOPIC"])
    print(
        f"\nbroker restarted at applied offset {at:,}, down {downtime:.1f}s; "
        f"{len(on_topic):,} events on the topic, {len(set(on_topic)):,} distinct"
    )
    assert_same_as_clean(clean, frame, on_topic)
    assert ids_in_step(redis_client, prefix) == clean.ids


def set_max_message_bytes(bootstrap: str, topic: str, size: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        config = {"max.message.bytes": str(size)}
        if topic not in existing:
            admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
        else:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=config)])
    finally:
        admin.close()


def test_nothing_is_marked_published_that_the_broker_refused(
    kafka_bootstrap, redis_client, prefix, tmp_path
):
    """The events topic refuses every record (a real broker error); then it takes them."""
    topic = f"faults-sample-{uuid.uuid4().hex[:8]}"
    run_cli(
        "publish", str(SAMPLE), "--topic", topic, env={"INSIDERS_KAFKA_BOOTSTRAP": kafka_bootstrap}
    )
    env = {
        **consumer_env(kafka_bootstrap, REDIS_URL, prefix, topic),
        "INSIDERS_OUTAGE_SECONDS": "3",
    }
    events_topic = env["INSIDERS_EVENTS_TOPIC"]
    set_max_message_bytes(kafka_bootstrap, events_topic, 100)  # every event is larger
    refused = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "consume", "--exit-at-end"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("insiders: error: Kafka at") and "did not acknowledge" in error
    assert "MessageSizeTooLarge" in error
    assert redis_client.get(f"{prefix}events:published") is None, "nothing is marked published"
    assert read_topic(kafka_bootstrap, events_topic) == []
    outbox = redis_client.xlen(f"{prefix}events")
    assert outbox > 0
    print(f"\nrefused: {outbox:,} events kept in the outbox, 0 marked published; {error}")

    set_max_message_bytes(kafka_bootstrap, events_topic, 2 * 1024 * 1024)
    run_cli("consume", "--exit-at-end", env=env)
    store = RedisFeatureStore(redis_client, prefix)
    in_store = [canonical(e) for e in store.events(None, 100_000).events]
    on_topic = [canonical(orjson.loads(m.value)) for m in read_topic(kafka_bootstrap, events_topic)]
    assert on_topic == in_store  # every event, once, in order


def test_publish_stops_in_one_line_when_the_broker_refuses(kafka_bootstrap):
    topic = f"faults-refused-{uuid.uuid4().hex[:8]}"
    set_max_message_bytes(kafka_bootstrap, topic, 100)  # every invoice line is larger
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "publish", str(SAMPLE), "--topic", topic],
        env={
            **os.environ,
            "INSIDERS_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "INSIDERS_OUTAGE_SECONDS": "2",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("insiders: error: Kafka at")
    assert "published" not in done.stdout


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (the SigCgt mask in /proc)."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("SigCgt:"):
            return bool(int(row.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_sigterm_in_any_phase_stops_within_5s_and_releases_the_lock(
    full_topic, kafka_bootstrap, redis_client, prefix, tmp_path
):
    env = consumer_env(kafka_bootstrap, REDIS_URL, prefix, full_topic)
    log = tmp_path / "consumer.log"
    took: dict[str, float] = {}
    for phase, delay in [("start-up", 0.0), ("lock just taken", None), ("mid-stream", 3.0)]:
        proc = start_consumer(env, "--exit-at-end", log=log)
        try:
            # Signals are ours from main's first line: wait for the handler, then the phase.
            wait_for(lambda p=proc: catches_sigterm(p.pid), 30, "installing the handler", proc)
            if delay is None:
                wait_for(lambda: redis_client.exists(f"{prefix}writer"), 60, "locking", proc)
            else:
                time.sleep(delay)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            took[phase] = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code in (0, 130), f"{phase}: exit {code}\n{last_words(log, 2000)}"
        assert took[phase] < 5, f"{phase}: {took[phase]:.1f}s"
        assert redis_client.get(f"{prefix}writer") is None, f"{phase}: the lock was left"
    print("\nSIGTERM to exit: " + ", ".join(f"{k} {v:.2f}s" for k, v in took.items()))
