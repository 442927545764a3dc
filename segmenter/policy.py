"""The Insider policy: turns model assessments into durable membership, with hysteresis.

A status that flaps is worse than none for marketing, so entering and leaving are
asymmetric:

* **enter** when the model puts the customer in the top-value segment at least
  ``entry_margin`` inside the edge (margin: see :class:`segmenter.model.Assessment`);
* **exit** when the customer falls ``exit_margin`` outside the edge (a margin below
  ``-exit_margin``) and has been an Insider for ``min_dwell_days``; or, at any time,
  when the last purchase is more than ``lapse_days`` ago.

Time alone (the periodic sweep: no purchase of theirs arrived) only takes out a
customer who is *overdue*: whose time since the last purchase exceeds
``overdue_factor`` times their own usual gap between invoices. A wholesaler who
orders every three weeks is not lapsing on day 20, even though recency alone
would move them away from the Insider centre; without this rule they would leave
and come back with every order. Such exits are ``lapsed``; exits after the
customer's own activity moved them out are ``left_top_segment``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from segmenter.events import ENTERED, EXITED, InsiderEvent, Reason, snapshot
from segmenter.features import SECONDS_PER_DAY, CustomerFeatures
from segmenter.model import INSIDER_SEGMENT, Assessment
from segmenter.state import Fields


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
class PolicySettings:
    """Entry and exit rules; the defaults are what `insiders evaluate` measured."""

    entry_margin: float = 0.3
    exit_margin: float = 0.3
    min_dwell_days: float = 30.0
    lapse_days: float = 120.0
    overdue_factor: float = 2.0

    def to_state(self) -> dict[str, Any]:
        """The rules as JSON-ready data.

        >>> PolicySettings.from_state(PolicySettings(lapse_days=90).to_state()).lapse_days
        90
        """
        return asdict(self)

    @classmethod
    def from_state(cls, state: object, path: str = "policy") -> PolicySettings:
        """Rules ``to_state`` described; each a finite number, kept as written (30 stays 30)."""
        doc = Fields(state, path, tuple(f.name for f in fields(cls)))
        return cls(**{name: doc.number(name) for name in doc.value})


def describe(assessment: Assessment, limit: int = 2) -> str:
    """The strongest drivers in words, e.g. "frequency 2.1 (Insiders ~1.4)"."""
    parts = []
    for d in assessment.drivers[:limit]:
        direction = "for" if d.pull > 0 else "against"
        parts.append(f"{d.feature} {d.value:,.1f} {direction} (Insiders ~{d.insider_typical:,.1f})")
    return "; ".join(parts)


def overdue(features: CustomerFeatures, rules: PolicySettings) -> bool:
    """More than ``overdue_factor`` times the customer's usual gap since the last purchase.

    The usual gap is days per invoice over the whole relationship (30 / frequency).

    >>> from segmenter.features import CustomerState, features_of
    >>> s = CustomerState(lines=4, invoices=4, first_ts=0, last_ts=90 * SECONDS_PER_DAY)
    >>> overdue(features_of(s, 140 * SECONDS_PER_DAY), PolicySettings())  # gap 35, 50 days
    False
    >>> overdue(features_of(s, 200 * SECONDS_PER_DAY), PolicySettings())  # gap 50, 110 days
    True
    """
    recency = features.recency_days or 0.0
    usual_gap = 30.0 / features.frequency if features.frequency else rules.lapse_days
    return recency > rules.overdue_factor * usual_gap


@dataclass(frozen=True)
class InsiderPolicy:
    """Membership decisions with hysteresis, a minimum dwell and a lapse rule.

    >>> from segmenter.features import CustomerState, features_of
    >>> f = features_of(CustomerState(lines=1, invoices=1, first_ts=0, last_ts=0), 0)
    >>> policy = InsiderPolicy()
    >>> status, event = policy.decide("42", InsiderStatus(), Assessment(1, 0.3), f, 0, 3)
    >>> status.insider, event.event_id, event.type, event.reason.code
    (True, '42:1', 'insider.entered', 'top_segment')
    >>> policy.decide("42", status, Assessment(2, -0.01), f, 0, 4)[1] is None  # within the band
    True
    """

    settings: PolicySettings = PolicySettings()

    def to_state(self) -> dict[str, Any]:
        """The policy as JSON-ready data: its settings."""
        return self.settings.to_state()

    @classmethod
    def from_state(cls, state: object, path: str = "policy") -> InsiderPolicy:
        return cls(PolicySettings.from_state(state, path))

    def decide(
        self,
        customer_id: str,
        status: InsiderStatus,
        assessment: Assessment,
        features: CustomerFeatures,
        now_ts: int,
        model_version: int,
        sweep: bool = False,
    ) -> tuple[InsiderStatus, InsiderEvent | None]:
        rules = self.settings
        new = replace(status, segment=assessment.segment, model_version=model_version)
        margin = assessment.margin
        recency = features.recency_days if features.recency_days is not None else 0.0
        reason: Reason | None = None
        if not status.insider:
            if (
                assessment.segment == INSIDER_SEGMENT
                and margin is not None
                and margin >= rules.entry_margin
                and recency <= rules.lapse_days
            ):
                reason = Reason(
                    "top_segment",
                    f"entered the top-value segment, {margin:.2f} inside the edge: "
                    + describe(assessment),
                )
        elif recency > rules.lapse_days:
            reason = Reason(
                "lapsed", f"no purchase for {recency:.0f} days (limit {rules.lapse_days:.0f})"
            )
        elif margin is not None and margin <= -rules.exit_margin:
            since = status.insider_since if status.insider_since is not None else now_ts
            dwell = (now_ts - since) / SECONDS_PER_DAY
            if dwell >= rules.min_dwell_days and (overdue(features, rules) or not sweep):
                code = "lapsed" if sweep else "left_top_segment"
                reason = Reason(
                    code,
                    f"{-margin:.2f} outside the Insider edge after {dwell:.0f} days: "
                    + describe(assessment),
                )
        if reason is None:
            return new, None
        entering = not status.insider
        sequence = status.sequence + 1
        new = replace(
            new,
            insider=entering,
            insider_since=now_ts if entering else None,
            sequence=sequence,
        )
        event = InsiderEvent(
            customer_id=customer_id,
            sequence=sequence,
            type=ENTERED if entering else EXITED,
            at_ts=now_ts,
            reason=reason,
            segment=assessment.segment,
            model_version=model_version,
            features=snapshot(features),
        )
        return new, event
