"""The Insider policy: turns segment assignments into durable membership and events."""

from __future__ import annotations

from dataclasses import dataclass, replace

from segmenter.events import ENTERED, EXITED, InsiderEvent, Reason, snapshot
from segmenter.features import CustomerFeatures
from segmenter.model import INSIDER_SEGMENT


@dataclass(frozen=True, slots=True)
class InsiderStatus:
    """A customer's durable segmentation status.

    ``sequence`` counts the events emitted for this customer so far; the next
    event's id is ``<customer>:<sequence + 1>``.
    """

    segment: int | None = None
    insider: bool = False
    insider_since: int | None = None
    sequence: int = 0
    model_version: int = 0


@dataclass(frozen=True)
class InsiderPolicy:
    """A customer is an Insider while the model puts them in the top-value segment.

    >>> policy = InsiderPolicy()
    >>> from segmenter.features import CustomerState, features_of
    >>> f = features_of(CustomerState(lines=1, invoices=1, first_ts=0, last_ts=0), 0)
    >>> status, event = policy.decide("42", InsiderStatus(), 1, f, now_ts=0, model_version=3)
    >>> status.insider, event.event_id, event.type
    (True, '42:1', 'insider.entered')
    """

    def decide(
        self,
        customer_id: str,
        status: InsiderStatus,
        segment: int | None,
        features: CustomerFeatures,
        now_ts: int,
        model_version: int,
    ) -> tuple[InsiderStatus, InsiderEvent | None]:
        in_top = segment == INSIDER_SEGMENT
        new = replace(status, segment=segment, model_version=model_version)
        if in_top == status.insider:
            return new, None
        if in_top:
            reason = Reason(
                "top_segment", f"moved into the top-value segment (model v{model_version})"
            )
            kind, since = ENTERED, now_ts
        else:
            reason = Reason("left_top_segment", f"now in value segment {segment} of the model")
            kind, since = EXITED, None
        sequence = status.sequence + 1
        new = replace(new, insider=in_top, insider_since=since, sequence=sequence)
        event = InsiderEvent(
            customer_id=customer_id,
            sequence=sequence,
            type=kind,
            at_ts=now_ts,
            reason=reason,
            segment=segment,
            model_version=model_version,
            features=snapshot(features),
        )
        return new, event
