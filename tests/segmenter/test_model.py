"""SegmentModel.assess: the margin on the value axis, its drivers, and the warm-up.

Expected values come from geometry done here: the centres are read off the clusterer,
mapped back to input space with the scaler's own means and variances, and the margins
of points placed at known spots are known without calling the model.
"""

from __future__ import annotations

import math
import random

import pytest

from segmenter.features import SECONDS_PER_DAY
from segmenter.model import Assessment, SegmentModel

INPUTS = ("monetary", "tenure")
# Three well-separated blobs along the value direction (low, middle, high).
BLOBS = [(2.0, 1.0), (5.0, 3.0), (8.0, 5.0)]
# Each input's sign and weight in a segment's value, as documented for the model.
VALUE = {"monetary": 1.0, "tenure": 0.5}


def blob_points(rng: random.Random, per_blob: int = 40) -> list[dict[str, float]]:
    points = [
        {"monetary": m + rng.uniform(-0.3, 0.3), "tenure": t + rng.uniform(-0.3, 0.3)}
        for m, t in BLOBS
        for _ in range(per_blob)
    ]
    rng.shuffle(points)
    return points


@pytest.fixture
def model() -> SegmentModel:
    model = SegmentModel(n_segments=3, warmup=30, seed=1, inputs=INPUTS, weights={})
    for x in blob_points(random.Random(5)):
        model.learn(x)
    model.end_step()
    assert model.clusterer.ready
    return model


def centres(model: SegmentModel) -> list[dict[str, float]]:
    """The standardised centres, copied (the model's own dicts are not to be touched)."""
    return [dict(c) for c in model.clusterer.centers.values()]


def top_and_nearest(model: SegmentModel) -> tuple[dict[str, float], dict[str, float]]:
    """The highest-value centre and the centre closest to it (standardised space)."""
    cs = centres(model)
    top = max(cs, key=lambda c: sum(w * c[k] for k, w in VALUE.items()))
    others = [c for c in cs if c is not top]
    nearest = min(others, key=lambda c: sum((c[k] - top[k]) ** 2 for k in INPUTS))
    return top, nearest


def to_input(model: SegmentModel, z: dict[str, float]) -> dict[str, float]:
    """Standardised (unweighted) coordinates back to model inputs: x = z·sqrt(var) + mean."""
    means, variances = model.scaler.means, model.scaler.vars
    return {k: z[k] * math.sqrt(variances[k]) + means[k] for k in INPUTS}


def random_point(rng: random.Random) -> dict[str, float]:
    return {"monetary": rng.uniform(-1.0, 11.0), "tenure": rng.uniform(-1.0, 7.0)}


def test_the_top_centre_has_margin_one_and_segment_one(model):
    top, _ = top_and_nearest(model)
    # The top centre lies in the highest-value blob.
    high_m, high_t = BLOBS[-1]
    x = to_input(model, top)
    assert abs(x["monetary"] - high_m) < 0.5 and abs(x["tenure"] - high_t) < 0.5
    found = model.assess(x)
    assert found.segment == 1
    assert found.margin == pytest.approx(1.0, abs=1e-9)


def test_the_nearest_other_centre_has_margin_minus_one(model):
    _, nearest = top_and_nearest(model)
    found = model.assess(to_input(model, nearest))
    assert found.segment != 1
    assert found.margin == pytest.approx(-1.0, abs=1e-9)


def test_the_midpoint_between_the_centres_is_on_the_edge(model):
    top, nearest = top_and_nearest(model)
    mid = {k: (top[k] + nearest[k]) / 2 for k in INPUTS}
    assert model.assess(to_input(model, mid)).margin == pytest.approx(0.0, abs=1e-9)


def test_drivers_pulls_sum_to_the_margin(model):
    rng = random.Random(11)
    for _ in range(8):
        found = model.assess(random_point(rng), explain=True)
        assert found.margin is not None
        assert {d.input for d in found.drivers} == set(INPUTS)
        assert sum(d.pull for d in found.drivers) == pytest.approx(found.margin, abs=1e-9)


