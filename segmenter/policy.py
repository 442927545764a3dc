"""The Insider policy: turns model assessments into durable membership, with hysteresis.

A loyalty programme has a budget, so the group's size is a product setting: the
Insiders hold ``target_share`` of the customers known so far (default 12%). The
online clustering still says *who*: a customer's margin (see
:class:`segmenter.model.Assessment`) is their position against the edge of the
top-value segment, and ranking customers by it ranks them by how deep in that
segment they sit. What the data no longer decides is *how many*: the edges are
calibrated from the distribution of margins (:func:`calibrate`, run by the daily
sweep over every customer), so that

* a customer **enters** at a margin at least the one of the customer ranked at
  ``target_share - share_band`` of all customers (``Edges.entry``);
* an Insider **leaves** below the margin of the one ranked at
  ``target_share + share_band`` (``Edges.exit``), once they have been an Insider for
  ``min_dwell_days``, or at once when they fall a full centre gap below that edge
  (their own returns or losses, not the model's drift); and at any time when the last
  purchase is more than ``lapse_days`` ago.

Between the two edges nothing changes: that band is the hysteresis, and it is what
keeps the group within ``target_share ± share_band`` at each sweep without flapping.
Customers who have lapsed are not ranked for entry.

A sweep exit is ``lapsed`` when the customer is also *overdue*: their time since the
last purchase exceeds ``overdue_factor`` times their own usual gap between invoices.
Otherwise others simply rank above them now: ``outranked``. Exits after the customer's
own activity moved them out are ``left_top_segment``.

Without a target share (``target_share=None``) the edges are fixed margins,
``entry_margin`` inside and ``exit_margin`` outside the top segment's edge, and the
group's size is whatever the clustering makes it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from segmenter.errors import CheckpointError
from segmenter.events import ENTERED, EXITED, InsiderEvent, Reason, snapshot
from segmenter.features import SECONDS_PER_DAY, CustomerFeatures
from segmenter.model import INSIDER_SEGMENT, Assessment
from segmenter.state import Fields

# An Insider this far (in units of the gap between two centres) below the exit edge
# after their own lines (a step) leaves without waiting out the dwell: losing what they
# bought (a £168k order returned the same day) does that. The sweep, where only time and
# the model's drift moved them, never waives the dwell.
HARD_EXIT_GAP = 1.0


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

    target_share: float | None = 0.12
    share_band: float = 0.015
    entry_margin: float = 0.3
    exit_margin: float = 0.3
    min_dwell_days: float = 30.0
    lapse_days: float = 120.0
    overdue_factor: float = 2.0

    def __post_init__(self) -> None:
        if self.target_share is not None and not (
            0 < self.target_share < 1 and 0 <= self.share_band < self.target_share
        ):
            raise ValueError(
                f"target share {self.target_share} with band {self.share_band}: want "
                "0 < target < 1 and 0 <= band < target"
            )

    def to_state(self) -> dict[str, Any]:
        """The rules as JSON-ready data.

        >>> PolicySettings.from_state(PolicySettings(lapse_days=90).to_state()).lapse_days
        90
        """
        return asdict(self)

    @classmethod
    def from_state(cls, state: object, path: str = "policy") -> PolicySettings:
        """Rules ``to_state`` described; each a finite number, kept as written (30 stays 30).

        A policy saved before target shares existed has none (its fixed edges stand).
        """
        if isinstance(state, dict) and "target_share" not in state:
            state = {"target_share": None, "share_band": 0.0, **state}
        doc = Fields(state, path, tuple(f.name for f in fields(cls)))
        values: dict[str, Any] = {
            name: doc.number(name) for name in doc.value if name != "target_share"
        }
        try:
            return cls(target_share=doc.optional_number("target_share"), **values)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Edges:
    """Margins at which a customer enters (at or above ``entry``) and leaves (below ``exit``).

    ``note`` says where they come from, for the reasons of events.
    """

    entry: float
    exit: float
    note: str = ""
    top_segment_only: bool = False  # fixed edges: enter only from the top segment itself


@dataclass(frozen=True, slots=True)
class Calibration:
    """Edges set by one ranking of every customer, and what they were set from.

    >>> margins = np.array([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5])
    >>> c = calibrate(margins, np.ones(10, dtype=bool), 0.3, 0.1, at=0)
    >>> c.edges.entry, c.edges.exit  # ranks 2 and 4 of 10: 20% and 40%
    (1.5, 0.5)
    >>> c = calibrate(margins, margins < 1.2, 0.3, 0.1, at=0)  # the top two lapsed
    >>> c.edges.entry, c.edges.exit, c.eligible
    (0.5, -0.5, 8)
    """

    edges: Edges
    customers: int  # customers known (with a purchase)
    eligible: int  # of them, not lapsed: the ones ranked
    at: int  # clock value of the ranking
    # Insiders now: after the ranking, then counted up and down by each entry and exit.
    members: int = 0
    # Steps admit no one past this many members (the top of the band); 0: no cap.
    cap: int = 0
    # Customers first seen since the ranking: the share falls as they arrive.
    joined: int = 0

    @property
    def full(self) -> bool:
        return self.cap > 0 and self.members >= self.cap

    def moved(self, change: int) -> Calibration:
        """The same edges, with one Insider more (+1) or fewer (-1)."""
        return replace(self, members=self.members + change)

    def grown(self, joined: int) -> Calibration:
        """The same edges, with ``joined`` customers more known."""
        return replace(self, joined=self.joined + joined)

    def below(self, share: float) -> bool:
        """Whether the Insiders are now under ``share`` of the customers known."""
        return self.members < share * (self.customers + self.joined)

    def to_state(self) -> dict[str, Any]:
        def finite(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {
            "entry": finite(self.edges.entry),
            "exit": finite(self.edges.exit),
            "note": self.edges.note,
            "customers": self.customers,
            "eligible": self.eligible,
            "at": self.at,
            "members": self.members,
            "cap": self.cap,
            "joined": self.joined,
        }

    @classmethod
    def from_state(cls, state: object, path: str = "calibration") -> Calibration:
        doc = Fields(
            state,
            path,
            ("entry", "exit", "note", "customers", "eligible", "at", "members", "cap", "joined"),
        )
        entry, exit_ = doc.optional_number("entry"), doc.optional_number("exit")
        return cls(
            Edges(
                math.inf if entry is None else entry,
                -math.inf if exit_ is None else exit_,
                doc.string("note"),
            ),
            doc.integer("customers"),
            doc.integer("eligible"),
            doc.integer("at", minimum=None),
            doc.integer("members"),
            doc.integer("cap"),
            doc.integer("joined"),
        )


def calibrate(
    margins: np.ndarray, eligible: np.ndarray, target: float, band: float, at: int
) -> Calibration:
    """Edges that put ``target ± band`` of all customers inside, ranked by margin.

    ``margins`` has one value per known customer; ``eligible`` masks those who may be
    ranked (not lapsed). The entry edge is the margin of the eligible customer ranked
    ``floor((target - band) * n)``; the exit edge that of rank ``ceil((target + band) * n)``.
    With fewer eligible customers than that, every eligible customer may enter (or stay).
    """
    n = len(margins)
    ranked = np.sort(margins[eligible])[::-1]
    enter_rank = math.floor((target - band) * n + 1e-9)
    stay_rank = math.ceil((target + band) * n - 1e-9)

    def at_rank(rank: int, none: float) -> float:
        if rank < 1 or not len(ranked):
            return none
        return float(ranked[min(rank, len(ranked)) - 1])

    entry = at_rank(enter_rank, math.inf)
    exit_ = at_rank(stay_rank, -math.inf) if stay_rank <= len(ranked) else -math.inf
    note = f"set for {target:.1%} of {n:,} customers, ±{band:.1%}"
    return Calibration(Edges(entry, exit_, note), n, len(ranked), at, cap=max(stay_rank, 1))


def describe(assessment: Assessment, limit: int = 2) -> str:
    """The strongest drivers in words, e.g. "frequency 2.1 (Insiders ~1.4)"."""
    parts = []
    for d in assessment.drivers[:limit]:
        direction = "for" if d.pull > 0 else "against"
        parts.append(f"{d.feature} {d.value:,.1f} {direction} (Insiders ~{d.insider_typical:,.1f})")
    return "; ".join(parts)


def usual_gap(features: CustomerFeatures) -> float | None:
    """Days between two purchases, on average: first to last purchase over the gaps between
    invoices. None with a single invoice (no rhythm yet).

    >>> from segmenter.features import CustomerState, features_of
    >>> s = CustomerState(lines=4, invoices=4, first_ts=0, last_ts=90 * SECONDS_PER_DAY)
    >>> usual_gap(features_of(s, 100 * SECONDS_PER_DAY))
    30.0
    """
    first, last = features.first_purchase_at, features.last_purchase_at
    if features.invoices < 2 or first is None or last is None:
        return None
    return (last - first).total_seconds() / SECONDS_PER_DAY / (features.invoices - 1)


def overdue(features: CustomerFeatures, rules: PolicySettings) -> bool:
    """More than ``overdue_factor`` times the customer's usual gap since the last purchase
    (with one invoice: more than ``lapse_days``).

    >>> from segmenter.features import CustomerState, features_of
    >>> s = CustomerState(lines=4, invoices=4, first_ts=0, last_ts=90 * SECONDS_PER_DAY)
    >>> overdue(features_of(s, 140 * SECONDS_PER_DAY), PolicySettings())  # gap 30, 50 days
    False
    >>> overdue(features_of(s, 160 * SECONDS_PER_DAY), PolicySettings())  # gap 30, 70 days
    True
    """
    recency = features.recency_days or 0.0
    gap = usual_gap(features)
    return recency > (rules.lapse_days if gap is None else rules.overdue_factor * gap)


def lapse_after(features: CustomerFeatures, rules: PolicySettings) -> float:
    """Days without a purchase after which the customer has lapsed: ``lapse_days``, or
    ``overdue_factor`` times their usual gap if that is longer.

    A customer who buys every 90 days has not lapsed on day 121: their own rhythm says the
    next order is not late yet.

    >>> from segmenter.features import CustomerState, features_of
    >>> quarterly = CustomerState(lines=5, invoices=5, first_ts=0, last_ts=360 * SECONDS_PER_DAY)
    >>> lapse_after(features_of(quarterly, 400 * SECONDS_PER_DAY), PolicySettings())
    180.0
    >>> once = CustomerState(lines=1, invoices=1, first_ts=0, last_ts=0)
    >>> lapse_after(features_of(once, 0), PolicySettings())
    120.0
    """
    gap = usual_gap(features)
    return rules.lapse_days if gap is None else max(rules.lapse_days, rules.overdue_factor * gap)


def lapsed(features: CustomerFeatures, rules: PolicySettings) -> bool:
    """No purchase for longer than :func:`lapse_after`."""
    return (features.recency_days or 0.0) > lapse_after(features, rules)


def lapse_after_days(
    invoices: np.ndarray, span_days: np.ndarray, rules: PolicySettings
) -> np.ndarray:
    """:func:`lapse_after` for many customers at once; ``span_days`` is the time from the
    first purchase to the last."""
    repeat = invoices >= 2
    gap = span_days / np.where(repeat, invoices - 1, 1)
    return np.where(
        repeat, np.maximum(rules.lapse_days, rules.overdue_factor * gap), rules.lapse_days
    )


def lapsed_mask(
    recency_days: np.ndarray, invoices: np.ndarray, span_days: np.ndarray, rules: PolicySettings
) -> np.ndarray:
    """:func:`lapsed` for many customers at once (the daily ranking)."""
    return recency_days > lapse_after_days(invoices, span_days, rules)


def overdue_mask(
    recency_days: np.ndarray, invoices: np.ndarray, span_days: np.ndarray, rules: PolicySettings
) -> np.ndarray:
    """:func:`overdue` for many customers at once (the report's "at risk")."""
    repeat = invoices >= 2
    gap = span_days / np.where(repeat, invoices - 1, 1)
    return recency_days > np.where(repeat, rules.overdue_factor * gap, rules.lapse_days)


@dataclass(frozen=True)
class InsiderPolicy:
    """Membership decisions with hysteresis, a minimum dwell and a lapse rule.

    >>> from segmenter.features import CustomerState, features_of
    >>> f = features_of(CustomerState(lines=1, invoices=1, first_ts=0, last_ts=0), 0)
    >>> policy = InsiderPolicy()
    >>> edges = Edges(entry=0.3, exit=-0.3)
    >>> status, event = policy.decide("42", InsiderStatus(), Assessment(1, 0.3), f, 0, 3, edges)
    >>> status.insider, event.event_id, event.type, event.reason.code
    (True, '42:1', 'insider.entered', 'top_segment')
    >>> policy.decide("42", status, Assessment(2, -0.01), f, 0, 4, edges)[1] is None  # in the band
    True
    """

    settings: PolicySettings = PolicySettings()

    @property
    def fixed_edges(self) -> Edges:
        """The edges without a target share: fixed margins around the top segment's edge."""
        rules = self.settings
        return Edges(rules.entry_margin, -rules.exit_margin, "", top_segment_only=True)

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
        edges: Edges | None,
        sweep: bool = False,
    ) -> tuple[InsiderStatus, InsiderEvent | None]:
        """The customer's next status, and the event if membership changes.

        ``edges`` None (not calibrated yet): nobody enters, and only lapses exit.
        """
        rules = self.settings
        new = replace(status, segment=assessment.segment, model_version=model_version)
        margin = assessment.margin
        recency = features.recency_days if features.recency_days is not None else 0.0
        reason: Reason | None = None
        if not status.insider:
            if (
                edges is not None
                and margin is not None
                and margin >= edges.entry
                and (assessment.segment == INSIDER_SEGMENT or not edges.top_segment_only)
                and not lapsed(features, rules)
            ):
                reason = Reason(
                    "top_segment",
                    f"margin {margin:.2f} at or above the entry edge {edges.entry:.2f}"
                    + (f" ({edges.note})" if edges.note else "")
                    + ": "
                    + describe(assessment),
                )
        elif lapsed(features, rules):
            reason = Reason(
                "lapsed",
                f"no purchase for {recency:.0f} days (limit {rules.lapse_days:.0f}, and more "
                f"than {rules.overdue_factor:g} times their usual gap)",
            )
        elif edges is not None and margin is not None and margin < edges.exit:
            since = status.insider_since if status.insider_since is not None else now_ts
            dwell = (now_ts - since) / SECONDS_PER_DAY
            # Only the customer's own lines (a step, not the sweep) can waive the dwell.
            hard = not sweep and margin < edges.exit - HARD_EXIT_GAP
            is_overdue = overdue(features, rules)
            # Without a target share, time alone only takes out the overdue (see above).
            timely = not sweep or is_overdue or rules.target_share is not None
            if (dwell >= rules.min_dwell_days or hard) and timely:
                code = ("lapsed" if is_overdue else "outranked") if sweep else "left_top_segment"
                reason = Reason(
                    code,
                    f"margin {margin:.2f} below the exit edge {edges.exit:.2f} after "
                    f"{dwell:.0f} days: " + describe(assessment),
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
