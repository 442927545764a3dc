"""InsiderPolicy: entry on the top segment, no event while staying, exit when it drops."""

from __future__ import annotations

import pytest

from segmenter.features import CustomerState, features_of
from segmenter.policy import InsiderPolicy, InsiderStatus

FEATURES = features_of(
    CustomerState(
        revenue_micros=123_456_789, invoices=3, lines=7, units=40, first_ts=0, last_ts=86_400
    ),
    10 * 86_400,
)


def test_entering_the_top_segment_emits_entered():
    """Segment 1 makes a customer an Insider since now, with event id '<cid>:1'."""
    status, event = InsiderPolicy().decide(
        "17850", InsiderStatus(), 1, FEATURES, now_ts=1_000, model_version=3
    )
    assert status == InsiderStatus(
        segment=1, insider=True, insider_since=1_000, sequence=1, model_version=3
    )
    assert event is not None
    assert event.type == "insider.entered"
    assert event.event_id == "17850:1"
    assert (event.customer_id, event.sequence, event.at_ts) == ("17850", 1, 1_000)
    assert (event.segment, event.model_version) == (1, 3)
    assert event.features["invoices"] == 3
    assert event.features["revenue"] == pytest.approx(123.4568)


def test_staying_emits_nothing_and_keeps_insider_since():
    """A second segment-1 decision updates the model version only: no event."""
    policy = InsiderPolicy()
    entered, _ = policy.decide("17850", InsiderStatus(), 1, FEATURES, now_ts=1_000, model_version=3)
    status, event = policy.decide("17850", entered, 1, FEATURES, now_ts=5_000, model_version=4)
    assert event is None
    assert status == InsiderStatus(
        segment=1, insider=True, insider_since=1_000, sequence=1, model_version=4
    )


def test_dropping_to_segment_two_emits_exited():
    """Leaving segment 1 ends membership: insider.exited, sequence 2, insider_since None."""
    policy = InsiderPolicy()
    entered, _ = policy.decide("17850", InsiderStatus(), 1, FEATURES, now_ts=1_000, model_version=3)
    status, event = policy.decide("17850", entered, 2, FEATURES, now_ts=9_000, model_version=5)
    assert status == InsiderStatus(
        segment=2, insider=False, insider_since=None, sequence=2, model_version=5
    )
    assert event is not None
    assert event.type == "insider.exited"
    assert event.event_id == "17850:2"
    assert (event.sequence, event.at_ts, event.segment, event.model_version) == (2, 9_000, 2, 5)

    again, back = policy.decide("17850", status, 1, FEATURES, now_ts=20_000, model_version=6)
    assert back is not None and back.type == "insider.entered"
    assert back.event_id == "17850:3"
    assert again.insider_since == 20_000


@pytest.mark.parametrize("segment", [None, 2, 3, 4])
def test_other_segments_never_enter(segment):
    """Segment None (model warming up) or any segment but 1 leaves a non-member out, silently."""
    status, event = InsiderPolicy().decide(
        "12346", InsiderStatus(), segment, FEATURES, now_ts=1_000, model_version=1
    )
    assert event is None
    assert status == InsiderStatus(
        segment=segment, insider=False, insider_since=None, sequence=0, model_version=1
    )
