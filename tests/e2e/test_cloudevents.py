"""A data-pipeline engineer reads the events topic with kafka-python and the ``cloudevents`` SDK,
as the README shows, and gets every event the store holds: on the real Kafka and Redis, after a
backfill of the shipped sample by the real CLI."""

from __future__ import annotations

from datetime import datetime

import jsonschema_rs
import orjson
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
from fastapi.testclient import TestClient
from kafka import KafkaConsumer

from api.app import create_app
from api.asyncapi import document
from consumer.redis_store import RedisFeatureStore
from tests.api.conftest import all_events
from tests.conftest import SAMPLE
from tests.e2e.kafka_tools import run_cli


def test_every_event_reads_as_a_cloudevent_with_the_sdk(
    env, kafka_bootstrap, redis_client, redis_prefix
):
    run_cli("publish", str(SAMPLE), env=env)
    run_cli("consume", "--group", "g", "--exit-at-end", env=env)
    topic = env["INSIDERS_EVENTS_TOPIC"]

    # The reader, as in the README: kafka-python, then the SDK's Kafka binding.
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,  # the backfill is over: stop once the topic is read
    )
    records = list(consumer)
    consumer.close()
    read = [from_binary_event(KafkaMessage(dict(r.headers), r.key, r.value)) for r in records]

    # What the store holds: its raw outbox, and GET /events over it.
    store = RedisFeatureStore(redis_client, redis_prefix)
    stored = store.events(None, 100_000).events
    served = all_events(TestClient(create_app(store)))
    assert len(stored) > 10
    assert [e.get_id() for e in read] == [e["event_id"] for e in served]
    assert [e["event_id"] for e in served] == [e["event_id"] for e in stored]

    # As documented: the AsyncAPI document's headers and payload, the README's attributes.
    doc = document()
    declared = doc["components"]["schemas"]["CloudEventHeaders"]["properties"]
    payload = jsonschema_rs.validator_for(
        {"allOf": [{"$ref": "#/components/schemas/Event"}], "components": doc["components"]}
    )
    for record, cloud_event, event, api_event in zip(records, read, stored, served, strict=True):
        assert record.value == orjson.dumps(event)  # the value is today's JSON, byte for byte
        assert record.key == str(event["customer_id"]).encode()
        assert {name for name, _ in record.headers} == set(declared)
        assert cloud_event.get_specversion() == "1.0"
        assert cloud_event.get_source() == f"/insiders/{topic}"
        assert cloud_event.get_type() == event["type"]
        assert cloud_event.get_subject() == event["customer_id"]
        assert cloud_event.get_extension("partitionkey") == event["customer_id"]
        assert cloud_event.get_time() == datetime.fromisoformat(str(event["at"]))
        assert cloud_event.get_datacontenttype() == "application/json"
        assert cloud_event.get_data() == api_event == orjson.loads(orjson.dumps(event))
        assert [e.message for e in payload.iter_errors(cloud_event.get_data())] == []
    assert {e.get_type() for e in read} == {"insider.entered", "insider.exited"}
