"""The business report: hand-made customers whose figures can be worked out on paper,
and the shipped sample against a pandas recomputation."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.ports import Customer
from segmenter.features import SECONDS_PER_DAY, CustomerState, to_datetime
from segmenter.model import SegmentModel
from segmenter.policy import InsiderStatus
from segmenter.report import build_report, weekly
from segmenter.segmentation import Segmenter
from tests.conftest import SAMPLE
from tests.reference import load_lines, spec_v1

DAY = SECONDS_PER_DAY
NOW = 400 * DAY


def row(
    cid, pounds, invoices, first_day, last_day, insider=False, segment=2, since_day=None, back=0
):
    state = CustomerState(
        revenue_micros=int(pounds * 1_000_000),
        returned_micros=int(back * 1_000_000),
        invoices=invoices,
        lines=invoices,
        units=invoices,
        first_ts=first_day * DAY,
        last_ts=last_day * DAY,
    )
    status = InsiderStatus(
        segment=segment,
        insider=insider,
        insider_since=since_day * DAY if since_day is not None else None,
    )
    return Customer(cid, state, status)


def event(cid, kind, day, code):
    return {
        "customer_id": cid,
        "type": f"insider.{kind}",
        "at": to_datetime(day * DAY).isoformat(),
        "reason": {"code": code, "text": ""},
    }


@pytest.fixture
def rows():
    return [
        # An Insider for 200 days who bought yesterday: £9,000 over 300 days.
        row("big", 9000, 30, 100, 399, insider=True, segment=1, since_day=200),
        # A new Insider (entered 3 days ago) who last bought 100 days ago: at risk.
        row("new", 3000, 4, 250, 300, insider=True, segment=1, since_day=397),
        # Inside segment 1 but not (yet) an Insider.
        row("near", 1000, 5, 300, 390, segment=1),
        # Left 10 days ago.
        row("gone", 500, 2, 100, 200, segment=3),
        row("small", 500, 1, 380, 380, segment=4),
    ]


@pytest.fixture
def segmenter():
    return Segmenter(SegmentModel())


def test_the_most_valuable_insiders_are_ranked_by_what_they_kept(segmenter):
    rows = [
        # Bought £168,472.50 and sent back £168,469.60: kept £2.90.
        row("returner", 168_472.50, 2, 100, 399, True, 1, since_day=399, back=168_469.60),
        row("steady", 9000, 30, 100, 399, insider=True, segment=1, since_day=200, back=500),
        row("small", 3000, 4, 250, 300, insider=True, segment=1, since_day=300),
    ]
    report = build_report(rows, NOW, segmenter, [])
    assert [c for c, _, _ in report.top_insiders] == ["steady", "small", "returner"]
    assert [k for _, _, k in report.top_insiders] == pytest.approx([8500.0, 3000.0, 2.90])


def test_shares_and_expected_revenue_worked_by_hand(rows, segmenter):
    events = [event("big", "entered", 200, "top_segment"), event("gone", "entered", 150, "x")]
    events += [event("gone", "exited", 390, "lapsed"), event("new", "entered", 397, "top_segment")]
    report = build_report(rows, NOW, segmenter, events)
    assert (report.customers, report.insiders) == (5, 2)
    assert report.customer_share == pytest.approx(2 / 5)
    assert report.revenue == pytest.approx(14_000)
    assert report.revenue_share == pytest.approx(12_000 / 14_000)
    # Own pace: revenue × 90 / max(30, days since the first purchase).
    assert report.expected_insiders == pytest.approx(9000 * 90 / 300 + 3000 * 90 / 150)
    assert report.expected_rest == pytest.approx(1000 * 90 / 100 + 500 * 90 / 300 + 500 * 90 / 30)
    assert report.top_insiders == [("big", 9000.0, 9000.0), ("new", 3000.0, 3000.0)]
    assert report.movement == {"insider.entered:top_segment": 1, "insider.exited:lapsed": 1}
    medians = {t.name: (t.insiders, t.rest) for t in report.traits}
    assert medians["revenue"] == (6000.0, 500.0)
    assert medians["tenure_days"] == (225.0, 100.0)
    assert [s.segment for s in report.segments] == [1, 3, 4]
    first = report.segments[0]
    assert (first.customers, first.insiders) == (3, 2)
    assert first.revenue_share == pytest.approx(13_000 / 14_000)
    assert sum(s.customer_share for s in report.segments) == pytest.approx(1.0)


def test_actions_name_the_customers_to_act_on(rows, segmenter):
    events = [event("gone", "exited", 390, "lapsed")]
    # Segment 1 when last assessed, but no purchase for 200 days: not "nearly in".
    rows = [*rows, row("stale", 800, 3, 50, 200, segment=1)]
    actions = {a.key: a for a in build_report(rows, NOW, segmenter, events).actions}
    assert actions["welcome"].customer_ids == ("new",)
    # 100 days without a purchase: within 30 days of the 120-day lapse limit.
    assert actions["at_risk"].customer_ids == ("new",)
    assert actions["nearly"].customer_ids == ("near",)
    assert actions["win_back"].customer_ids == ("gone",)
    assert all(a.count == len(a.customer_ids) for a in actions.values())


def test_evidence_says_whether_it_holds(rows, segmenter):
    report = build_report(rows, NOW, segmenter, [], draws=200)
    concentration, spend, stability = report.evidence
    assert concentration.holds  # 40% of customers, 86% of revenue
    # Any resample of the Insiders ({9000, 3000}) averages at least £3,000, and any of the
    # rest ({1000, 500, 500}) at most £1,000: the intervals cannot overlap.
    assert report.mean_revenue["Insiders"].low >= 3000 > 1000 >= report.mean_revenue["rest"].high
    assert spend.holds and "do not overlap" in spend.claim
    # Both Insiders count as members of the last 90 days, though no event shows their entry.
    assert stability.holds and report.flaps == (0, 2)


def test_an_empty_store_gives_an_empty_report():
    report = build_report([], None, None, [])
    assert (report.customers, report.insiders, report.revenue_share) == (0, 0, 0.0)
    assert math.isnan(report.mean_revenue["Insiders"].estimate)
    assert report.conditions == ["no model yet: the consumer has not written a checkpoint"]
    assert [a.count for a in report.actions] == [0, 0, 0]


def test_the_sample_report_agrees_with_pandas():
    store = MemoryFeatureStore()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    now = store.watermark()
    events = store.events(None, 10**6).events
    report = build_report(store.customers(), now, pipeline.segmenter, events)

    lines = load_lines(SAMPLE)
    expected = spec_v1(lines)
    insiders = {c.customer_id for c in store.customers() if c.status.insider}
    flag = expected.index.isin(insiders)
    assert report.customers == len(expected) and report.insiders == flag.sum() > 0
    assert report.revenue == pytest.approx(expected["revenue"].sum(), abs=0.01)
    assert report.revenue_share == pytest.approx(
        expected.loc[flag, "revenue"].sum() / expected["revenue"].sum()
    )
    tenure = (lines["InvoiceDate"].max() - expected["first_purchase_at"]) / pd.Timedelta(days=1)
    pace = expected["revenue"] * 90 / tenure.clip(lower=30)
    assert report.expected_insiders == pytest.approx(pace[flag].sum())
    assert report.expected_rest == pytest.approx(pace[~flag].sum())
    median = {t.name: t.insiders for t in report.traits}
    assert median["revenue"] == pytest.approx(expected.loc[flag, "revenue"].median())
    assert median["recency_days"] == pytest.approx(expected.loc[flag, "recency_days"].median())
    # The daily ranking assesses everyone: no one is left "not yet assessed" because
    # they last bought during the warm-up.
    assert None not in {c.status.segment for c in store.customers()}
    assert None not in {s.segment for s in report.segments}
    assert sum(s.customers for s in report.segments) == report.customers
    # The sample's Insiders hold far more than their share, beyond sampling noise.
    assert all(e.holds for e in report.evidence[:2])
    assert to_datetime(now) == lines["InvoiceDate"].max()


def test_weekly_membership_agrees_with_pandas():
    store = MemoryFeatureStore()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    now = store.watermark()
    events = store.events(None, 10**6).events
    insiders_now = sum(c.status.insider for c in store.customers())
    weeks = weekly(events, now, insiders_now)

    frame = pd.DataFrame(events)
    frame["at"] = pd.to_datetime(frame["at"])
    frame["week"] = frame["at"].dt.to_period("W-SUN").dt.start_time
    frame["change"] = frame["type"].map({"insider.entered": 1, "insider.exited": -1})
    counts = frame.pivot_table(index="week", columns="type", values="change", aggfunc="count")
    members = frame.groupby("week")["change"].sum().cumsum()
    this_week = pd.Timestamp(to_datetime(now)).to_period("W-SUN").start_time
    assert len(weeks) == 12 and weeks[-1].start == this_week
    for week in weeks:
        start = pd.Timestamp(week.start)
        row = counts.reindex([start]).fillna(0).iloc[0]
        assert (week.entries, week.exits) == (
            row.get("insider.entered", 0),
            row.get("insider.exited", 0),
        )
        assert week.insiders == members[members.index <= start].iloc[-1]
    assert sum(w.entries for w in weeks) > 0
    assert weeks[-1].insiders == sum(c.status.insider for c in store.customers())
