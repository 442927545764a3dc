"""parse_record: each rejection reason names the field and value; valid records normalise."""

from __future__ import annotations

import calendar
import json

import pytest

from consumer.records import DateParser, parse_record
from segmenter.errors import InvalidRecord
from segmenter.lines import InvoiceLine

VALID = {
    "event_id": "536365:0",
    "invoice_no": "536365",
    "stock_code": "85123A",
    "description": "WHITE HANGING HEART T-LIGHT HOLDER",
    "quantity": 6,
    "invoice_date": "2010-12-01T08:26:00",
    "unit_price": 2.55,
    "customer_id": "17850",
    "country": "United Kingdom",
}
TS_0826 = calendar.timegm((2010, 12, 1, 8, 26, 0, 0, 0, 0))


def record(drop: tuple[str, ...] = (), **changes) -> bytes:
    doc = {k: v for k, v in VALID.items() if k not in drop}
    doc.update(changes)
    return json.dumps(doc).encode()


BIG = record(description="x" * (1024 * 1024))

REJECTED = [
    pytest.param(b"{oops", "not_json", ["not JSON", "{oops"], id="not-json"),
    pytest.param(b"[1, 2, 3]", "unknown_layout", ["list"], id="json-list"),
    pytest.param(
        b'{"InvoiceNo": "536365", "Quantity": 6}',
        "unknown_layout",
        ["InvoiceNo"],
        id="uci-column-names",
    ),
    pytest.param(
        record(drop=("unit_price", "customer_id")),
        "missing_field",
        ["536365:0", "unit_price", "customer_id"],
        id="missing-fields",
    ),
    pytest.param(
        record(quantity="6"), "wrong_type", ["536365:0", "quantity", "'6'"], id="quantity-str"
    ),
    pytest.param(
        record(quantity=6.0), "wrong_type", ["536365:0", "quantity", "6.0"], id="quantity-float"
    ),
    pytest.param(
        record(quantity=True), "wrong_type", ["536365:0", "quantity", "True"], id="quantity-bool"
    ),
    pytest.param(
        record(unit_price="2.55"),
        "wrong_type",
        ["536365:0", "unit_price", "'2.55'"],
        id="price-str",
    ),
    pytest.param(
        record(customer_id=1.5), "wrong_type", ["536365:0", "customer_id", "1.5"], id="cust-float"
    ),
    pytest.param(
        record(invoice_date=20101201),
        "wrong_type",
        ["536365:0", "invoice_date", "20101201"],
        id="date-int",
    ),
    pytest.param(
        record(quantity=0), "zero_quantity", ["536365:0", "quantity", "0"], id="zero-quantity"
    ),
    pytest.param(
        record(invoice_date="2010-13-45 99:00"),
        "bad_date",
        ["536365:0", "invoice_date", "2010-13-45 99:00"],
        id="bad-date",
    ),
    pytest.param(
        record(unit_price=-1.5),
        "negative_price",
        ["536365:0", "unit_price", "-1.5"],
        id="negative-price",
    ),
    pytest.param(BIG, "too_large", [f"{len(BIG):,}", "bytes"], id="one-megabyte"),
    pytest.param(
        record(customer_id="a b"),
        "bad_customer_id",
        ["536365:0", "customer_id", "'a b'"],
        id="bad-customer-id",
    ),
]


@pytest.mark.parametrize(("raw", "reason", "named"), REJECTED)
def test_rejections_carry_the_reason_and_name_field_and_value(raw, reason, named):
    """Each invalid record raises InvalidRecord with its reason; the message names what is wrong."""
    with pytest.raises(InvalidRecord) as caught:
        parse_record(raw)
    error = caught.value
    assert error.reason == reason
    message = str(error)
    assert message.startswith(f"{reason}: ")
    for text in named:
        assert text in message
    assert "\n" not in message


def test_a_valid_record_becomes_an_invoice_line():
    """All fields carried over; money in micro-pounds, time in epoch seconds."""
    assert parse_record(record()) == InvoiceLine(
        event_id="536365:0",
        invoice_no="536365",
        stock_code="85123A",
        quantity=6,
        invoice_ts=TS_0826,
        unit_price_micros=2_550_000,
        customer_id="17850",
        country="United Kingdom",
        description="WHITE HANGING HEART T-LIGHT HOLDER",
    )


def test_an_integer_customer_id_becomes_a_string():
    """customer_id 17850 (a JSON number) is the customer '17850'."""
    assert parse_record(record(customer_id=17850)).customer_id == "17850"


@pytest.mark.parametrize("customer", [None, ""])
def test_a_null_or_empty_customer_is_no_customer(customer):
    """null and "" both mean a line without a customer (valid, ignored later)."""
    assert parse_record(record(customer_id=customer)).customer_id is None


