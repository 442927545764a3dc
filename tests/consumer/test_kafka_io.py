"""KafkaInvoiceSource in live mode on a real broker: idle ticks let the sweep run."""

from __future__ import annotations

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
