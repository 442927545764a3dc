"""Validation of raw invoice records (JSON bytes) into :class:`InvoiceLine`.

Every rejection is an :class:`InvalidRecord` with a machine-readable ``reason``
(the dead-letter topic groups by it) and a one-line ``detail`` naming the field
and the value. This is the hot path of ingest: plain code, no model classes.

``stock_code`` may be null: the record is a whole order (a purchase) with no product
lines, as a retailer that sends orders has them; quantity 1 and the order's value as
unit price count it exactly.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from segmenter.errors import InvalidRecord
from segmenter.lines import MICROS_PER_POUND, InvoiceLine

MAX_RECORD_BYTES = 64 * 1024
CUSTOMER_ID = re.compile(r"[0-9A-Za-z_.-]{1,64}")  # fullmatch: "$" would let a newline in
# "90004.0", as spreadsheets and pandas write an integer id that went through a float.
INTEGRAL_ID = re.compile(r"([0-9]+)\.0*")

# Bounds of a line (out_of_range beyond them). The largest real line of the UCI file is 80,995
# units, its highest unit price £38,970, its largest amount £168,469.60. Within these bounds a
# line's amount is at most 10^14 micro-pounds, and a customer needs over 90,000 lines at the
# bound to come near the 64-bit range of their running sums (the apply script checks that too).
MAX_QUANTITY = 1_000_000
MAX_UNIT_PRICE = 1_000_000.0
MAX_LINE_AMOUNT = 100_000_000.0
# Dates: none before 1990 (no online retailer); none more than a day ahead of this machine's
# clock, so that one bad line cannot move the event clock into the future.
EARLIEST_DATE = datetime(1990, 1, 1)
FUTURE_TOLERANCE_SECONDS = 86_400

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


def _clip(text: str) -> str:
    r"""``text`` for a one-line message: escaped if it holds a line break or any other
    unprintable character (a log line must not be forged), and cut past 60 characters.

    >>> _clip("536365:0"), _clip("a\nb")
    ('536365:0', "'a\\nb'")
    """
    shown = text if text.isprintable() else repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_EARLIEST_TS = int((EARLIEST_DATE - _EPOCH).total_seconds())


class DateParser:
    """ISO 8601 to epoch seconds, memoising the last value: lines of one invoice share a date.

    A date it cannot read raises ``ValueError``; one outside [1990, now + 1 day] raises
    :class:`ImplausibleDate`. ``now`` is the machine's clock unless given (for tests).
    """

    __slots__ = ("_last_text", "_last_ts", "_now")

    def __init__(self, now: float | None = None) -> None:
        self._last_text: str | None = None
        self._last_ts = 0
        self._now = now

    def __call__(self, text: str) -> int:
        if text == self._last_text:
            return self._last_ts
        moment = datetime.fromisoformat(text)
        try:
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            ts = int((moment - _EPOCH).total_seconds())
        except OverflowError:  # year 1 or 9999 shifted past the calendar by its offset
            raise ImplausibleDate(text) from None
        now = time.time() if self._now is None else self._now
        if ts < _EARLIEST_TS or ts > now + FUTURE_TOLERANCE_SECONDS:
            raise ImplausibleDate(text)
        self._last_text, self._last_ts = text, ts
        return ts


class ImplausibleDate(ValueError):
    """A readable date no invoice can have."""


def customer_key(value: object) -> str | None:
    """The one id of a customer, whatever type or spelling the producer used.

    Surrounding blanks go, and an integer written as a float (``90004.0``) is that integer.
    None or an empty string means no customer. Anything else is kept as given.

    >>> [customer_key(v) for v in (90004, "90004", " 90004 ", "90004.0", 90004.0, "", None)]
    ['90004', '90004', '90004', '90004', '90004', None, None]
    >>> customer_key("C-17"), customer_key("17.5")
    ('C-17', '17.5')
    """
    if type(value) is str and value.isdecimal():  # the common case, spelled once
        return value
    if value is None:
        return None
    if type(value) is int:
        return str(value)
    if type(value) is float:
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    text = str(value).strip()
    integral = INTEGRAL_ID.fullmatch(text)
    if integral:
        return integral.group(1)
    return text or None


def parse_record(raw: bytes | None, parse_date: DateParser | None = None) -> InvoiceLine:
    """Validate one record; raise :class:`InvalidRecord` naming what is wrong.

    Nothing else escapes: whatever the bytes, the answer is a line or an ``InvalidRecord``.

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
    if raw is None:
        raise InvalidRecord("tombstone", "record has no value (a Kafka tombstone)")
    try:
        return _parse(raw, parse_date or DateParser())
    except InvalidRecord:
        raise
    except Exception as exc:  # a case the checks above missed: still a reason, never a crash
        raise InvalidRecord(
            "unreadable", f"record {_short(raw[:40])}: {type(exc).__name__}: {exc}"
        ) from None


