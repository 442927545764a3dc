"""Hypothesis against the record parser: any input becomes a line or a dead-letter reason."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.records import DateParser, parse_record
from segmenter.errors import InvalidRecord
from segmenter.lines import InvoiceLine
from tests.consumer.test_records import VALID

REASONS = {
    "not_json",
    "unknown_layout",
    "missing_field",
    "wrong_type",
    "zero_quantity",
    "bad_date",
    "negative_price",
    "bad_customer_id",
    "too_large",
    "out_of_range",
    "implausible_date",
    "tombstone",
}  # not "unreadable": that is the parser's safety net; a case reaching it is a missed check

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
# Near-valid: a valid record with some fields replaced by arbitrary JSON or removed.
NEAR_VALID = st.fixed_dictionaries(
    {},
    optional={name: JSON_VALUES | st.just(value) for name, value in VALID.items()},
)
DATES = st.datetimes().map(lambda d: d.isoformat()) | st.text(max_size=40)


def outcome(raw: bytes | None) -> InvoiceLine | str:
    try:
        return parse_record(raw, DateParser(now=1_800_000_000))
    except InvalidRecord as rejected:
        assert rejected.reason in REASONS
        assert rejected.detail and "\n" not in rejected.detail
        return rejected.reason


FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw):
    outcome(raw)


@FAST
@given(NEAR_VALID)
def test_near_valid_records(doc):
    result = outcome(json.dumps(doc).encode())
    if isinstance(result, InvoiceLine):
        assert result.quantity != 0 and result.unit_price_micros >= 0


@FAST
@given(DATES, st.integers(min_value=-(2**70), max_value=2**70), st.floats())
def test_dates_quantities_and_prices(date, quantity, price):
    # json writes big integers, inf and nan too (the last two are not JSON: not_json).
    doc = {**VALID, "invoice_date": date, "quantity": quantity, "unit_price": price}
    outcome(json.dumps(doc).encode())
