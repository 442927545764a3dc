"""Response models of the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, PlainSerializer, WithJsonSchema


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC. Event time is the retailer's clock, stored without a zone: the API
    reads it as UTC, so every time it answers carries its offset.

    >>> as_utc(datetime(2011, 12, 9, 12, 50)).isoformat()
    '2011-12-09T12:50:00+00:00'
    """
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# A time in an answer: ISO 8601 with its offset, always "+00:00" (pydantic would write "Z";
# this is what Python's isoformat() gives, and the event time on Kafka plus its offset).
UtcDatetime = Annotated[
    datetime,
    AfterValidator(as_utc),
    PlainSerializer(lambda moment: moment.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Features(BaseModel):
    revenue: float = Field(description="Σ quantity × unit price over purchases, £")
    invoices: int = Field(description="distinct purchase invoices")
    lines: int
    units: int
    returned_value: float = Field(description="Σ |quantity| × unit price over returns, £")
    returned_units: int
    kept_value: float = Field(description="revenue - returned_value, £ (spec v2)")
    first_purchase_at: UtcDatetime | None
    last_purchase_at: UtcDatetime | None
    recency_days: float | None = Field(description="days since the last purchase, as of `as_of`")
    frequency: float | None = Field(description="purchase invoices per 30 days")
    avg_ticket: float | None = Field(description="revenue per invoice, £")


class Driver(BaseModel):
    feature: str = Field(description="spec v2 feature")
    value: float = Field(description="the customer's value")
    insider_typical: float = Field(description="the value at the centre of the Insider segment")
    effect: str = Field(description='"for" or "against" being an Insider')
    weight: float = Field(description="how strongly, in squared standardised units")


class Why(BaseModel):
    summary: str
    margin: float | None = Field(
        description="position against the Insider edge: > 0 inside the top segment, < 0 outside"
    )
    to_change: float | None = Field(description="how far the margin must move to flip the status")
    lapse_in_days: float | None = Field(
        description="Insiders: days without a purchase until a lapse exit"
    )
    drivers: list[Driver]


class CustomerStatus(BaseModel):
    customer_id: str
    insider: bool
    insider_since: UtcDatetime | None
    segment: int | None = Field(description="value rank of the customer's segment; 1 = Insiders")
    model_version: int
    as_of: UtcDatetime | None = Field(description="the clock value time features are computed at")
    features: Features
    why: Why | None = Field(default=None, description="what puts the customer in or out")


class EventReason(BaseModel):
    code: str = Field(description="top_segment | left_top_segment | outranked | lapsed")
    text: str = Field(description="the reason in a sentence")


class HistoryEntry(BaseModel):
    event_id: str = Field(description="<customer>:<sequence>; subscribers dedupe by it")
    type: str = Field(description="insider.entered | insider.exited")
    at: UtcDatetime = Field(description="event time")
    reason: EventReason
    segment: int | None
    model_version: int


class Event(BaseModel):
    """An entry or exit as `/events` and `/events/stream` serve it: the event on Kafka, with
    its times given their offset."""

    event_id: str = Field(description="<customer>:<sequence>; subscribers dedupe by it")
    type: str = Field(description="insider.entered | insider.exited")
    customer_id: str
    at: UtcDatetime = Field(description="event time")
    reason: EventReason
    features: Features = Field(description="the customer's features at the event")
    segment: int | None
    model_version: int


class History(BaseModel):
    customer_id: str
    insider: bool
    events: list[HistoryEntry]


class Stats(BaseModel):
    customers: int
    insiders: int
    model_version: int
    as_of: UtcDatetime | None
    events: dict[str, int] = Field(description="events so far by <type>:<reason code>")
    policy: dict[str, float | None] = Field(
        description="the entry and exit rules in force; target_share null: no target share"
    )


class InsiderPage(BaseModel):
    total: int
    offset: int
    limit: int
    next_offset: int | None
    items: list[CustomerStatus]


class EventPage(BaseModel):
    events: list[Event]
    next_cursor: str | None = Field(description="pass as `after` to read on; null when none")


class Health(BaseModel):
    status: str = Field(description='"ok", or "unavailable" when the store does not answer')
    store: str = Field(description='"redis", or "memory" in the embedded mode')
    customers: int


class ErrorBody(BaseModel):
    detail: str


class Estimate(BaseModel):
    estimate: float | None
    low: float | None = Field(description="bootstrap 95% interval, low end")
    high: float | None


class Trait(BaseModel):
    name: str
    label: str
    unit: str
    insiders: float | None = Field(description="median over the Insiders")
    rest: float | None = Field(description="median over the other customers")


class SegmentRow(BaseModel):
    segment: int | None = Field(description="value rank, 1 = the Insiders' segment; null = not yet")
    customers: int
    insiders: int
    customer_share: float
    revenue_share: float
    median_revenue: float | None
    expected_revenue: float = Field(description="at their own pace, over `horizon_days`, £")


class EvidenceItem(BaseModel):
    claim: str
    holds: bool


class ActionItem(BaseModel):
    key: str = Field(description="welcome | at_risk | nearly | win_back")
    title: str
    why: str
    count: int
    customer_ids: list[str] = Field(description="the most valuable first, at most 20")


class WeekRow(BaseModel):
    start: UtcDatetime = Field(description="Monday 00:00, event time")
    entries: int
    exits: int
    insiders: int = Field(description="Insiders at the week's end")


class TopCustomer(BaseModel):
    customer_id: str
    revenue: float
    kept_value: float = Field(description="revenue minus returned value, £ (what ranks them)")


class Report(BaseModel):
    as_of: UtcDatetime | None
    model_version: int = Field(ge=0)
    customers: int = Field(ge=0)
    insiders: int = Field(ge=0)
    customer_share: float = Field(description="Insiders / customers")
    revenue: float = Field(description="revenue of all customers so far, £")
    revenue_share: float = Field(description="the Insiders' share of it")
    horizon_days: int = Field(ge=0)
    expected_revenue: dict[str, float] = Field(
        description="£ over `horizon_days` at each customer's own pace: Insiders, rest"
    )
    mean_revenue: dict[str, Estimate] = Field(description="per customer, £: Insiders, rest")
    top_insiders: list[TopCustomer]
    traits: list[Trait] = Field(description="what characterises the Insiders")
    segments: list[SegmentRow]
    insider_centre: dict[str, float] = Field(description="the Insider segment's centre")
    conditions: list[str] = Field(description="entry and exit conditions in words")
    policy: dict[str, float | None] = Field(
        description="the Insider policy's settings; target_share null: no target share"
    )
    movement: dict[str, int] = Field(description="events of the last 30 days by type:reason")
    flaps: dict[str, int] = Field(description="last 90 days: Insiders, left and back within 30")
    weeks: list[WeekRow] = Field(description="the last 12 weeks of membership, oldest first")
    evidence: list[EvidenceItem]
    actions: list[ActionItem]
