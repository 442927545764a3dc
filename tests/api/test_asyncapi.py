"""The AsyncAPI document of the events (docs/asyncapi.json, GET /asyncapi.json): valid AsyncAPI
3.0, and true to what is sent. Its structure is checked against the AsyncAPI Initiative's own
JSON Schema of 3.0.0 (asyncapi_spec/, see its NOTICE); its content against the events the
pipeline makes from the sample, the Kafka record the event sink builds, the headers the webhook
worker signs and the routes of the app."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.asyncapi import document, render
from api.security import ApiKeys
from consumer.cloud_events import kafka_record, source_of
from consumer.memory import MemoryFeatureStore
from consumer.webhooks import signed
from tests.conftest import REPO

SPEC = Path(__file__).parent / "asyncapi_spec" / "3.0.0.json.gz"
DOC = document()


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """The target of a local ``$ref`` (a JSON pointer); KeyError if there is none."""
    assert ref.startswith("#/"), f"{ref} is not a reference within the document"
    target: Any = doc
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def schema_of(name: str) -> dict[str, Any]:
    """A component schema as a standalone JSON Schema (its references resolve in it)."""
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "components": DOC["components"]}


def test_docs_asyncapi_json_is_the_document_the_code_makes():
    assert (REPO / "docs" / "asyncapi.json").read_text() == render(), (
        "docs/asyncapi.json is stale: python -m api.asyncapi > docs/asyncapi.json"
    )


def test_the_document_is_valid_asyncapi_3():
    validator = jsonschema_rs.validator_for(json.loads(gzip.decompress(SPEC.read_bytes())))
    assert DOC["asyncapi"] == "3.0.0"
    assert [e.message for e in validator.iter_errors(DOC)] == []
    # The validator can fail: a misspelt action and a badly typed binding are errors.
    broken = json.loads(render())
    broken["operations"]["publishEvents"]["action"] = "publish"  # AsyncAPI 2's word
    broken["components"]["messages"]["cloudEvent"]["bindings"]["kafka"]["key"] = "customer"
    assert len(list(validator.iter_errors(broken))) == 2


def test_every_reference_resolves_and_operations_name_their_channels_messages():
    found = refs(DOC)
    assert "#/components/schemas/Features" in found  # the walk reaches into the schemas
    for ref in found:
        resolve(DOC, ref)
    for name, operation in DOC["operations"].items():
        channel = operation["channel"]["$ref"]
        assert channel.startswith("#/channels/"), name
        own = {f"{channel}/messages/{m}" for m in resolve(DOC, channel)["messages"]}
        assert {m["$ref"] for m in operation["messages"]} <= own, name
    # Every channel is used by an operation.
    assert {o["channel"]["$ref"] for o in DOC["operations"].values()} == {
        f"#/channels/{c}" for c in DOC["channels"]
    }


def test_the_payload_has_exactly_the_fields_of_the_events(sample_events):
    """Each event of the sample validates, and its fields, its reason's and its features'
    are the schema's properties, no more, no fewer."""
    schemas = DOC["components"]["schemas"]
    validator = jsonschema_rs.validator_for(schema_of("Event"))
    for event in sample_events:
        assert [e.message for e in validator.iter_errors(event)] == []
        assert set(event) == set(schemas["Event"]["properties"])
        assert set(event["reason"]) == set(schemas["EventReason"]["properties"])
        assert set(event["features"]) == set(schemas["Features"]["properties"])
    types = {e["type"] for e in sample_events}
    assert types == set(schemas["Event"]["properties"]["type"]["enum"])
    # Every message on every channel carries that payload.
    for message in DOC["components"]["messages"].values():
        assert message["payload"] == {"$ref": "#/components/schemas/Event"}


def test_kafka_headers_are_the_ones_the_sink_sends(sample_events):
    declared = DOC["components"]["schemas"]["CloudEventHeaders"]
    validator = jsonschema_rs.validator_for(schema_of("CloudEventHeaders"))
    for event in sample_events:
        _, _, headers = kafka_record(event, source_of("insiders.events"))
        sent = {name: value.decode() for name, value in headers}
        assert set(sent) == set(declared["properties"]) == set(declared["required"])
        assert [e.message for e in validator.iter_errors(sent)] == []
    assert DOC["channels"]["events"]["address"] == "insiders.events"


def test_webhook_headers_are_the_ones_the_worker_signs():
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sent = signed(secret, "17850:1", b"{}", datetime(2024, 1, 1, tzinfo=UTC))
    declared = DOC["components"]["schemas"]["WebhookHeaders"]
    assert set(sent) == set(declared["properties"]) == set(declared["required"])
    validator = jsonschema_rs.validator_for(schema_of("WebhookHeaders"))
    assert [e.message for e in validator.iter_errors(sent)] == []
    assert DOC["operations"]["deliverWebhooks"]["bindings"]["http"]["method"] == "POST"


def test_the_stream_channel_is_a_get_route_of_the_app():
    paths = TestClient(create_app(MemoryFeatureStore())).get("/openapi.json").json()["paths"]
    assert "get" in paths[DOC["channels"]["eventStream"]["address"]]


def test_the_app_serves_it_without_a_key_like_openapi_json():
    keys = ApiKeys.of(read=[SecretStr("read-key-0123456789")])
    client = TestClient(create_app(MemoryFeatureStore(), keys=keys))
    assert client.get("/stats").status_code == 401
    response = client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == DOC
    assert "/asyncapi.json" not in client.get("/openapi.json").json()["paths"]
