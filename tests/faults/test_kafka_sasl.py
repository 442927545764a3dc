"""Kafka over SASL/PLAIN, on a throwaway broker that demands a login: `insiders publish` and
`insiders consume` log in with the INSIDERS_KAFKA_SASL_* settings; a wrong password stops
`insiders publish` in one line, and no output ever holds the password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from consumer.redis_store import RedisFeatureStore
from tests.conftest import REDIS_URL, SAMPLE
from tests.e2e.kafka_tools import run_cli
from tests.faults.kafka_broker import KafkaBroker

pytestmark = pytest.mark.faults

USER = "insiders"
PASSWORD = "s3cret-f0r-sasl"
SAMPLE_CUSTOMERS = 377


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One broker for the module, with a SASL_PLAINTEXT listener that knows USER."""
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-sasl"), sasl_users={USER: PASSWORD})
    seconds = broker.start()
    print(f"\nSASL broker ready in {seconds:.1f}s (formatting {broker.format_seconds:.1f}s)")
    try:
        yield broker
    finally:
        broker.close()


def sasl_env(broker: KafkaBroker, password: str, **more: str) -> dict[str, str]:
    """The environment of a CLI that logs in on the SASL listener; nothing else of Kafka's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIDERS_KAFKA_")}
    return {
        **env,
        "INSIDERS_KAFKA_BOOTSTRAP": broker.sasl_bootstrap,
        "INSIDERS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "INSIDERS_KAFKA_SASL_MECHANISM": "PLAIN",
        "INSIDERS_KAFKA_SASL_USERNAME": USER,
        "INSIDERS_KAFKA_SASL_PASSWORD": password,
        **more,
    }


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    name = f"faults-sasl:{uuid.uuid4().hex[:10]}:"
    yield name
    keys = list(redis_client.scan_iter(match=name + "*", count=1000))
    if keys:
        redis_client.unlink(*keys)


@pytest.mark.timeout(300)
def test_publish_and_consume_log_in_with_sasl_plain(
    sasl_broker: KafkaBroker, redis_client: redis.Redis, prefix: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    env = sasl_env(
        sasl_broker,
        PASSWORD,
        INSIDERS_TOPIC=f"sasl-invoices-{tag}",
        INSIDERS_EVENTS_TOPIC=f"sasl-events-{tag}",
        INSIDERS_REDIS_URL=REDIS_URL,
        INSIDERS_REDIS_PREFIX=prefix,
    )
    started = time.perf_counter()
    published = run_cli("publish", str(SAMPLE), env=env)
    publish_seconds = time.perf_counter() - started
    assert "published 31,325 lines" in published.stdout
    started = time.perf_counter()
    # -v: even debug logging holds no password (kafka-python's debug lines would).
    consumed = run_cli("-v", "consume", "--exit-at-end", env=env)
    consume_seconds = time.perf_counter() - started
    print(f"publish {publish_seconds:.1f}s, consume {consume_seconds:.1f}s over SASL_PLAINTEXT")
    assert "31,325 records: 31,325 applied" in consumed.stderr, consumed.stderr[-2000:]
    assert RedisFeatureStore(redis_client, prefix).customer_count() == SAMPLE_CUSTOMERS
    for done in (published, consumed):
        assert PASSWORD not in done.stdout + done.stderr
        assert "in the clear" not in done.stderr  # kafka-python's per-connection warning


@pytest.mark.timeout(120)
def test_a_wrong_password_stops_publish_in_one_line_without_it(sasl_broker: KafkaBroker) -> None:
    wrong = "not-" + PASSWORD
    env = sasl_env(sasl_broker, wrong, INSIDERS_TOPIC=f"sasl-refused-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "publish", str(SAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    print(f"wrong password refused in {time.perf_counter() - started:.1f}s")
    assert done.returncode != 0
    refused = (
        f"insiders: error: Kafka at {sasl_broker.sasl_bootstrap} refused the PLAIN login of "
        f"'{USER}' (Authentication failed: Invalid username or password); check "
        "INSIDERS_KAFKA_SASL_USERNAME and INSIDERS_KAFKA_SASL_PASSWORD\n"
    )
    # On a loaded machine the broker's answer can come after the handshake's time limit: the
    # promise is still one line without the password, naming what to check.
    slow = (
        f"insiders: error: Kafka at {sasl_broker.sasl_bootstrap} did not complete the "
        "SASL_PLAINTEXT handshake ("
    )
    assert done.stderr == refused or (
        done.stderr.startswith(slow) and done.stderr.count("\n") == 1
    ), done.stderr
    assert wrong not in done.stdout + done.stderr and PASSWORD not in done.stderr
