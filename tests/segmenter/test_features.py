"""Feature spec v1, incremental against batch: folding lines one at a time must agree with
the independent pandas computation in ``tests/reference.py`` on the same lines."""

from __future__ import annotations

import calendar
import importlib.util
import random
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from segmenter.features import CustomerState, features_of
from segmenter.lines import IgnoreReason, InvoiceLine, LineKind, classify

try:
    from tests.reference import spec_v1
except ImportError:  # ``tests`` is not a package on sys.path: load the module from its file
    _spec = importlib.util.spec_from_file_location(
        "insiders_tests_reference", Path(__file__).resolve().parents[1] / "reference.py"
    )
    assert _spec is not None and _spec.loader is not None
    _reference = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_reference)
    spec_v1 = _reference.spec_v1

DAY = 86_400
BASE = datetime(2010, 12, 1, 8, 0, 0)
CUSTOMERS = [str(12_346 + 37 * i) for i in range(20)]
RETURNS_ONLY = "19999"
PRODUCTS = ["85123A", "71053", "84406B", "22423", "21730", "84029g", "10002", "90214Zz"]
NOT_PRODUCTS = ["POST", "DOT", "M", "C2", "BANK CHARGES", "gift_0001_20", "DCGS0069", "PADS"]
NOT_PRODUCTS += ["8512", "851234", "85123ABC", "B"]
PRICES = [10_000, 420_000, 1_250_000, 2_550_000, 12_345_678, 1, 999_999_999]


def epoch(moment: datetime) -> int:
    """Epoch seconds of a naive datetime read as UTC (computed without the project's helpers)."""
    return calendar.timegm(moment.timetuple())


def random_lines(seed: int) -> list[tuple[InvoiceLine, datetime]]:
    """A few hundred lines: purchases, returns, reused invoice numbers, non-products,
    zero prices, lines without a customer, and one customer who only returns."""
    rng = random.Random(seed)
    out: list[tuple[InvoiceLine, datetime]] = []
    used: list[tuple[str, str | None]] = []
    for n in range(90):
        if used and rng.random() < 0.12:
            invoice, customer = rng.choice(used)  # the same invoice number seen again
        else:
            customer = None if rng.random() < 0.1 else rng.choice(CUSTOMERS)
            returning = rng.random() < 0.2
            invoice = f"{'C' if returning else ''}{536_365 + n}"
            used.append((invoice, customer))
        if rng.random() < 0.05:
            customer, invoice = RETURNS_ONLY, f"C{600_000 + n}"
        moment = BASE + timedelta(seconds=rng.randrange(0, 370 * DAY))
        for _ in range(rng.randint(1, 7)):
            position = sum(1 for line, _ in out if line.invoice_no == invoice)
            stock = rng.choice(PRODUCTS) if rng.random() < 0.85 else rng.choice(NOT_PRODUCTS)
            quantity = rng.randint(1, 24)
            if invoice.startswith("C") or rng.random() < 0.05:
                quantity = -quantity
            price = 0 if rng.random() < 0.08 else rng.choice(PRICES)
            line = InvoiceLine(
                event_id=f"{invoice}:{position}",
                invoice_no=invoice,
                stock_code=stock,
                quantity=quantity,
                invoice_ts=epoch(moment),
                unit_price_micros=price,
                customer_id=customer,
                country="United Kingdom",
                description=f"ITEM {stock}",
            )
            out.append((line, moment))
    # A customer with only returns, whatever the draw above produced.
    moment = BASE + timedelta(days=3, hours=2)
    returned = InvoiceLine(
        "C700001:0", "C700001", "22423", -3, epoch(moment), 12_750_000, RETURNS_ONLY
    )
    out.append((returned, moment))
    return out


def as_frame(pairs: list[tuple[InvoiceLine, datetime]]) -> pd.DataFrame:
    """The same lines in the UCI column layout, as the batch reference reads them."""
    return pd.DataFrame(
        {
            "InvoiceNo": [line.invoice_no for line, _ in pairs],
            "StockCode": [line.stock_code for line, _ in pairs],
            "Description": [line.description for line, _ in pairs],
            "Quantity": [line.quantity for line, _ in pairs],
            "InvoiceDate": [pd.Timestamp(moment) for _, moment in pairs],
            "UnitPrice": [line.unit_price_micros / 1_000_000 for line, _ in pairs],
            "CustomerID": [line.customer_id for line, _ in pairs],
            "Country": [line.country for line, _ in pairs],
        }
    )


