"""Shared fixtures. Tests that say they exercise Kafka or Redis talk to the real servers
that `scripts/services start` runs; when one is down they fail and say how to start it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from consumer.kafka_io import probe
from consumer.memory import MemoryFeatureStore
from consumer.redis_store import RedisFeatureStore
from segmenter.errors import ServiceUnavailable

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "consumer" / "data" / "online_retail_sample.csv.gz"
REDIS_URL = os.environ.get("INSIDERS_REDIS_URL", "redis://127.0.0.1:6379/0")
KAFKA = os.environ.get("INSIDERS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
HOW = "start the services with `scripts/services start`"


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not running ({exc}): {HOW}", pytrace=False)
    return client


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    try:
        probe(KAFKA)
    except ServiceUnavailable as exc:
        pytest.fail(f"Kafka is not running ({exc}): {HOW}", pytrace=False)
    return KAFKA


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for i in range(0, len(keys), 500):
        client.unlink(*keys[i : i + 500])


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own, deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_prefix(redis_client, prefix)


@pytest.fixture
def redis_store(redis_client: redis.Redis, redis_prefix: str) -> RedisFeatureStore:
    return RedisFeatureStore(redis_client, redis_prefix)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> MemoryFeatureStore | RedisFeatureStore:
    """Each contract test runs against both implementations of the feature store."""
    if request.param == "memory":
        return MemoryFeatureStore()
    result: RedisFeatureStore = request.getfixturevalue("redis_store")
    return result


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def sample_events() -> list[dict[str, Any]]:
    """The events a replay of the shipped sample emits, entries and exits (do not change them:
    the tests share them)."""
    from consumer.file_source import FileInvoiceSource
    from consumer.memory import MemoryEventSink
    from consumer.pipeline import Pipeline
    from segmenter.model import SegmentModel

    sink = MemoryEventSink()
    pipeline = Pipeline(MemoryFeatureStore(), sink, SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    events = [dict(e) for e in sink.events]
    assert {e["type"] for e in events} == {"insider.entered", "insider.exited"}
    return events


def run_bench(script: str, args: list[str], kafka_bootstrap: str, timeout: float = 900) -> str:
    """Run ``benches/<script> ARGS`` on the test Kafka and Redis; its standard output, once it
    has exited 0."""
    env = {
        **os.environ,
        "INSIDERS_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "INSIDERS_REDIS_URL": REDIS_URL,
    }
    done = subprocess.run(
        [sys.executable, f"benches/{script}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
