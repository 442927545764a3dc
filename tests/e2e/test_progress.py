"""Redis is the truth of progress, on real Kafka and Redis: where the consumer starts reading."""

from __future__ import annotations

import os
import subprocess
import sys

from kafka import KafkaAdminClient
from kafka.structs import TopicPartition

from consumer.redis_store import RedisFeatureStore
from tests.conftest import SAMPLE
from tests.e2e.kafka_tools import run_cli

SAMPLE_LINES = 31_325


def test_records_removed_by_retention_are_a_gap_refused_without_accept_gap(
    env, kafka_bootstrap, redis_client, redis_prefix
):
    topic = env["INSIDERS_TOPIC"]
    run_cli("publish", str(SAMPLE), env=env)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:  # what retention does to the start of a topic
        admin.delete_records({TopicPartition(topic, 0): 1000})
    finally:
        admin.close()

    refused = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "consume", "--exit-at-end"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if line.startswith("insiders: error")]
    assert len(errors) == 1 and refused.stderr.splitlines()[-1] == errors[0], refused.stderr
    assert f"{topic}[0] starts at offset 1,000, but the state needs offset 0 next" in refused.stderr
    assert "--accept-gap" in refused.stderr
    assert redis_client.hget(f"{redis_prefix}offsets", f"{topic}:0") is None

    accepted = run_cli("consume", "--exit-at-end", "--accept-gap", env=env)
    assert "going on without 1000 record(s)" in accepted.stderr
    lines = SAMPLE_LINES - 1000
    assert f"{lines:,} records: " in accepted.stderr
    stored = RedisFeatureStore(redis_client, redis_prefix).stored_offset(topic, 0)
    assert stored == SAMPLE_LINES - 1


def test_the_consumer_starts_where_redis_left_off_not_where_the_group_did(
    env, redis_client, redis_prefix
):
    """Progress Redis lost is read again, even though the group committed past it."""
    topic = env["INSIDERS_TOPIC"]
    run_cli("publish", str(SAMPLE), env=env)
    run_cli("consume", "--exit-at-end", env=env)  # the group has committed the end
    store = RedisFeatureStore(redis_client, redis_prefix)
    customers = store.customer_count()
    for key in list(redis_client.scan_iter(match=redis_prefix + "*")):
        redis_client.delete(key)  # Redis lost everything; Kafka's group offset did not

    again = run_cli("consume", "--exit-at-end", env=env)
    assert f"{SAMPLE_LINES:,} records: {SAMPLE_LINES:,} applied" in again.stderr
    assert store.customer_count() == customers == 377
    assert store.stored_offset(topic, 0) == SAMPLE_LINES - 1
