"""InsiderPolicy: entry and exit with hysteresis, minimum dwell, lapse; idempotent event ids."""

from __future__ import annotations

import pytest

from segmenter.features import SECONDS_PER_DAY, CustomerState, features_of
from segmenter.model import Assessment, Driver
from segmenter.policy import InsiderPolicy, InsiderStatus, PolicySettings

DAY = SECONDS_PER_DAY
# Fixed edges (no target share): the rules of one decision, without the daily ranking.
RULES = PolicySettings(
    target_share=None, entry_margin=0.1, exit_margin=0.1, min_dwell_days=30, lapse_days=90
)
POLICY = InsiderPolicy(RULES)


def decide(*args, **kwargs):
    """POLICY.decide with the policy's own fixed edges."""
    return POLICY.decide(*args[:6], POLICY.fixed_edges, *args[6:], **kwargs)


RECENCY_FIRST = (Driver("recency", "recency_days", 80.0, 5.0, -2.0),)
MONEY_FIRST = (Driver("monetary", "revenue", 100.0, 5000.0, -2.0),)


def features(last_day: int, now_day: int):
    state = CustomerState(
        revenue_micros=5_000_000_000,
        invoices=10,
        lines=50,
        units=500,
        first_ts=0,
        last_ts=last_day * DAY,
    )
    return features_of(state, now_day * DAY)


def insider(since_day: int = 0, sequence: int = 1) -> InsiderStatus:
    return InsiderStatus(segment=1, insider=True, insider_since=since_day * DAY, sequence=sequence)


def test_entering_needs_the_top_segment_and_the_entry_margin():
    _, event = decide("7", InsiderStatus(), Assessment(1, 0.05), features(0, 1), DAY, 3)
    assert event is None  # inside segment 1, but not far enough from the edge
    status, event = decide("7", InsiderStatus(), Assessment(1, 0.15), features(0, 1), DAY, 3)
    assert status.insider and status.insider_since == DAY and status.sequence == 1
    assert event is not None and (event.event_id, event.type) == ("7:1", "insider.entered")
    assert (
        event.reason.code == "top_segment"
        and "margin 0.15 at or above the entry edge 0.10" in event.reason.text
    )
    assert event.model_version == 3 and event.features["invoices"] == 10


@pytest.mark.parametrize("segment", [None, 2, 3])
def test_other_segments_never_enter(segment):
    status, event = decide("7", InsiderStatus(), Assessment(segment, 0.5), features(0, 1), DAY, 1)
    assert event is None and not status.insider and status.segment == segment


def test_the_hysteresis_band_keeps_a_member_in():
    for margin in (0.05, 0.0, -0.09):
        status, event = decide("7", insider(), Assessment(2, margin), features(40, 41), 41 * DAY, 4)
        assert event is None and status.insider and status.insider_since == 0


def test_leaving_needs_the_exit_margin_and_the_minimum_dwell():
    out = Assessment(2, -0.2, MONEY_FIRST)
    _, event = decide("7", insider(since_day=10), out, features(20, 20), 20 * DAY, 5)
    assert event is None  # 10 days in: under the 30-day dwell
    status, event = decide("7", insider(since_day=10), out, features(40, 40), 40 * DAY, 5)
    assert event is not None and event.type == "insider.exited" and event.event_id == "7:2"
    assert event.reason.code == "left_top_segment"
    assert not status.insider and status.insider_since is None and status.sequence == 2


def test_a_sweep_takes_out_only_overdue_customers_and_calls_it_lapsed():
    out = Assessment(2, -0.2, RECENCY_FIRST)
    # 10 invoices in 80 days: a usual gap of 8 days; overdue after 2 x 8 = 16 days.
    _, event = decide("7", insider(), out, features(70, 80), 80 * DAY, 5, sweep=True)
    assert event is None  # 10 days since the last purchase: within their own rhythm
    _, event = decide("7", insider(), out, features(60, 80), 80 * DAY, 5, sweep=True)
    assert event is not None and event.reason.code == "lapsed"
    assert "recency_days 80.0 against" in event.reason.text


def test_past_the_lapse_limit_a_member_leaves_even_inside_the_top_segment():
    status, event = decide("7", insider(), Assessment(1, 0.4), features(0, 91), 91 * DAY, 5)
    assert event is not None and event.reason.code == "lapsed" and not status.insider
    assert "no purchase for 91 days" in event.reason.text


def test_a_lapsed_customer_does_not_enter():
    _, event = decide("7", InsiderStatus(), Assessment(1, 0.9), features(0, 95), 95 * DAY, 5)
    assert event is None
