"""KafkaInvoiceSource on a real broker: idle ticks let the sweep run, and a poll that fails
while the broker is away is an empty one."""

from __future__ import annotations

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaConnectionError, UnsupportedVersionError

from consumer.kafka_io import KEEP_FOREVER, KafkaInvoiceSource, ensure_topics
from tests.conftest import unique


def test_an_idle_live_stream_yields_empty_ticks(kafka_bootstrap):
    topic = unique("idle")
    ensure_topics(kafka_bootstrap, [topic])
    source = KafkaInvoiceSource(kafka_bootstrap, topic, unique("g"), poll_timeout_ms=200)
    try:
        blocks = source.blocks()
        assert next(blocks) == []
        source.commit([])  # nothing to acknowledge, and no error
        source.stopping = True
        assert list(blocks) == []
    finally:
        source.close()


def test_the_topics_the_service_writes_keep_every_record(kafka_bootstrap):
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    kept, plain = unique("events"), unique("input")
    ensure_topics(kafka_bootstrap, [kept], configs=KEEP_FOREVER)
    ensure_topics(kafka_bootstrap, [plain])
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        answer = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in (kept, plain)]
        )
    finally:
        admin.close()
    # The settings a topic overrides, by name (kafka-python leaves out the broker's defaults).
    retention = {
        name: config.get("retention.ms", {}).get("value")
        for name, config in answer["topic"].items()
    }
    assert retention[kept] == "-1"
    assert retention[plain] in (None, "604800000")  # the broker's default: a week


def flaky(source: KafkaInvoiceSource, method: str, error: Exception, times: int) -> list[int]:
    """Make the first ``times`` calls of ``source.consumer.<method>`` raise ``error``; the
    count of calls made."""
    real, calls = getattr(source.consumer, method), [0]

    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] <= times:
            raise error
        return real(*args, **kwargs)

    setattr(source.consumer, method, call)
    return calls


def seven_records(kafka_bootstrap: str, name: str) -> str:
    topic = unique(name)
    ensure_topics(kafka_bootstrap, [topic])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n in range(7):
        producer.send(topic, f"record {n}".encode(), partition=0)
    producer.flush()
    producer.close()
    return topic


@pytest.mark.parametrize("method", ["poll", "position"])
def test_a_call_refused_while_the_broker_is_away_is_retried(kafka_bootstrap, method):
    # kafka-python lets ECONNREFUSED out of poll() while it looks for the group coordinator,
    # and out of position() while it checks a position against a restarted leader (KIP-320):
    # a broker restart caught each of them there, and the consumer died with a traceback.
    topic = seven_records(kafka_bootstrap, f"flaky-{method}")
    source = KafkaInvoiceSource(
        kafka_bootstrap, topic, unique("g"), block_size=5, exit_at_end=True, poll_timeout_ms=100
    )
    try:
        calls = flaky(source, method, KafkaConnectionError("111 ECONNREFUSED"), times=3)
        blocks = list(source.blocks())
    finally:
        source.close()
    assert [[r.offset for r in b] for b in blocks] == [[0, 1, 2, 3, 4], [5, 6]]
    assert calls[0] > 3


def test_a_poll_error_that_retrying_cannot_mend_still_stops_the_consumer(kafka_bootstrap):
    topic = unique("broken")
    ensure_topics(kafka_bootstrap, [topic])
    source = KafkaInvoiceSource(kafka_bootstrap, topic, unique("g"), poll_timeout_ms=100)
    try:
        flaky(source, "poll", UnsupportedVersionError("the broker is too old"), times=1)
        with pytest.raises(UnsupportedVersionError):
            next(source.blocks())
    finally:
        source.close()