def fold(lines: list[InvoiceLine]) -> dict[str, CustomerState]:
    states: dict[str, CustomerState] = {}
    for line in lines:
        kind, _ = classify(line)
        if kind is LineKind.IGNORED:
            continue
        assert line.customer_id is not None
        states.setdefault(line.customer_id, CustomerState()).apply(line, kind)
    return states


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_incremental_features_match_the_batch_reference(seed):
    """Every customer's streaming features equal the pandas batch computation of spec v1."""
    pairs = random_lines(seed)
    lines = [line for line, _ in pairs]
    # The draw really covers every kind of line.
    reasons = {classify(line)[1] for line in lines}
    assert reasons == {None, *IgnoreReason}
    assert any(classify(line)[0] is LineKind.RETURN for line in lines)
    assert 200 <= len(lines) <= 600

    now = max(moment for _, moment in pairs) + timedelta(days=3, hours=5, seconds=17)
    states = fold(lines)
    reference = spec_v1(as_frame(pairs), pd.Timestamp(now))

    purchasers = {cid for cid, state in states.items() if state.has_purchases}
    assert purchasers == set(reference.index)
    assert not states[RETURNS_ONLY].has_purchases
    assert len(purchasers) >= 10
    assert reference["returned_value"].sum() > 0

    for cid in sorted(purchasers):
        got = features_of(states[cid], epoch(now))
        want = reference.loc[cid]
        assert got.revenue == pytest.approx(want["revenue"], abs=1e-6), cid
        assert got.returned_value == pytest.approx(want["returned_value"], abs=1e-6), cid
        assert got.avg_ticket == pytest.approx(want["avg_ticket"], abs=1e-6), cid
        assert got.invoices == want["invoices"], cid
        assert got.lines == want["lines"], cid
        assert got.units == want["units"], cid
        assert got.returned_units == want["returned_units"], cid
        assert got.first_purchase_at == want["first_purchase_at"].to_pydatetime(), cid
        assert got.last_purchase_at == want["last_purchase_at"].to_pydatetime(), cid
        assert got.recency_days == pytest.approx(want["recency_days"], rel=1e-12), cid
        assert got.frequency == pytest.approx(want["frequency"], rel=1e-12), cid


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_arrival_order_gives_the_same_state(seed):
    """Applying the same lines shuffled yields identical states (and so identical features)."""
    lines = [line for line, _ in random_lines(seed)]
    in_order = fold(lines)
    for shuffle_seed in range(5):
        shuffled = list(lines)
        random.Random(shuffle_seed).shuffle(shuffled)
        assert shuffled != lines
        assert fold(shuffled) == in_order


def test_frequency_uses_a_30_day_floor_on_tenure():
    """frequency = invoices * 30 / max(30, tenure days): a new customer is not over-rated."""
    now = 200 * DAY
    recent = CustomerState()
    for n, day in enumerate([190, 195]):  # tenure 10 days: the floor of 30 applies
        line = InvoiceLine(f"{n}:0", str(n), "22423", 2, day * DAY, 1_000_000, "1")
        recent.apply(line, LineKind.PURCHASE)
    seasoned = CustomerState()
    for n, day in enumerate([140, 170, 200]):  # tenure 60 days
        line = InvoiceLine(f"{10 + n}:0", str(10 + n), "22423", 2, day * DAY, 1_000_000, "2")
        seasoned.apply(line, LineKind.PURCHASE)

    fresh = features_of(recent, now)
    assert fresh.frequency == pytest.approx(2.0)  # 2 * 30 / 30, not 2 * 30 / 10
    assert fresh.recency_days == pytest.approx(5.0)
    old = features_of(seasoned, now)
    assert old.frequency == pytest.approx(1.5)  # 3 * 30 / 60
    assert old.recency_days == 0.0
    exactly = features_of(recent, 220 * DAY)  # tenure exactly 30 days
    assert exactly.frequency == pytest.approx(2.0)


def test_a_returns_only_customer_has_no_purchase_features():
    """Returns count as returns only: no purchases means no recency, frequency or ticket."""
    state = CustomerState()
    state.apply(InvoiceLine("C1:0", "C1", "22423", -3, 5 * DAY, 2_500_000, "7"), LineKind.RETURN)
    state.apply(InvoiceLine("C1:1", "C1", "71053", -1, 5 * DAY, 400_000, "7"), LineKind.RETURN)
    assert not state.has_purchases
    got = features_of(state, 10 * DAY)
    assert got.recency_days is None
    assert got.frequency is None
    assert got.avg_ticket is None
    assert got.first_purchase_at is None and got.last_purchase_at is None
    assert (got.revenue, got.invoices, got.lines, got.units) == (0.0, 0, 0, 0)
    assert got.returned_value == pytest.approx(7.9)
    assert got.returned_units == 4


def test_a_stock_code_with_a_trailing_newline_is_not_a_product():
    """The spec regex must match the whole code, as the batch reference's fullmatch does."""
    moment = BASE + timedelta(days=1)
    line = InvoiceLine("9:0", "9", "85123A\n", 2, epoch(moment), 1_000_000, "12345")
    assert spec_v1(as_frame([(line, moment)]), pd.Timestamp(moment)).empty
    assert classify(line) == (LineKind.IGNORED, IgnoreReason.NOT_A_PRODUCT)
