"""The daily ranking decides exactly as the policy does customer by customer.

The sweep ranks a :class:`Roster` (columns) with array code and calls the policy only
for the customers whose membership changes. Its twin here is the plain way to state
the ranking: assess every customer, ask ``InsiderPolicy.decide`` about each one, admit
the best-ranked. Both run on the same random customers for two months of days, with
ties (customers with identical totals) and the roster in another order than the ids.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from segmenter.features import SECONDS_PER_DAY, CustomerState, features_of
from segmenter.model import Assessment, SegmentModel, model_input, model_inputs
from segmenter.policy import (
    Edges,
    InsiderPolicy,
    InsiderStatus,
    PolicySettings,
    calibrate,
    lapsed,
)
from segmenter.roster import Roster
from segmenter.segmentation import Segmenter, StepResult, _best
from tests.segmenter.test_batch_twins import NOW, random_customers

DAY = SECONDS_PER_DAY
Customers = list[tuple[str, CustomerState, InsiderStatus]]
INSIDER = InsiderStatus(segment=1, insider=True, insider_since=NOW, sequence=1, model_version=3)


def rank_one_by_one(segmenter: Segmenter, customers: Customers, now: int) -> StepResult:
    """Every customer assessed and decided on their own, in id order."""
    rules, model, version = segmenter.policy.settings, segmenter.model, segmenter.model.version
    assert rules.target_share is not None
    known = sorted((c for c in customers if c[1].has_purchases), key=lambda c: c[0])
    features = [features_of(state, now) for _, state, _ in known]
    # The margins of the array code (equal to `assess` to rounding: test_batch_twins.py),
    # so that a margin at an edge falls on the same side in both.
    margins, segments = model.margins(model_inputs([state for _, state, _ in known], now))
    eligible = np.array([not lapsed(f, rules) for f in features])
    calibration = calibrate(margins, eligible, rules.target_share, rules.share_band, now)
    result = StepResult()

    def decide(i: int, edges: Edges) -> bool:
        cid, _, status = known[i]
        assessment = Assessment(int(segments[i]), float(margins[i]))
        new, event = segmenter.policy.decide(
            cid, status, assessment, features[i], now, version, edges, sweep=True
        )
        if event is not None:
            drivers = model.assess(model_input(features[i]), explain=True).drivers
            new, event = segmenter.policy.decide(
                cid, status, replace(assessment, drivers=drivers), features[i], now, version,
                edges, sweep=True,
            )  # fmt: skip
            result.events.append(event)
        if new.insider != status.insider or new.segment != status.segment:
            result.statuses[cid] = new
        return new.insider

    edges = calibration.edges
    members = sum(decide(i, edges) for i, c in enumerate(known) if c[2].insider)
    outside = [i for i, c in enumerate(known) if not c[2].insider]
    ranked = sorted((i for i in outside if eligible[i]), key=lambda i: (-margins[i], known[i][0]))
    target = round(rules.target_share * len(known))
    room = max(0, calibration.cap - members)
    admitted = [i for i in ranked[:room] if margins[i] >= edges.entry]
    if len(admitted) + members < target:
        admitted = ranked[: target - members]
        fill = float(margins[admitted[-1]]) if admitted else edges.entry
        if fill < edges.entry:
            edges = Edges(fill, edges.exit, edges.note + ", filled to the target")
            calibration = replace(calibration, edges=edges)
    for i in outside:
        if i in admitted:
            members += decide(i, edges)
        elif int(segments[i]) != known[i][2].segment:
            cid, _, status = known[i]
            result.statuses[cid] = replace(status, segment=int(segments[i]), model_version=version)
    segmenter.calibration = replace(calibration, members=members)
    return result


def with_ties(n: int, seed: int) -> Customers:
    """Random customers; a third of them share another one's totals exactly."""
    rng = random.Random(seed)
    states = random_customers(n, seed)
    states = [replace(rng.choice(states)) if rng.random() < 1 / 3 else s for s in states]
    return [(f"c{i}", state, InsiderStatus()) for i, state in enumerate(states)]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_ranking_decides_as_the_policy_does_customer_by_customer(seed):
    customers = with_ties(1_500, seed)
    trained = Segmenter(SegmentModel(seed=seed))
    for k in range(0, len(customers), 100):
        trained.step(customers[k : k + 100], NOW - 60 * DAY + k * 60)
    assert trained.model.clusterer.ready
    blob = trained.checkpoint()
    ranking, reference = Segmenter.from_checkpoint(blob), Segmenter.from_checkpoint(blob)
    mine, theirs = list(customers), list(customers)
    rng = random.Random(seed)
    rng.shuffle(mine)  # the roster's order is not the ids'
    reasons: Counter[str] = Counter()
    for day in range(60):
        now = NOW - 30 * DAY + day * DAY
        got = ranking.sweep(Roster.of(mine), now)
        want = rank_one_by_one(reference, theirs, now)
        assert got.events == want.events, day
        assert list(got.statuses.items()) == list(want.statuses.items()), day
        assert ranking.calibration == reference.calibration
        mine = [(c, s, got.statuses.get(c, status)) for c, s, status in mine]
        theirs = [(c, s, want.statuses.get(c, status)) for c, s, status in theirs]
        # Some customers buy big (the same in both lists): others are outranked.
        for _, state, _ in rng.sample(customers, 40):
            state.invoices += 1
            state.revenue_micros *= 3
            state.last_ts = max(now, state.last_ts)  # a purchase now (or the latest)
        reasons.update(event.reason.code for event in got.events)
    # The days saw entries, and exits both for lapsing and for being outranked.
    assert reasons["top_segment"] and reasons["lapsed"] and reasons["outranked"], reasons


