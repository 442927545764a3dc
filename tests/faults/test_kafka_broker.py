"""The throwaway broker of the fault tests keeps its data across a clean restart and a crash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from tests.faults.kafka_broker import KafkaBroker

pytestmark = pytest.mark.faults

TOPIC = "survives"


def produce(bootstrap: str, value: bytes) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        return int(producer.send(TOPIC, key=b"k", value=value).get(timeout=30).offset)
    finally:
        producer.close()


def read_all(bootstrap: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


def create_topic(bootstrap: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


@pytest.mark.timeout(240)
def test_records_survive_a_restart_and_a_crash(tmp_path: Path) -> None:
    with KafkaBroker(tmp_path) as broker:
        first = broker.start()
        create_topic(broker.bootstrap)
        assert produce(broker.bootstrap, b"before restart") == 0

        again = broker.restart()
        assert read_all(broker.bootstrap, 1) == [b"before restart"], broker.log_tail()

        assert produce(broker.bootstrap, b"before crash") == 1
        broker.kill()
        assert not broker.running()
        after_crash = broker.start()
        assert read_all(broker.bootstrap, 2) == [b"before restart", b"before crash"], (
            f"log: {broker.log_path}\n{broker.log_tail()}"
        )
        broker.stop()
        assert not broker.running()
    print(
        f"\nthrowaway broker on {broker.bootstrap}: first start {first:.1f}s "
        f"(format {broker.format_seconds:.1f}s), restart {again:.1f}s, "
        f"start after SIGKILL {after_crash:.1f}s"
    )