@pytest.mark.parametrize(
    ("price", "micros"), [(0.001, 1_000), (0, 0), (2.55, 2_550_000), (1e-06, 1), (3, 3_000_000)]
)
def test_prices_become_exact_micro_pounds(price, micros):
    """unit_price in pounds is rounded to whole micro-pounds."""
    assert parse_record(record(unit_price=price)).unit_price_micros == micros


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2010-12-01T08:26:00+01:00", (2010, 12, 1, 7, 26, 0)),
        ("2010-12-01T08:26:00-05:30", (2010, 12, 1, 13, 56, 0)),
        ("2010-12-01T08:26:00Z", (2010, 12, 1, 8, 26, 0)),
        ("2010-12-01T00:30:00+02:00", (2010, 11, 30, 22, 30, 0)),
        ("2010-12-01 08:26:00", (2010, 12, 1, 8, 26, 0)),
    ],
)
def test_dates_become_utc_epoch_seconds(text, utc):
    """An aware date is converted to UTC; a naive one is read as it stands."""
    expected = calendar.timegm((*utc, 0, 0, 0))
    assert parse_record(record(invoice_date=text)).invoice_ts == expected


def test_a_shared_date_parser_tracks_changing_dates():
    """The memoising parser still returns each record's own date."""
    parse = DateParser()
    dates = ["2010-12-01T08:26:00", "2010-12-01T08:26:00", "2011-01-02T10:00:00"]
    dates += ["2010-12-01T08:26:00"]
    got = [parse_record(record(invoice_date=d), parse).invoice_ts for d in dates]
    later = calendar.timegm((2011, 1, 2, 10, 0, 0, 0, 0, 0))
    assert got == [TS_0826, TS_0826, later, TS_0826]


def test_a_return_line_is_accepted():
    """A negative quantity is a return, not an error."""
    line = parse_record(
        record(event_id="C536379:0", invoice_no="C536379", stock_code="22423", quantity=-2)
    )
    assert (line.invoice_no, line.stock_code, line.quantity) == ("C536379", "22423", -2)
    assert line.unit_price_micros == 2_550_000


def test_an_empty_date_is_rejected():
    """invoice_date "" is not ISO 8601: the record must go to the dead-letter topic."""
    with pytest.raises(InvalidRecord) as caught:
        parse_record(record(invoice_date=""))
    assert caught.value.reason == "bad_date"


# Issue "bad input": records that used to crash the consumer or poison its state.
NOW = calendar.timegm((2026, 11, 29, 12, 0, 0, 0, 0, 0))

POISON = [
    pytest.param(None, "tombstone", ["tombstone"], id="tombstone"),
    pytest.param(
        record(unit_price=1e308), "out_of_range", ["unit_price", "1e+308"], id="price-1e308"
    ),
    pytest.param(
        record(quantity=2**62), "out_of_range", ["quantity", str(2**62)], id="quantity-2^62"
    ),
    pytest.param(
        record(quantity=10_000_000, unit_price=1e12), "out_of_range", ["quantity"], id="qty-1e7"
    ),
    pytest.param(
        record(quantity=1_000_000, unit_price=1_000_000),
        "out_of_range",
        ["quantity 1000000 × unit_price 1000000"],
        id="amount-1e12",
    ),
    pytest.param(
        record(invoice_date="0001-01-01T00:00:00+01:00"),
        "implausible_date",
        ["invoice_date", "0001-01-01T00:00:00+01:00"],
        id="year-1-offset",
    ),
    pytest.param(
        record(invoice_date="9999-12-31T23:59:59-01:00"),
        "implausible_date",
        ["9999-12-31T23:59:59-01:00"],
        id="year-9999-offset",
    ),
    pytest.param(
        record(invoice_date="9999-12-31T23:59:59"), "implausible_date", ["9999"], id="year-9999"
    ),
    pytest.param(
        record(invoice_date="1989-12-31T23:59:59"), "implausible_date", ["1989"], id="before-1990"
    ),
    pytest.param(
        record(invoice_date="2026-12-01T12:00:01"),
        "implausible_date",
        ["2026-12-01T12:00:01"],
        id="two-days-ahead",
    ),
    pytest.param(record(customer_id=1.5), "wrong_type", ["customer_id", "1.5"], id="cust-1.5"),
]


@pytest.mark.parametrize(("raw", "reason", "named"), POISON)
def test_poison_records_are_rejected_with_a_reason(raw, reason, named):
    with pytest.raises(InvalidRecord) as rejected:
        parse_record(raw, DateParser(now=NOW))
    assert rejected.value.reason == reason
    for text in named:
        assert text in rejected.value.detail


def test_a_date_a_day_ahead_is_still_accepted():
    line = parse_record(record(invoice_date="2026-11-30T11:59:59"), DateParser(now=NOW))
    assert line.invoice_ts == NOW + 86_400 - 1


def test_the_largest_real_line_is_within_bounds():
    # UCI's largest line: 80,995 units of 23843 at £2.08 (cancelled the same day).
    line = parse_record(record(quantity=80_995, unit_price=2.08))
    assert line.quantity * line.unit_price_micros == 168_469_600_000


@pytest.mark.parametrize("spelling", [90004, 90004.0, "90004", " 90004", "90004 ", "90004.0"])
def test_one_customer_one_id(spelling):
    assert parse_record(record(customer_id=spelling)).customer_id == "90004"
