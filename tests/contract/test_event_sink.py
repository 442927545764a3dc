"""The event-sink contract, run against the in-process sink and the real Kafka sink."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from consumer.kafka_io import KafkaEventSink, dlq_topic, ensure_topics
from consumer.memory import MemoryEventSink
from consumer.ports import SourceRecord
from segmenter.errors import InvalidRecord
from tests.conftest import unique
from tests.e2e.kafka_tools import read_topic

ReadBack = Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]]


def events(*customers: str) -> list[dict[str, Any]]:
    """Fresh event documents in the shape the pipeline publishes."""
    return [
        {
            "event_id": f"{cid}:{seq}",
            "type": "insider.entered",
            "customer_id": cid,
            "at": "2011-12-09T12:50:00",
            "reason": {"code": "top_segment", "text": "Joined the top segment — «é»"},
            "features": {"revenue": 1234.5, "invoices": seq, "last": None},
            "segment": 1,
            "model_version": 7,
        }
        for seq, cid in enumerate(customers, start=1)
    ]


@pytest.fixture
def source_topic() -> str:
    return unique("in")


@pytest.fixture(params=["memory", "kafka"])
def sink(
    request: pytest.FixtureRequest, source_topic: str
) -> Iterator[tuple[MemoryEventSink | KafkaEventSink, ReadBack]]:
    """Each contract test runs against both sinks; read_back returns (events, dead letters)."""
    if request.param == "memory":
        memory = MemoryEventSink()
        yield memory, lambda: (memory.events, memory.dead_letters)
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    events_topic = unique("ev")
    ensure_topics(bootstrap, [events_topic, dlq_topic(source_topic)])
    kafka = KafkaEventSink(bootstrap, events_topic=events_topic)

    def read_back() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        published = []
        for m in read_topic(bootstrap, events_topic):
            event = orjson.loads(m.value)
            assert m.key == event["customer_id"].encode()
            published.append(event)
        dead = [
            {
                "reason": m.headers["reason"].decode(),
                "detail": m.headers["detail"].decode(),
                "topic": m.headers["source.topic"].decode(),
                "partition": int(m.headers["source.partition"]),
                "offset": int(m.headers["source.offset"]),
                "value": m.value,
            }
            for m in read_topic(bootstrap, dlq_topic(source_topic))
        ]
        return published, dead

    yield kafka, read_back
    kafka.close()


def test_published_events_come_back_in_order(sink):
    """Events published in two calls come back in order, equal to what was published."""
    target, read_back = sink
    target.publish(events("17850", "13047"))
    target.publish(events("12583"))
    published, dead = read_back()
    assert published == events("17850", "13047") + events("12583")
    assert [e["event_id"] for e in published] == ["17850:1", "13047:2", "12583:1"]
    assert dead == []


def test_dead_letters_carry_reason_source_and_original_bytes(sink, source_topic):
    """A dead letter keeps reason, detail, source coordinates and the exact original bytes."""
    target, read_back = sink
    big = bytes(range(256)) * 3906 + b"\xff" * 64  # 1,000,000 bytes, not UTF-8
    assert len(big) == 1_000_000
    rejected = [
        (SourceRecord(source_topic, 2, 41, b"17850", b'{"quantity": "x"'), "bad_json", "line 1"),
        (SourceRecord(source_topic, 0, 7, None, b"\xff\xfe"), "bad_utf8", "byte 0: «\\xff»"),
        (SourceRecord(source_topic, 1, 123456789, b"k", big), "too_large", "1000000 bytes"),
    ]
    for record, reason, detail in rejected:
        target.dead_letter(record, InvalidRecord(reason, detail))
    target.flush()
    published, dead = read_back()
    assert published == []
    assert dead == [
        {
            "reason": "bad_json",
            "detail": "line 1",
            "topic": source_topic,
            "partition": 2,
            "offset": 41,
            "value": b'{"quantity": "x"',
        },
        {
            "reason": "bad_utf8",
            "detail": "byte 0: «\\xff»",
            "topic": source_topic,
            "partition": 0,
            "offset": 7,
            "value": b"\xff\xfe",
        },
        {
            "reason": "too_large",
            "detail": "1000000 bytes",
            "topic": source_topic,
            "partition": 1,
            "offset": 123456789,
            "value": big,
        },
    ]


def test_publishing_nothing_is_fine(sink):
    """Publishing an empty list delivers nothing and raises nothing."""
    target, read_back = sink
    target.publish([])
    assert read_back() == ([], [])


def test_flush_then_close(sink):
    """flush() then close() work, and what was published before stays delivered."""
    target, read_back = sink
    target.publish(events("1"))
    target.flush()
    target.close()
    assert read_back()[0] == events("1")
