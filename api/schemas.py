"""Response models of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class Features(BaseModel):
    revenue: float = Field(description="Σ quantity × unit price over purchases, £")
    invoices: int = Field(description="distinct purchase invoices")
    lines: int
    units: int
    returned_value: float = Field(description="Σ |quantity| × unit price over returns, £")
    returned_units: int
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    recency_days: float | None = Field(description="days since the last purchase, as of `as_of`")
    frequency: float | None = Field(description="purchase invoices per 30 days")
    avg_ticket: float | None = Field(description="revenue per invoice, £")


class CustomerStatus(BaseModel):
    customer_id: str
    insider: bool
    insider_since: datetime | None
    segment: int | None = Field(description="value rank of the customer's segment; 1 = Insiders")
    model_version: int
    as_of: datetime | None = Field(description="the clock value time features are computed at")
    features: Features


class InsiderPage(BaseModel):
    total: int
    offset: int
    limit: int
    next_offset: int | None
    items: list[CustomerStatus]


class EventPage(BaseModel):
    events: list[dict[str, Any]]
    next_cursor: str | None = Field(description="pass as `after` to read on; null when none")


class Health(BaseModel):
    status: str = Field(description='"ok", or "unavailable" when the store does not answer')
    store: str = Field(description='"redis", or "memory" in the embedded mode')
    customers: int


class ErrorBody(BaseModel):
    detail: str
