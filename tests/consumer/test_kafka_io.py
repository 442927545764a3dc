"""KafkaInvoiceSource in live mode on a real broker: idle ticks let the sweep run."""

from __future__ import annotations

from consumer.kafka_io import KafkaInvoiceSource, ensure_topics
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