def test_the_roster_keeps_every_total_and_status_as_put():
    roster = Roster(capacity=2)  # grows past its first capacity
    states = [*random_customers(5, seed=9), CustomerState()]  # the last: no purchase yet
    statuses = [
        InsiderStatus(),
        InsiderStatus(segment=0, insider=True, insider_since=NOW, sequence=3, model_version=9),
    ]
    for i, state in enumerate(states):
        roster.put(f"c{i}", state, statuses[i % 2])
    roster.put_status("c4", statuses[0])
    roster.put_status("unknown", statuses[1])  # not on the roster: ignored
    assert len(roster) == 6 and roster.ids == [f"c{i}" for i in range(6)]
    for i, state in enumerate(states):
        assert roster.state(i) == replace(state, invoice_nos=set())
        assert roster.status(i) == (statuses[0] if i == 4 else statuses[i % 2])
    assert roster.column("insider").tolist() == [0, 1, 0, 1, 0, 1]


def recheck_one_by_one(segmenter: Segmenter, customers: Customers, now: int) -> StepResult:
    """Fixed edges: every Insider assessed and decided on their own, in id order."""
    result = StepResult()
    for cid, state, status in sorted(customers, key=lambda c: c[0]):
        if status.insider:
            features = features_of(state, now)
            assessment = segmenter.model.assess(model_input(features), explain=True)
            new, event = segmenter.policy.decide(
                cid, status, assessment, features, now, segmenter.model.version,
                segmenter.policy.fixed_edges, sweep=True,
            )  # fmt: skip
            result.statuses[cid] = new
            if event is not None:
                result.events.append(event)
    return result


def test_without_a_target_share_the_sweep_takes_out_the_insiders_the_policy_would():
    # Overdue after their usual gap; lapsed only after a year.
    policy = InsiderPolicy(PolicySettings(target_share=None, lapse_days=365, overdue_factor=1.0))
    customers = with_ties(1_500, seed=5)
    trained = Segmenter(SegmentModel(seed=5), policy)
    for k in range(0, len(customers), 100):
        step = trained.step(customers[k : k + 100], NOW - 60 * DAY + k * 60)
        customers = [(c, s, step.statuses.get(c, status)) for c, s, status in customers]
    reference = Segmenter(SegmentModel.from_state(trained.model.to_state()), policy)
    mine, theirs = list(customers), list(customers)
    rng = random.Random(5)
    rng.shuffle(mine)
    reasons: Counter[str] = Counter()
    for day in range(0, 90, 3):
        now = NOW - 30 * DAY + day * DAY
        got = trained.sweep(Roster.of(mine), now)
        want = recheck_one_by_one(reference, theirs, now)
        assert got.events == want.events, day
        mine = [(c, s, got.statuses.get(c, status)) for c, s, status in mine]
        theirs = [(c, s, want.statuses.get(c, status)) for c, s, status in theirs]
        membership = {
            c: (st.insider, st.insider_since, st.sequence, st.segment) for c, _, st in mine
        }
        assert membership == {
            c: (st.insider, st.insider_since, st.sequence, st.segment) for c, _, st in theirs
        }
        reasons.update(event.reason.text.split(" ")[0] for event in got.events)
        # Some customers send most of what they bought back (the same in both lists).
        for _, state, _ in rng.sample(customers, 40):
            state.returned_micros = state.revenue_micros * 9 // 10
    # Exits for the margin once overdue ("margin ... below the exit edge"), and for lapsing.
    assert reasons["margin"] and reasons["no"], reasons


def test_a_customer_given_twice_is_on_the_roster_once_as_last_given():
    # A Redis SSCAN may return a member twice: the first ranking must not fail on it.
    first, second = random_customers(2, seed=4)
    roster = Roster.of(
        [("a", first, InsiderStatus()), ("b", second, InsiderStatus()), ("a", second, INSIDER)]
    )
    assert roster.ids == ["a", "b"]
    assert roster.state(0) == replace(second, invoice_nos=set()) and roster.status(0) == INSIDER


def test_customers_without_a_margin_are_not_ranked():
    margins = np.array([0.5, np.nan, 0.9, 0.1, np.nan])
    names = ["a", "b", "c", "d", "e"]
    best = _best(np.arange(5), margins, names.__getitem__, 2)
    assert best.tolist() == [2, 0]  # c, then a: the NaN rows take no place
    assert _best(np.arange(5), margins, names.__getitem__, 9).tolist() == [2, 0, 3]
