"""Insider events as CloudEvents on the events topic: what the sink writes, read back with the
``cloudevents`` SDK's Kafka binding. The events are the ones the pipeline makes from the
shipped sample."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event

from consumer.cloud_events import kafka_record, source_of
from consumer.kafka_io import KafkaEventSink, ensure_topics
from tests.conftest import unique
from tests.e2e.kafka_tools import read_topic


def read(key: bytes | None, value: bytes, headers: dict[str, bytes]) -> BaseCloudEvent:
    """A record as a reader with the SDK sees it."""
    return from_binary_event(KafkaMessage(headers=headers, key=key, value=value))


def check(cloud_event: BaseCloudEvent, event: dict[str, Any], topic: str) -> None:
    """The attributes the README documents, against the event itself."""
    assert cloud_event.get_specversion() == "1.0"
    assert cloud_event.get_id() == event["event_id"]
    assert cloud_event.get_source() == f"/insiders/{topic}"
    assert cloud_event.get_type() == event["type"]
    assert cloud_event.get_subject() == event["customer_id"]
    assert cloud_event.get_time() == datetime.fromisoformat(event["at"])
    assert cloud_event.get_datacontenttype() == "application/json"
    assert cloud_event.get_dataschema() is None
    assert cloud_event.get_extension("partitionkey") == event["customer_id"]  # the key
    assert cloud_event.get_data() == event


def test_every_event_reads_back_with_its_attributes_and_its_json(sample_events):
    for event in sample_events:
        key, value, headers = kafka_record(event, source_of("insiders.events"))
        assert key == event["customer_id"].encode()
        assert value == orjson.dumps(event)  # what the topic carried before: byte for byte
        check(read(key, value, dict(headers)), event, "insiders.events")


def test_a_resend_is_the_same_record(sample_events):
    """No attribute is made up at send time (the SDK would draw a random id and take now)."""
    source = source_of("t")
    assert [kafka_record(e, source) for e in sample_events] == [
        kafka_record(dict(e), source) for e in sample_events
    ]


def test_an_event_time_written_without_its_offset_is_utc(sample_events):
    """Events of an earlier release held `at` without an offset; it is UTC all the same."""
    event = {**sample_events[0], "at": "2011-12-09T12:50:00"}
    _, _, headers = kafka_record(event, source_of("t"))
    assert dict(headers)["ce_time"] == b"2011-12-09T12:50:00Z"
    assert read(None, orjson.dumps(event), dict(headers)).get_time() == datetime(
        2011, 12, 9, 12, 50, tzinfo=UTC
    )


def test_the_kafka_sink_publishes_cloudevents(kafka_bootstrap, sample_events):
    topic = unique("ce")
    ensure_topics(kafka_bootstrap, [topic])
    sink = KafkaEventSink(kafka_bootstrap, events_topic=topic)
    try:
        sink.publish(sample_events[:20])
        sink.publish(sample_events[20:])
    finally:
        sink.close()
    records = read_topic(kafka_bootstrap, topic)
    assert len(records) == len(sample_events)
    for record, event in zip(records, sample_events, strict=True):
        assert record.value == orjson.dumps(event)
        check(read(record.key, record.value, record.headers), event, topic)
