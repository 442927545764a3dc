"""Insider events as CloudEvents 1.0 on Kafka, in the binary content mode of the Kafka binding.

The record's value stays the event's JSON, byte for byte, and its key the customer id, so a
reader that ignores headers sees what it always did. The CloudEvents attributes travel as
``ce_`` headers (made by the ``cloudevents`` SDK), so a reader that speaks CloudEvents gets
them without parsing the value:

=================  ==================================================================
``ce_specversion``  ``1.0``
``ce_id``           the ``event_id``, ``<customer>:<sequence>``: the same on a re-send
``ce_source``       ``/insiders/<events topic>``: ids are unique within a topic
``ce_type``         the event's ``type``, ``insider.entered`` or ``insider.exited``
``ce_time``         the event's ``at`` (event time, read as UTC), RFC 3339
``ce_subject``      the customer id
``content-type``    ``application/json`` (the ``datacontenttype``)
=================  ==================================================================

``ce_type`` is the name the event has everywhere else (the JSON's ``type``, the SSE
``event:`` field, a webhook subscription's ``types``), not a reverse-DNS one: the spec only
recommends a prefix, we own no domain to prefix it with honestly, and ``ce_source`` already
says who produced it. There is no ``ce_dataschema``: its value must be a URI that readers can
resolve, and the service has no address of its own to put there. The schema is in the
AsyncAPI document (``docs/asyncapi.json``, ``GET /asyncapi.json``).

>>> from cloudevents.core.bindings import kafka
>>> event = {"event_id": "17850:1", "type": "insider.entered", "customer_id": "17850",
...          "at": "2011-12-09T12:50:00+00:00"}
>>> key, value, headers = kafka_record(event, source_of("insiders.events"))
>>> key, value == orjson.dumps(event)
(b'17850', True)
>>> sorted(headers)  # doctest: +NORMALIZE_WHITESPACE
[('ce_id', b'17850:1'), ('ce_source', b'/insiders/insiders.events'),
 ('ce_specversion', b'1.0'), ('ce_subject', b'17850'), ('ce_time', b'2011-12-09T12:50:00Z'),
 ('ce_type', b'insider.entered'), ('content-type', b'application/json')]
>>> read = kafka.from_binary_event(kafka.KafkaMessage(dict(headers), key, value))
>>> read.get_id(), read.get_subject(), read.get_data() == event
('17850:1', '17850', True)
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import orjson
from cloudevents.core.bindings.kafka import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from segmenter.events import ENTERED, EXITED, event_time

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPES = (ENTERED, EXITED)
# The attributes each record carries, as the Kafka binding names its headers.
HEADERS = (
    "ce_specversion",
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_time",
    "ce_subject",
    "content-type",
)

KafkaHeaders = list[tuple[str, bytes]]


def source_of(events_topic: str) -> str:
    """The ``source`` attribute: the service and the topic, within which ids are unique
    (one consumer writes a topic).

    >>> source_of("insiders.events")
    '/insiders/insiders.events'
    """
    return f"/insiders/{events_topic}"


def cloud_event(event: dict[str, Any], source: str) -> CloudEvent:
    """``event`` (a document as the outbox holds it) as a CloudEvent whose data is its JSON."""
    attributes = {
        "specversion": SPECVERSION,
        "id": str(event["event_id"]),
        "source": source,
        "type": str(event["type"]),
        "time": event_time(event).replace(tzinfo=UTC),
        "subject": str(event["customer_id"]),
        "datacontenttype": CONTENT_TYPE,
    }
    # Bytes are sent as they are: the value is today's JSON, not the SDK's re-encoding of it.
    return CloudEvent(attributes, orjson.dumps(event))


def kafka_record(event: dict[str, Any], source: str) -> tuple[bytes, bytes, KafkaHeaders]:
    """The key, value and headers of ``event``'s record on the events topic."""
    message = to_binary(cloud_event(event, source), JSONFormat(), key_mapper=lambda _: None)
    return str(event["customer_id"]).encode(), message.value, list(message.headers.items())
