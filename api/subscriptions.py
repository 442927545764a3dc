"""Webhook subscriptions over HTTP: create, list, read, delete and resume them.

Every route needs an admin key (``INSIDERS_ADMIN_KEYS``) when keys are set: a subscription's
URL is configuration, and may carry a token. The secret is answered once, by the ``POST`` that
creates the subscription; ``insiders webhooks`` delivers (see :mod:`consumer.webhooks`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas import ErrorBody, UtcDatetime
from api.security import require_admin
from consumer.subscriptions import (
    EVENT_TYPES,
    Attempt,
    Start,
    Subscription,
    SubscriptionStore,
    resume,
    subscriptions_for,
)

SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)  # what the Standard Webhooks specification allows


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url {value!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ValueError(f"url {value!r} has an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"url {value!r} names no host")
    if parts.username is not None:
        raise ValueError(
            f"url {value!r} holds credentials, which are not sent: put a token in its path "
            "or query instead"
        )
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"url {value!r} holds spaces or control characters")
    return value


def _secret(value: str | None) -> str | None:
    if value is None:
        return None
    shape = (
        f"secret must be {SECRET_PREFIX}<base64 of {SECRET_BYTES[0]} to {SECRET_BYTES[1]} bytes>"
    )
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"{shape}; it does not start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{shape}; what follows {SECRET_PREFIX} is not base64") from None
    if not SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1]:
        raise ValueError(f"{shape}; it holds {len(key)} bytes")
    return value


def _types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise ValueError(
            f"types is empty: leave it out for every type, or name some of {EVENT_TYPES}"
        )
    for kind in value:
        if kind not in EVENT_TYPES:
            raise ValueError(f"types: {kind!r} is not an event type; they are {EVENT_TYPES}")
    return list(dict.fromkeys(value))


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="where events are POSTed: http:// or https://")
    secret: str | None = Field(
        default=None,
        description="the signing secret, `whsec_` + base64 of 24 to 64 random bytes; "
        "one is made and answered (once) if left out",
    )
    types: list[str] | None = Field(
        default=None,
        description=f"event types to send, of {list(EVENT_TYPES)}; every type if left out",
    )
    start: Literal["latest", "oldest"] = Field(
        default="latest",
        description="`latest`: events from now on; `oldest`: also every event still kept",
    )

    _check_url = field_validator("url")(_url)
    _check_secret = field_validator("secret")(_secret)
    _check_types = field_validator("types")(_types)


class Delivery(BaseModel):
    event_id: str | None = Field(description="the event; null for a gap found before sending")
    at: UtcDatetime
    status: int | None = Field(description="the receiver's HTTP status; null if none answered")
    error: str | None


class SubscriptionView(BaseModel):
    id: str
    url: str
    types: list[str] = Field(description="event types sent; empty: every type")
    state: Literal["active", "parked"] = Field(
        description="`parked`: retries ran out; nothing is sent until it is resumed"
    )
    created_at: UtcDatetime
    cursor: str | None = Field(description="the outbox cursor of the last event sent")
    lag: int = Field(description="events in the outbox after the cursor (counted up to 10,000)")
    attempts: int = Field(description="failed attempts at the next event")
    failing_since: UtcDatetime | None
    next_attempt_at: UtcDatetime | None
    parked_at: UtcDatetime | None
    last_delivery: Delivery | None
    last_error: Delivery | None


class CreatedSubscription(SubscriptionView):
    secret: str = Field(description="the signing secret: shown in this answer only")


class SubscriptionList(BaseModel):
    items: list[SubscriptionView]


def _time(moment: float | None) -> datetime | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC)


def _delivery(attempt: Attempt | None) -> Delivery | None:
    if attempt is None:
        return None
    return Delivery(
        event_id=attempt.event_id,
        at=datetime.fromtimestamp(attempt.at, UTC),
        status=attempt.status,
        error=attempt.error,
    )


def view(sub: Subscription, store: SubscriptionStore) -> dict[str, Any]:
    return {
        "id": sub.id,
        "url": sub.url,
        "types": list(sub.types),
        "state": sub.state,
        "created_at": _time(sub.created_at),
        "cursor": sub.cursor,
        "lag": store.lag(sub.cursor),
        "attempts": sub.attempts,
        "failing_since": _time(sub.failing_since),
        "next_attempt_at": _time(sub.next_attempt_at),
        "parked_at": _time(sub.parked_at),
        "last_delivery": _delivery(sub.last_delivery),
        "last_error": _delivery(sub.last_error),
    }


_lock = threading.Lock()


def get_subscriptions(request: Request) -> SubscriptionStore:
    """The app's subscription store: ``app.state.subscriptions`` if set (the demo shares its
    own with the worker), else the one that goes with the app's feature store."""
    state = request.app.state
    given: SubscriptionStore | None = getattr(state, "subscriptions", None)
    if given is not None:
        return given
    with _lock:
        store = state.store
        cached = getattr(state, "subscriptions_of", None)
        if cached is None or cached[0] is not store:
            cached = state.subscriptions_of = (store, subscriptions_for(store))
        made: SubscriptionStore = cached[1]
        return made


