"""The AsyncAPI 3.0 document of the Insider events: the Kafka topic, the SSE stream, the webhooks.

It is built from the code that sends the events: the payload is the ``Event`` model the API
serves (:mod:`api.schemas`), the Kafka headers are the CloudEvents attributes
:mod:`consumer.cloud_events` writes, and the event types are the subscriptions' own. The app
serves it at ``GET /asyncapi.json`` without a key, as it does ``/openapi.json``: it describes
the interfaces and holds no customer data. ``docs/asyncapi.json`` is the same document,
written by ``python -m api.asyncapi > docs/asyncapi.json`` (a test keeps the two equal).

>>> doc = document()
>>> doc["asyncapi"], doc["channels"]["events"]["address"], sorted(doc["operations"])
('3.0.0', 'insiders.events', ['deliverWebhooks', 'publishEvents', 'streamEvents'])
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from api.schemas import Event
from consumer import cloud_events
from consumer.subscriptions import EVENT_TYPES

PATH = "/asyncapi.json"
VERSION = "0.1.0"
EVENTS_TOPIC = "insiders.events"  # the default of INSIDERS_EVENTS_TOPIC
KAFKA_BINDING = "0.5.0"
HTTP_BINDING = "0.3.0"


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(parts)}


def event_schemas() -> dict[str, Any]:
    """The ``Event`` model's JSON Schema, with the models it uses beside it as components."""
    schema = Event.model_json_schema(
        mode="serialization", ref_template="#/components/schemas/{model}"
    )
    schema["properties"]["type"]["enum"] = list(EVENT_TYPES)
    return {"Event": schema, **schema.pop("$defs", {})}


def _strings(**described: str) -> dict[str, Any]:
    """An object schema of string properties, each with its description."""
    properties = {name: {"type": "string", "description": text} for name, text in described.items()}
    return {"type": "object", "properties": properties, "required": list(properties)}


def cloud_event_headers() -> dict[str, Any]:
    """The ``ce_`` headers of a record on the events topic (Kafka binding, binary mode)."""
    schema = _strings(
        **{
            "ce_specversion": "the CloudEvents version",
            "ce_id": "the event_id, <customer>:<sequence>: a re-send has the same id",
            "ce_source": "/insiders/<events topic>; ids are unique within a topic",
            "ce_type": "the event's type",
            "ce_time": "the event time (the event's `at`), RFC 3339 in UTC",
            "ce_subject": "the customer id",
            "content-type": "the datacontenttype: the value is the event as JSON",
        }
    )
    properties = schema["properties"]
    properties["ce_specversion"]["const"] = cloud_events.SPECVERSION
    properties["ce_type"]["enum"] = list(cloud_events.TYPES)
    properties["ce_time"]["format"] = "date-time"
    properties["content-type"]["const"] = cloud_events.CONTENT_TYPE
    return schema


def webhook_headers() -> dict[str, Any]:
    """The headers of a webhook delivery (Standard Webhooks, consumer/webhooks.py)."""
    schema = _strings(
        **{
            "Content-Type": "application/json",
            "User-Agent": "insiders-webhooks/<version> (Standard Webhooks)",
            "webhook-id": "the event_id: the same on every retry; receivers dedupe by it",
            "webhook-timestamp": "when this attempt was signed, in seconds since the epoch",
            "webhook-signature": "v1,<base64 HMAC-SHA256 of id.timestamp.body> with the "
            "subscription's secret; verify with standardwebhooks' Webhook(secret).verify",
        }
    )
    schema["properties"]["Content-Type"]["const"] = "application/json"
    return schema