def _parse(raw: bytes, parse_date: DateParser) -> InvoiceLine:
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
    where = f"event {_clip(event_id)}" if isinstance(event_id, str) and event_id else "record"
    if not doc.keys() >= _REQUIRED:
        missing = [name for name in REQUIRED if name not in doc]
        raise InvalidRecord("missing_field", f"{where}: missing field(s) {', '.join(missing)}")

    def wrong(field: str, expected: str) -> InvalidRecord:
        value = _short(doc[field])
        return InvalidRecord("wrong_type", f"{where}: field {field!r} is {value}, want {expected}")

    def out_of_range(field: str, bound: str) -> InvalidRecord:
        value = _short(doc[field])
        return InvalidRecord("out_of_range", f"{where}: field {field!r} is {value}, {bound}")

    if not isinstance(event_id, str) or not event_id:
        raise wrong("event_id", "a non-empty string")
    invoice_no = doc["invoice_no"]
    if not isinstance(invoice_no, str) or not invoice_no:
        raise wrong("invoice_no", "a non-empty string")
    stock_code = doc["stock_code"]
    if stock_code is not None and not isinstance(stock_code, str):
        raise wrong("stock_code", "a string or null (a whole order)")
    quantity = doc["quantity"]
    if type(quantity) is not int:
        raise wrong("quantity", "an integer")
    if quantity == 0:
        raise InvalidRecord("zero_quantity", f"{where}: field 'quantity' is 0")
    if abs(quantity) > MAX_QUANTITY:
        raise out_of_range("quantity", f"beyond ±{MAX_QUANTITY:,}")
    price = doc["unit_price"]
    if type(price) not in (int, float):
        raise wrong("unit_price", "a number")
    if price < 0:
        raise InvalidRecord("negative_price", f"{where}: field 'unit_price' is {price}")
    if not math.isfinite(price) or price > MAX_UNIT_PRICE:
        raise out_of_range("unit_price", f"above {MAX_UNIT_PRICE:,.0f}")
    if abs(quantity) * price > MAX_LINE_AMOUNT:
        raise InvalidRecord(
            "out_of_range",
            f"{where}: quantity {quantity} × unit_price {price} is above {MAX_LINE_AMOUNT:,.0f}",
        )
    raw_customer = doc["customer_id"]
    if raw_customer is not None and not (
        type(raw_customer) in (str, int)
        or (type(raw_customer) is float and raw_customer.is_integer())
    ):
        raise wrong("customer_id", "a string, an integer or null")
    customer = customer_key(raw_customer)
    if customer is not None and not CUSTOMER_ID.fullmatch(customer):
        raise InvalidRecord(
            "bad_customer_id", f"{where}: field 'customer_id' is {_short(raw_customer)}"
        )
    date_text = doc["invoice_date"]
    if not isinstance(date_text, str):
        raise wrong("invoice_date", "an ISO 8601 string")
    try:
        ts = parse_date(date_text)
    except ImplausibleDate:
        raise InvalidRecord(
            "implausible_date",
            f"{where}: field 'invoice_date' is {_short(date_text)}, "
            "before 1990 or more than a day ahead of this machine's clock",
        ) from None
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