Subscriptions = Annotated[SubscriptionStore, Depends(get_subscriptions)]
SubscriptionId = Annotated[
    str, Path(pattern=r"^[0-9A-Za-z_-]{1,64}$", description="a subscription id, e.g. sub_1f2e")
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}

router = APIRouter(
    prefix="/subscriptions",
    tags=["webhooks"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"model": ErrorBody, "description": "No API key, or an unknown one"},
        403: {"model": ErrorBody, "description": "A read key: these routes need an admin key"},
    },
)


def _found(store: SubscriptionStore, subscription_id: str) -> Subscription:
    sub = store.get(subscription_id)
    if sub is None:
        raise HTTPException(404, f"subscription {subscription_id} not found")
    return sub


@router.post(
    "",
    status_code=201,
    response_model=CreatedSubscription,
    summary="Subscribe a URL to Insider entries and exits (webhooks)",
)
def create_subscription(body: SubscriptionRequest, store: Subscriptions) -> dict[str, Any]:
    """Events are POSTed one by one, signed as Standard Webhooks specifies, by the
    `insiders webhooks` worker. The answer holds the secret: it is not shown again."""
    secret = body.secret or SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    start: Start = body.start
    sub = store.add(
        Subscription(
            id="sub_" + secrets.token_hex(8),
            url=body.url,
            secret=secret,
            types=tuple(body.types or ()),
            created_at=time.time(),
        ),
        start,
    )
    return {**view(sub, store), "secret": secret}


@router.get("", response_model=SubscriptionList, summary="Every webhook subscription")
def list_subscriptions(store: Subscriptions) -> dict[str, Any]:
    return {"items": [view(sub, store) for sub in store.all()]}


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionView,
    responses=NOT_FOUND,
    summary="A subscription: its lag, its last delivery and its last error",
)
def get_subscription(subscription_id: SubscriptionId, store: Subscriptions) -> dict[str, Any]:
    return view(_found(store, subscription_id), store)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    response_class=Response,
    responses=NOT_FOUND,
    summary="Delete a subscription; nothing more is sent to it",
)
def delete_subscription(subscription_id: SubscriptionId, store: Subscriptions) -> Response:
    if not store.remove(subscription_id):
        raise HTTPException(404, f"subscription {subscription_id} not found")
    return Response(status_code=204)


@router.post(
    "/{subscription_id}/resume",
    response_model=SubscriptionView,
    responses=NOT_FOUND,
    summary="Resume a parked subscription (or retry a failing one now), from its cursor",
)
def resume_subscription(subscription_id: SubscriptionId, store: Subscriptions) -> dict[str, Any]:
    sub = resume(store, subscription_id)
    if sub is None:
        raise HTTPException(404, f"subscription {subscription_id} not found")
    return view(sub, store)
