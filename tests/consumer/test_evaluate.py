"""`insiders evaluate` on the full file: the figures that are stable enough to hold to."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from consumer.evaluate import evaluate, report
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from tests.reference import DATA, MISSING_DATA, load_lines, spec_v1

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=MISSING_DATA)


@pytest.fixture(scope="module")
def result():
    def make(store):
        return Pipeline(store, MemoryEventSink())

    return evaluate(DATA, make, datetime(2011, 9, 8, 23, 59, 59), draws=200)


def by_name(result, prefix):
    return next(c for c in result.captures if c.name.startswith(prefix))


def test_reference_points_match_the_issue(result):
    """The evaluation reproduces the figures quoted in the issue for the same cut."""
    assert result.customers_at_cut == 3360
    assert by_name(result, "top 12%").future_revenue == pytest.approx(0.555, abs=0.0006)
    assert by_name(result, "hindsight").future_revenue == pytest.approx(0.720, abs=0.0006)
    batch = by_name(result, "batch KMeans")
    # The issue quotes 52.1% with 11.3%; sklearn's KMeans here gives about 51% with 10%.
    assert 0.09 < batch.customers < 0.12 and 0.50 < batch.future_revenue < 0.53


def test_net_of_returns_agrees_with_pandas(result):
    """The net column, recomputed with pandas from the file: purchases after the cut minus
    returns after the cut, per customer known at the cut, top 12% by past revenue."""
    lines = load_lines(DATA)
    cut = spec_v1(lines[lines["InvoiceDate"] <= "2011-09-08 23:59:59"])
    end = spec_v1(lines).reindex(cut.index)
    net = (end["revenue"] - cut["revenue"]) - (end["returned_value"] - cut["returned_value"])
    net = net.clip(lower=0)
    top = cut["revenue"].nlargest(round(0.12 * len(cut))).index
    expected = net[top].sum() / net.sum()
    assert by_name(result, "top 12%").future_net == pytest.approx(expected, abs=1e-9)


def test_expected_revenue_is_the_own_pace_rule_and_near_what_was_spent(result):
    lines = load_lines(DATA)
    past = lines[lines["InvoiceDate"] <= "2011-09-08 23:59:59"]
    cut, end = past["InvoiceDate"].max(), lines["InvoiceDate"].max()
    features = spec_v1(past)
    horizon = (end - cut) / pd.Timedelta(days=1)
    assert result.horizon_days == pytest.approx(horizon)
    tenure = (cut - features["first_purchase_at"]) / pd.Timedelta(days=1)
    pace = features["revenue"] * horizon / tenure.clip(lower=30)
    guess = result.expected["Insiders"][0] + result.expected["rest"][0]
    assert guess == pytest.approx(pace.sum())
    # The rule is rough (the last quarter is the busy season), but not far off.
    for group, (expected, spent) in result.expected.items():
        assert abs(expected / spent - 1) < 0.35, group


def test_insiders_are_few_and_worth_more_than_the_batch_answer(result):
    ours, batch = result.model, by_name(result, "batch KMeans")
    assert ours.customers <= 0.12
    assert ours.future_revenue > batch.future_revenue
    assert ours.future_revenue >= 0.54
    # Insiders spend more in the next quarter than the rest, beyond sampling noise.
    assert result.future_mean["Insiders"].low > result.future_mean["rest"].high
    assert result.future_median["Insiders"].low > result.future_median["rest"].high


def test_membership_is_stable(result):
    assert result.stability.insiders_in_window > 100
    assert result.stability.flip_rate < 0.02
    weekly = result.stability.weekly
    assert len(weekly) >= 13 and weekly["entries"].sum() > 0 and weekly["exits"].sum() > 0


def test_agreement_with_batch_kmeans_is_reported(result):
    assert 0.0 < result.jaccard_end < 1.0
    text = report(result)
    assert "Jaccard" in text and "silhouette" in text and "goal:" in text