def test_drivers_report_the_value_and_the_insider_centre_in_feature_units(model):
    top, _ = top_and_nearest(model)
    x = {"monetary": 6.0, "tenure": 2.0}
    typical = to_input(model, top)
    by_input = {d.input: d for d in model.assess(x, explain=True).drivers}
    assert by_input["monetary"].feature == "kept_value"
    assert by_input["tenure"].feature == "tenure_days"
    for name in INPUTS:
        # Inputs are log1p of the feature: the feature is expm1 of the input.
        assert by_input[name].value == pytest.approx(math.expm1(x[name]), rel=1e-12)
        assert by_input[name].insider_typical == pytest.approx(math.expm1(typical[name]), rel=1e-9)


def test_the_margin_is_the_value_axis_between_the_top_two_centres(model):
    """By hand: value(z) = Σ VALUE·z; 1 at the top centre's value, -1 at the next one's."""
    cs = sorted(centres(model), key=lambda c: -sum(w * c[k] for k, w in VALUE.items()))
    top, second = (sum(w * c[k] for k, w in VALUE.items()) for c in cs[:2])
    means, variances = model.scaler.means, model.scaler.vars
    rng = random.Random(3)
    inside = 0
    for _ in range(200):
        x = random_point(rng)
        z = {k: (x[k] - means[k]) / math.sqrt(variances[k]) for k in INPUTS}
        value = sum(w * z[k] for k, w in VALUE.items())
        expected = (value - (top + second) / 2) / ((top - second) / 2)
        found = model.assess(x)
        assert found.margin == pytest.approx(expected, abs=1e-9)
        inside += found.margin > 0
    assert 0 < inside < 200  # the sample covers both sides of the edge


def test_more_money_never_lowers_the_margin(model):
    rng = random.Random(4)
    for _ in range(50):
        x = random_point(rng)
        richer = {**x, "monetary": x["monetary"] + rng.uniform(0.1, 5.0)}
        assert model.assess(richer).margin > model.assess(x).margin


def test_far_beyond_the_top_centre_the_margin_exceeds_one(model):
    top, _ = top_and_nearest(model)
    far = {k: top[k] + 5.0 * w for k, w in VALUE.items()}
    found = model.assess(to_input(model, far))
    assert found.segment == 1
    assert found.margin is not None and found.margin > 1.0


def test_warm_up_gives_no_assessment():
    model = SegmentModel(n_segments=3, warmup=30, seed=1, inputs=INPUTS, weights={})
    for x in blob_points(random.Random(5))[:29]:
        model.learn(x)
    model.end_step()
    assert not model.clusterer.ready
    assert model.assess({"monetary": 8.0, "tenure": 5.0}) == Assessment(None, None)
    assert model.segment_of({"monetary": 8.0, "tenure": 5.0}) is None


def test_event_time_ends_the_warm_up_after_warmup_days():
    model = SegmentModel(
        n_segments=3, warmup=1000, seed=1, inputs=INPUTS, weights={}, warmup_days=60.0
    )
    points = blob_points(random.Random(5), per_blob=4)  # 12 = 4 × n_segments
    for x in points:
        model.learn(x)
    t0 = 1_300_000_000
    model.end_step(t0)
    assert not model.clusterer.ready and model.version == 1
    model.end_step(t0 + 60 * SECONDS_PER_DAY - 1)
    assert not model.clusterer.ready and model.version == 2
    model.end_step(t0 + 60 * SECONDS_PER_DAY)
    assert model.clusterer.ready and model.version == 3
    assert len(model.clusterer.centers) == 3
    assert model.assess(points[0]).segment in {1, 2, 3}


def test_the_time_bound_warm_up_needs_four_points_per_segment():
    model = SegmentModel(
        n_segments=3, warmup=1000, seed=1, inputs=INPUTS, weights={}, warmup_days=60.0
    )
    points = blob_points(random.Random(5), per_blob=4)
    for x in points[:11]:
        model.learn(x)
    t0 = 1_300_000_000
    model.end_step(t0)
    model.end_step(t0 + 90 * SECONDS_PER_DAY)
    assert not model.clusterer.ready and model.version == 2
    assert model.assess(points[0]) == Assessment(None, None)
    model.learn(points[11])
    model.end_step(t0 + 91 * SECONDS_PER_DAY)
    assert model.clusterer.ready and model.version == 3


def test_end_step_without_a_time_never_ends_the_warm_up_early():
    model = SegmentModel(n_segments=3, warmup=1000, seed=1, inputs=INPUTS, weights={})
    for x in blob_points(random.Random(5), per_blob=10):
        model.learn(x)
    for expected in range(1, 4):
        model.end_step()
        assert model.version == expected
    assert not model.clusterer.ready and model.started_at is None