def document() -> dict[str, Any]:
    """The AsyncAPI document, as JSON-ready data."""
    payload = _ref("components", "schemas", "Event")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Insiders events",
            "version": VERSION,
            "description": "Every entry to and exit from the Insiders, as the service sends "
            "it: on the Kafka events topic (CloudEvents 1.0, binary mode), as server-sent "
            "events from the API, and as signed webhooks. The payload is the same JSON "
            "everywhere; `event_id` identifies an event, and subscribers dedupe by it.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "INSIDERS_KAFKA_BOOTSTRAP (this is its default)",
            },
            "api": {
                "host": "127.0.0.1:8000",
                "protocol": "http",
                "description": "`insiders api` (this is its default address)",
            },
        },
        "channels": {
            "events": {
                "address": EVENTS_TOPIC,
                "title": "The events topic",
                "description": "INSIDERS_EVENTS_TOPIC (this is its default). Every event, "
                "at least once, in order per customer (the key); kept forever.",
                "servers": [_ref("servers", "kafka")],
                "messages": {"insiderEvent": _ref("components", "messages", "cloudEvent")},
                "bindings": {
                    "kafka": {
                        "topic": EVENTS_TOPIC,
                        "topicConfiguration": {"retention.ms": -1},
                        "bindingVersion": KAFKA_BINDING,
                    }
                },
            },
            "eventStream": {
                "address": "/events/stream",
                "title": "Server-sent events",
                "description": "GET /events/stream (text/event-stream): every event after "
                "the cursor (`?after=`, or `Last-Event-ID` on a reconnect), then new ones as "
                "they are committed. A quiet stream sends `: keep-alive` comments.",
                "servers": [_ref("servers", "api")],
                "messages": {"insiderEvent": _ref("components", "messages", "serverSentEvent")},
            },
            "webhooks": {
                "address": None,
                "title": "Webhooks",
                "description": "The `url` of each subscription (POST /subscriptions, admin "
                "key). One POST per event, in order; a 2xx answer moves the subscription on, "
                "anything else is retried with backoff until it is parked.",
                "messages": {"insiderEvent": _ref("components", "messages", "webhook")},
            },
        },
        "operations": {
            "publishEvents": {
                "action": "send",
                "title": "The consumer produces each event to the topic",
                "channel": _ref("channels", "events"),
                "messages": [_ref("channels", "events", "messages", "insiderEvent")],
            },
            "streamEvents": {
                "action": "send",
                "title": "The API streams events to a subscriber",
                "channel": _ref("channels", "eventStream"),
                "messages": [_ref("channels", "eventStream", "messages", "insiderEvent")],
                "bindings": {
                    "http": {
                        "method": "GET",
                        "query": {
                            "type": "object",
                            "properties": {
                                "after": {
                                    "type": "string",
                                    "description": "a cursor (an event's SSE id); "
                                    "from the oldest event kept if left out",
                                }
                            },
                        },
                        "bindingVersion": HTTP_BINDING,
                    }
                },
            },
            "deliverWebhooks": {
                "action": "send",
                "title": "`insiders webhooks` POSTs each event to each subscription",
                "channel": _ref("channels", "webhooks"),
                "messages": [_ref("channels", "webhooks", "messages", "insiderEvent")],
                "bindings": {"http": {"method": "POST", "bindingVersion": HTTP_BINDING}},
            },
        },
        "components": {
            "schemas": {
                **event_schemas(),
                "CloudEventHeaders": cloud_event_headers(),
                "WebhookHeaders": webhook_headers(),
            },
            "messages": {
                "cloudEvent": {
                    "name": "insiderEvent",
                    "title": "An Insider event as a CloudEvent",
                    "summary": "key: the customer id; value: the event's JSON; "
                    "attributes: ce_ headers (CloudEvents Kafka binding, binary mode)",
                    "contentType": cloud_events.CONTENT_TYPE,
                    "headers": _ref("components", "schemas", "CloudEventHeaders"),
                    "payload": payload,
                    "bindings": {
                        "kafka": {
                            "key": {"type": "string", "description": "the customer id"},
                            "bindingVersion": KAFKA_BINDING,
                        }
                    },
                },
                "serverSentEvent": {
                    "name": "insiderEvent",
                    "title": "An Insider event as a server-sent event",
                    "summary": "`id:` the event's cursor, `event:` its type, "
                    "`data:` the event's JSON",
                    "contentType": "application/json",
                    "payload": payload,
                },
                "webhook": {
                    "name": "insiderEvent",
                    "title": "An Insider event as a webhook",
                    "summary": "POSTed with Standard Webhooks' headers; the body is the "
                    "event's JSON",
                    "contentType": "application/json",
                    "headers": _ref("components", "schemas", "WebhookHeaders"),
                    "payload": payload,
                },
            },
        },
    }


def render() -> str:
    """The document as ``docs/asyncapi.json`` holds it."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def add_asyncapi(app: FastAPI) -> None:
    """``GET /asyncapi.json`` on ``app``; like ``/openapi.json``, it needs no key."""
    body = document()

    @app.get(PATH, include_in_schema=False)
    def asyncapi() -> JSONResponse:
        return JSONResponse(body)


if __name__ == "__main__":
    print(render(), end="")
