"""Insider entry and exit events, the contract marketing automation subscribes to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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
            "at": to_datetime(self.at_ts).isoformat(),
            "reason": {"code": self.reason.code, "text": self.reason.text},
            "features": self.features,
            "segment": self.segment,
            "model_version": self.model_version,
        }


def snapshot(features: CustomerFeatures) -> dict[str, Any]:
    """Features as JSON-ready values (datetimes as ISO strings, money rounded to the cent)."""
    out: dict[str, Any] = {}
    for name, value in features.as_dict().items():
        if isinstance(value, datetime):
            out[name] = value.isoformat()
        elif isinstance(value, float):
            out[name] = round(value, 4)
        else:
            out[name] = value
    return out
