"""Insider entry and exit events, the contract marketing automation subscribes to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from segmenter.features import CustomerFeatures, to_datetime

ENTERED = "insider.entered"
EXITED = "insider.exited"


@dataclass(frozen=True, slots=True)
class Reason:
    code: str  # machine-readable, e.g. "top_segment", "lapsed"
    text: str  # one sentence for people


@dataclass(frozen=True, slots=True)
class InsiderEvent:
    """One entry to or exit from the Insiders.

    ``event_id`` is ``<customer>:<sequence>``: the per-customer sequence is part of
    the customer's durable status, so a replay or a restart can never emit the
    same transition under another id.
    """

    customer_id: str
    sequence: int
    type: str
    at_ts: int
    reason: Reason
    segment: int | None
    model_version: int
    features: dict[str, Any] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return f"{self.customer_id}:{self.sequence}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "customer_id": self.customer_id,
            "at": iso_utc(to_datetime(self.at_ts)),
            "reason": {"code": self.reason.code, "text": self.reason.text},
            "features": self.features,
            "segment": self.segment,
            "model_version": self.model_version,
        }


def iso_utc(moment: datetime) -> str:
    """Event time as ISO 8601 with its offset. Event time is the retailer's clock, kept without
    a zone; every reader (the events topic, the API) reads it as UTC.

    >>> iso_utc(datetime(2011, 12, 9, 12, 50))
    '2011-12-09T12:50:00+00:00'
    """
    return moment.replace(tzinfo=UTC).isoformat()


def event_time(event: dict[str, Any]) -> datetime:
    """An event's ``at`` back as the naive event-time datetime the core computes with.

    >>> event_time({"at": "2011-12-09T12:50:00+00:00"}), event_time({"at": "2011-12-09T12:50:00"})
    (datetime.datetime(2011, 12, 9, 12, 50), datetime.datetime(2011, 12, 9, 12, 50))
    """
    moment = datetime.fromisoformat(str(event["at"]))
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def snapshot(features: CustomerFeatures) -> dict[str, Any]:
    """Features as JSON-ready values (datetimes as ISO strings, money rounded to the cent)."""
    out: dict[str, Any] = {}
    for name, value in features.as_dict().items():
        if isinstance(value, datetime):
            out[name] = iso_utc(value)
        elif isinstance(value, float):
            out[name] = round(value, 4)
        else:
            out[name] = value
    return out
