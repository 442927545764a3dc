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


def future_at_cut(cut_day: str = "2011-09-08 23:59:59") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features at the cut, and purchases and returns after it, per customer known at it."""
    lines = load_lines(DATA)
    cut = spec_v1(lines[lines["InvoiceDate"] <= cut_day])
    end = spec_v1(lines).reindex(cut.index)
    future = (end["revenue"] - cut["revenue"]).clip(lower=0)
    net = (future - (end["returned_value"] - cut["returned_value"])).clip(lower=0)
    return cut, pd.DataFrame({"future": future, "net": net})


def top(score: pd.Series, count: int) -> pd.Index:
    """The ``count`` highest scores, ties broken by position (the file's customer order)."""
    return score.rank(method="first", ascending=False).loc[lambda r: r <= count].index


def test_reference_points_match_the_issue(result):
    """The evaluation sees the customers the issue counts at its cut, and its simple
    rankings (the same number of customers as the Insiders) agree with pandas."""
    assert result.customers_at_cut == 3360
    cut, after = future_at_cut()
    count = result.insiders_at_cut
    share = after["future"] / after["future"].sum()
    kept = cut["revenue"] - cut["returned_value"]
    for name, chosen in [
        ("same number by past value (kept)", top(kept, count)),
        ("same number by past revenue", top(cut["revenue"], count)),
        ("hindsight: same number by future revenue", top(after["future"], count)),
    ]:
        got = by_name(result, name)
        assert got.customers == pytest.approx(count / 3360)
        assert got.future_revenue == pytest.approx(share[chosen].sum(), abs=1e-9), name
    batch = by_name(result, "batch KMeans")
    # The issue quotes 52.1% with 11.3%; sklearn's KMeans here gives about 51% with 10%.
    assert 0.09 < batch.customers < 0.12 and 0.50 < batch.future_revenue < 0.53


def test_net_of_returns_agrees_with_pandas(result):
    """The net column, recomputed with pandas from the file: purchases after the cut minus
    returns after the cut, per customer known at the cut, as many customers as the Insiders
    by past revenue and by past value kept."""
    cut, after = future_at_cut()
    net = after["net"]
    for name, score in [
        ("same number by past revenue", cut["revenue"]),
        ("same number by past value (kept)", cut["revenue"] - cut["returned_value"]),
    ]:
        expected = net[top(score, result.insiders_at_cut)].sum() / net.sum()
        assert by_name(result, name).future_net == pytest.approx(expected, abs=1e-9), name


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
    # Few: the target share, within its band (entries between two rankings stop at the top
    # of the band, a rounded-up count: one customer more at most).
    target, band = result.target_share, result.share_band
    assert (target, band) == (0.12, 0.015)  # the defaults this run measures
    assert abs(ours.customers - target) <= band + 1 / result.customers_at_cut
    assert ours.customers == pytest.approx(result.insiders_at_cut / result.customers_at_cut)
    # And held there from the first ranking to the end of the file, within 2 points.
    assert len(result.shares) > 50
    assert (result.shares - target).abs().max() <= 0.02
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
    assert "Jaccard" in text and "silhouette" in text
    assert text.startswith("Size: target 12.0% of the customers known")
    share = result.insiders_at_cut / result.customers_at_cut
    assert f"at the cut: {share:.1%} ({result.insiders_at_cut:,} of 3,360)" in text
    ours, simple = result.model, by_name(result, "same number by past value")
    assert (
        f"Insiders against the same number by past value: {ours.future_revenue:.1%} against "
        f"{simple.future_revenue:.1%} of the future revenue" in text
    )
