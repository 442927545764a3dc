"""Feature spec v2: a customer's running state, its update rule, and the features it yields.

Spec v2 is spec v1 plus ``kept_value``: revenue minus returned value, the money the
customer kept. Value-based decisions (the model's money input, the ranking of segments,
the report's "most valuable") use it, so that a £168k order returned the same day is
worth what was kept, not £168k. Spec v1's columns are unchanged.

The running state holds only sums, counts and extremes, so applying lines is
commutative: any arrival order gives the same state. Features that depend on
time (recency, frequency) are derived from the state and a clock value ``now``
when they are read, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from segmenter.lines import MICROS_PER_POUND, InvoiceLine, LineKind

SECONDS_PER_DAY = 86_400

FEATURE_NAMES: tuple[str, ...] = (
    "revenue",
    "invoices",
    "lines",
    "units",
    "returned_value",
    "returned_units",
    "kept_value",
    "first_purchase_at",
    "last_purchase_at",
    "recency_days",
    "frequency",
    "avg_ticket",
)


@dataclass(slots=True)
class CustomerState:
    """Running totals of one customer; money in micro-pounds, times in epoch seconds."""

    revenue_micros: int = 0
    invoices: int = 0
    lines: int = 0
    units: int = 0
    returned_micros: int = 0
    returned_units: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    invoice_nos: set[str] = field(default_factory=set)

    @property
    def has_purchases(self) -> bool:
        return self.lines > 0

    def apply(self, line: InvoiceLine, kind: LineKind) -> None:
        """Fold one purchase or return line into the totals (spec v1).

        >>> s = CustomerState()
        >>> s.apply(InvoiceLine("a", "536365", "85123A", 6, 100, 2_550_000, "1"), LineKind.PURCHASE)
        >>> s.apply(InvoiceLine("b", "C536379", "85123A", -2, 200, 2_550_000, "1"), LineKind.RETURN)
        >>> s.revenue_micros, s.invoices, s.returned_units, s.first_ts, s.last_ts
        (15300000, 1, 2, 100, 100)
        """
        amount = abs(line.quantity) * line.unit_price_micros
        if kind is LineKind.PURCHASE:
            self.revenue_micros += amount
            self.lines += 1
            self.units += line.quantity
            if line.invoice_no not in self.invoice_nos:
                self.invoice_nos.add(line.invoice_no)
                self.invoices += 1
            ts = line.invoice_ts
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
        elif kind is LineKind.RETURN:
            self.returned_micros += amount
            self.returned_units += -line.quantity


@dataclass(frozen=True, slots=True)
class CustomerFeatures:
    """Spec v2 features of one customer as seen at clock value ``now``."""

    revenue: float
    invoices: int
    lines: int
    units: int
    returned_value: float
    returned_units: int
    kept_value: float  # revenue - returned_value (spec v2); negative if older purchases came back
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    recency_days: float | None
    frequency: float | None
    avg_ticket: float | None

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in FEATURE_NAMES}


def to_datetime(ts: int) -> datetime:
    """Epoch seconds to a naive datetime (event time carries no zone)."""
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def to_epoch(moment: datetime) -> int:
    """Naive (or aware) datetime to epoch seconds; naive is read as event-time UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def features_of(state: CustomerState, now_ts: int) -> CustomerFeatures:
    """Derive spec v2 features at ``now_ts``.

    >>> s = CustomerState(revenue_micros=30_000_000, invoices=2, lines=3, units=10,
    ...                   returned_micros=4_500_000, first_ts=0, last_ts=10 * SECONDS_PER_DAY)
    >>> f = features_of(s, 40 * SECONDS_PER_DAY)
    >>> f.revenue, f.kept_value, f.recency_days, f.frequency, f.avg_ticket
    (30.0, 25.5, 30.0, 1.5, 15.0)
    """
    revenue = state.revenue_micros / MICROS_PER_POUND
    if state.first_ts is None or state.last_ts is None:
        recency = frequency = avg_ticket = None
        first = last = None
    else:
        recency = (now_ts - state.last_ts) / SECONDS_PER_DAY
        tenure_days = (now_ts - state.first_ts) / SECONDS_PER_DAY
        frequency = state.invoices * 30 / max(30.0, tenure_days)
        avg_ticket = revenue / state.invoices
        first, last = to_datetime(state.first_ts), to_datetime(state.last_ts)
    return CustomerFeatures(
        revenue=revenue,
        invoices=state.invoices,
        lines=state.lines,
        units=state.units,
        returned_value=state.returned_micros / MICROS_PER_POUND,
        returned_units=state.returned_units,
        kept_value=(state.revenue_micros - state.returned_micros) / MICROS_PER_POUND,
        first_purchase_at=first,
        last_purchase_at=last,
        recency_days=recency,
        frequency=frequency,
        avg_ticket=avg_ticket,
    )
