"""Validation of raw invoice records (JSON bytes) into :class:`InvoiceLine`.

Every rejection is an :class:`InvalidRecord` with a machine-readable ``reason``
(the dead-letter topic groups by it) and a one-line ``detail`` naming the field
and the value. This is the hot path of ingest: plain code, no model classes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from segmenter.errors import InvalidRecord
from segmenter.lines import MICROS_PER_POUND, InvoiceLine

MAX_RECORD_BYTES = 64 * 1024
CUSTOMER_ID = re.compile(r"[0-9A-Za-z_.-]{1,64}")  # fullmatch: "$" would let a newline in

REQUIRED = (
    "event_id",
    "invoice_no",
    "stock_code",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
)

_REQUIRED = frozenset(REQUIRED)

_EPOCH = datetime(1970, 1, 1)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class DateParser:
    """ISO 8601 to epoch seconds, memoising the last value: lines of one invoice share a date."""

    __slots__ = ("_last_text", "_last_ts")

    def __init__(self) -> None:
        self._last_text: str | None = None
        self._last_ts = 0

    def __call__(self, text: str) -> int:
        if text == self._last_text:
            return self._last_ts
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        ts = int((moment - _EPOCH).total_seconds())
        self._last_text, self._last_ts = text, ts
        return ts


def parse_record(raw: bytes, parse_date: DateParser | None = None) -> InvoiceLine:
    """Validate one record; raise :class:`InvalidRecord` naming what is wrong.

    >>> rec = (b'{"event_id": "536365:0", "invoice_no": "536365", "stock_code": "85123A",'
    ...        b' "description": "HEART", "quantity": 6, "invoice_date": "2010-12-01T08:26:00",'
    ...        b' "unit_price": 2.55, "customer_id": "17850", "country": "United Kingdom"}')
    >>> parse_record(rec).unit_price_micros
    2550000
    >>> parse_record(rec.replace(b'"quantity": 6', b'"quantity": 0'))
    Traceback (most recent call last):
    ...
    segmenter.errors.InvalidRecord: zero_quantity: event 536365:0: field 'quantity' is 0
    """
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord(
            "too_large", f"record is {len(raw):,} bytes, limit {MAX_RECORD_BYTES:,}"
        )
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord("not_json", f"not JSON ({exc.msg}): {_short(raw[:40])}") from None
    if not isinstance(doc, dict) or _REQUIRED.isdisjoint(doc):
        keys = sorted(doc)[:5] if isinstance(doc, dict) else type(doc).__name__
        raise InvalidRecord("unknown_layout", f"not an invoice-line record: {_short(keys)}")
    event_id = doc.get("event_id")
    where = f"event {event_id}" if isinstance(event_id, str) and event_id else "record"
    if not doc.keys() >= _REQUIRED:
        missing = [name for name in REQUIRED if name not in doc]
        raise InvalidRecord("missing_field", f"{where}: missing field(s) {', '.join(missing)}")

    def wrong(field: str, expected: str) -> InvalidRecord:
        value = _short(doc[field])
        return InvalidRecord("wrong_type", f"{where}: field {field!r} is {value}, want {expected}")

    if not isinstance(event_id, str) or not event_id:
        raise wrong("event_id", "a non-empty string")
    invoice_no = doc["invoice_no"]
    if not isinstance(invoice_no, str) or not invoice_no:
        raise wrong("invoice_no", "a non-empty string")
    stock_code = doc["stock_code"]
    if not isinstance(stock_code, str):
        raise wrong("stock_code", "a string")
    quantity = doc["quantity"]
    if type(quantity) is not int:
        raise wrong("quantity", "an integer")
    if quantity == 0:
        raise InvalidRecord("zero_quantity", f"{where}: field 'quantity' is 0")
    price = doc["unit_price"]
    if type(price) not in (int, float):
        raise wrong("unit_price", "a number")
    if price < 0:
        raise InvalidRecord("negative_price", f"{where}: field 'unit_price' is {price}")
    customer = doc["customer_id"]
    if customer is not None:
        if type(customer) is int:
            customer = str(customer)
        elif not isinstance(customer, str):
            raise wrong("customer_id", "a string or null")
        if customer == "":
            customer = None
        elif not CUSTOMER_ID.fullmatch(customer):
            raise InvalidRecord(
                "bad_customer_id", f"{where}: field 'customer_id' is {_short(customer)}"
            )
    date_text = doc["invoice_date"]
    if not isinstance(date_text, str):
        raise wrong("invoice_date", "an ISO 8601 string")
    try:
        ts = (parse_date or DateParser())(date_text)
    except ValueError:
        raise InvalidRecord(
            "bad_date", f"{where}: field 'invoice_date' is {_short(date_text)}, not ISO 8601"
        ) from None
    country = doc.get("country")
    description = doc.get("description")
    return InvoiceLine(
        event_id=event_id,
        invoice_no=invoice_no,
        stock_code=stock_code,
        quantity=quantity,
        invoice_ts=ts,
        unit_price_micros=round(price * MICROS_PER_POUND),
        customer_id=customer,
        country=country if isinstance(country, str) else "",
        description=description if isinstance(description, str) else "",
    )
