"""The daily ranking's batch twins agree with the one-customer functions they stand for.

The sweep ranks every customer with array code (`model_inputs`, `SegmentModel.margins`,
`lapsed_mask`), and the report reads the whole base as a `Table`; events and the API use
the scalar ones. Tested the way river tests an
incremental statistic against its batch twin, on random customers.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from consumer.ports import Customer
from segmenter.features import SECONDS_PER_DAY, CustomerState, features_of
from segmenter.model import SegmentModel, model_input, model_inputs
from segmenter.policy import (
    InsiderStatus,
    PolicySettings,
    lapse_after,
    lapse_after_days,
    lapsed,
    lapsed_mask,
    overdue,
    overdue_mask,
)
from segmenter.report import Table, expected_revenue, traits_of

DAY = SECONDS_PER_DAY
NOW = 1_320_000_000


def random_customers(n: int, seed: int) -> list[CustomerState]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        invoices = rng.choice([1, 1, 2, 3, 5, 12, 40])
        first = NOW - rng.randint(0, 700) * DAY - rng.randrange(DAY)
        last = first if invoices == 1 else rng.randint(first, NOW)
        revenue = rng.randint(1, 10**6) * 10**4
        out.append(
            CustomerState(
                revenue_micros=revenue,
                returned_micros=rng.choice([0, 0, rng.randint(0, revenue * 2)]),
                invoices=invoices,
                lines=invoices * 3,
                units=invoices * 10,
                first_ts=first,
                last_ts=last,
            )
        )
    return out


@pytest.fixture(scope="module")
def states() -> list[CustomerState]:
    return random_customers(600, seed=3)


def test_model_inputs_equal_model_input_customer_by_customer(states):
    batch = model_inputs(states, NOW)
    for i, state in enumerate(states):
        one = model_input(features_of(state, NOW))
        assert {k: batch[k][i] for k in one} == pytest.approx(one, rel=1e-12, abs=1e-12)


def test_margins_and_segments_equal_assess(states):
    model = SegmentModel(warmup=200, seed=4)
    for state in states:
        model.learn(model_input(features_of(state, NOW)))
    model.end_step(NOW)
    assert model.clusterer.ready
    margins, segments = model.margins(model_inputs(states, NOW))
    for i, state in enumerate(states):
        found = model.assess(model_input(features_of(state, NOW)))
        assert margins[i] == pytest.approx(found.margin, abs=1e-9)
        assert segments[i] == found.segment


def test_lapsed_mask_equals_lapsed(states):
    rules = PolicySettings(lapse_days=60, overdue_factor=1.5)
    features = [features_of(state, NOW) for state in states]
    mask = lapsed_mask(
        np.array([f.recency_days for f in features]),
        np.array([f.invoices for f in features]),
        np.array([(s.last_ts - s.first_ts) / DAY for s in states]),
        rules,
    )
    expected = [lapsed(f, rules) for f in features]
    assert mask.tolist() == expected
    assert 0 < sum(expected) < len(expected)  # both kinds of customer are in the sample


def test_overdue_and_lapse_limits_equal_their_scalar_twins(states):
    rules = PolicySettings(lapse_days=60, overdue_factor=1.5)
    features = [features_of(state, NOW) for state in states]
    recency = np.array([f.recency_days for f in features])
    invoices = np.array([f.invoices for f in features])
    span = np.array([(s.last_ts - s.first_ts) / DAY for s in states])
    limits = lapse_after_days(invoices, span, rules)
    assert limits.tolist() == pytest.approx([lapse_after(f, rules) for f in features])
    late = [overdue(f, rules) for f in features]
    assert overdue_mask(recency, invoices, span, rules).tolist() == late
    assert 0 < sum(late) < len(late)


def test_the_report_table_equals_the_one_customer_figures(states):
    statuses = [InsiderStatus(segment=1 + i % 3, insider=i % 4 == 0) for i in range(len(states))]
    rows = [
        Customer(f"c{i:06d}", s, st)  # ids that sort as they are numbered: the table's order
        for i, (s, st) in enumerate(zip(states, statuses, strict=True))
    ]
    table = Table.of(rows[::-1])
    assert table.ids.tolist() == [r.customer_id for r in rows]
    columns = table.traits(NOW)
    expected = table.expected(NOW, 90)
    for i, state in enumerate(states):
        features = features_of(state, NOW)
        one = traits_of(features, NOW)
        assert {k: columns[k][i] for k in one} == pytest.approx(one, rel=1e-12, abs=1e-12)
        assert expected[i] == pytest.approx(expected_revenue(features, NOW, 90), rel=1e-12)


def test_the_most_valuable_are_ranked_by_kept_value_then_id():
    # Ties on the 3rd place: the ids decide, as sorting by (-kept, id) would.
    kept = {"e": 50, "b": 30, "d": 30, "a": 30, "c": 10, "f": 50}
    rows = [
        Customer(
            cid,
            CustomerState(revenue_micros=k * 10**6, invoices=1, first_ts=0, last_ts=0),
            InsiderStatus(),
        )
        for cid, k in kept.items()
    ]
    table = Table.of(rows)
    everyone = np.ones(len(table), dtype=bool)
    assert table.ids[table.most_valuable(everyone, 4)].tolist() == ["e", "f", "a", "b"]
    assert table.ids[table.most_valuable(table.ids != "e", 2)].tolist() == ["f", "a"]
    assert table.most_valuable(~everyone, 3).tolist() == []
