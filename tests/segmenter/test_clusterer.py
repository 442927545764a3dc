"""SequentialKMeans and SegmentModel: running-mean centres, reproducibility, warm-up, ranking."""

from __future__ import annotations

import os
import pickle
import random
import statistics
import subprocess
import sys
import textwrap

import pytest

from segmenter.clusterer import SequentialKMeans
from segmenter.errors import CheckpointError
from segmenter.model import SegmentModel
from segmenter.segmentation import Segmenter


def test_centres_are_the_means_of_their_clusters():
    """With memory beyond the stream, each centre is the mean of every point it absorbed,
    warm-up members included (MacQueen's 1/n rule after a Lloyd warm start)."""
    rng = random.Random(7)
    locations = [-40.0, 0.0, 100.0, 250.0]
    stream = []
    for _ in range(900):
        k = rng.randrange(len(locations))
        stream.append((k, locations[k] + rng.uniform(-1.0, 1.0)))
    model = SequentialKMeans(n_clusters=4, warmup=80, memory=10**6, seed=3)
    for _, x in stream:
        model.learn_one({"x": x})

    assert model.ready
    by_position = sorted(zip(model.centres, model.counts, strict=True))
    for k, (centre, count) in enumerate(by_position):
        members = [x for label, x in stream if label == k]
        assert count == len(members)
        assert abs(centre[0] - statistics.fmean(members)) <= 1e-9


def test_memory_caps_the_learning_rate():
    """Once a centre has ``memory`` members, each new point moves it by 1/memory of the gap."""
    model = SequentialKMeans(n_clusters=1, warmup=2, memory=4, seed=0)
    for x in [0.0, 2.0]:  # warm-up: centre 1.0, count 2
        model.learn_one({"x": x})
    for x, expected in [(4.0, 2.0), (6.0, 3.0), (11.0, 5.0), (13.0, 7.0)]:
        model.learn_one({"x": x})
        assert model.centres[0][0] == pytest.approx(expected)
    assert model.counts == [4]


SCRIPT = textwrap.dedent(
    """
    import random, sys
    from segmenter.clusterer import SequentialKMeans

    keys = {"recency", "frequency", "monetary", "ticket"}
    print(list(keys), file=sys.stderr)  # this order depends on the hash seed
    rng = random.Random(2024)
    model = SequentialKMeans(n_clusters=4, warmup=256, seed=42)
    probes = []
    for n in range(2000):
        shift = 3.0 * rng.randrange(4)
        values = {k: rng.gauss(shift, 1.0) for k in sorted(keys)}
        x = {k: values[k] for k in keys}  # dict order follows the set
        model.learn_one(x)
        if n % 97 == 0:
            probes.append(x)
    print(repr(model.centres))
    print(repr(model.centers))
    print(repr(model.counts))
    print(repr([model.predict_one(x) for x in probes]))
    """
)


def test_results_do_not_depend_on_the_hash_seed():
    """Two interpreters with different PYTHONHASHSEED learn bit-identical centres."""
    runs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        runs.append(done)
    # The two runs really fed the keys in different orders.
    assert runs[0].stderr != runs[1].stderr
    assert runs[0].stdout.count("\n") == 4
    assert runs[0].stdout == runs[1].stdout


def test_not_ready_and_label_zero_during_warm_up():
    """Before ``warmup`` points there are no centres: ``ready`` is False, every label is 0."""
    model = SequentialKMeans(n_clusters=3, warmup=10, seed=5)
    points = [{"a": float(i * 10), "b": float(-i)} for i in range(10)]
    for x in points[:9]:
        model.learn_one(x)
        assert not model.ready
        assert model.predict_one({"a": 1000.0, "b": -5.0}) == 0
        assert model.predict_one({"a": -1000.0, "b": 5.0}) == 0
    model.learn_one(points[9])
    assert model.ready
    assert len(model.centres) == 3
    assert len({model.predict_one(x) for x in (points[0], points[5], points[9])}) > 1


def value_groups(seed: int, n: int = 480) -> list[tuple[int, dict[str, float]]]:
    """Four groups of model inputs, group g better than g - 1 on every input."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        g = rng.randrange(4)
        out.append(
            (
                g,
                {
                    "recency": 5.0 - 1.2 * g + rng.uniform(-0.2, 0.2),
                    "frequency": 0.2 + 0.6 * g + rng.uniform(-0.05, 0.05),
                    "monetary": 3.0 + 1.5 * g + rng.uniform(-0.2, 0.2),
                    "ticket": 2.0 + 1.0 * g + rng.uniform(-0.1, 0.1),
                },
            )
        )
    return out


def trained_model() -> tuple[SegmentModel, list[tuple[int, dict[str, float]]]]:
    data = value_groups(11)
    model = SegmentModel(n_segments=4, warmup=60, seed=9)
    assert model.segment_of(data[0][1]) is None  # still warming up
    for _, x in data:
        model.learn(x)
    model.end_step()
    return model, data


def test_segment_one_is_the_highest_value_cluster():
    """Segments are ranked by value: the big-spending, frequent, recent group is segment 1."""
    model, data = trained_model()
    assert model.version == 1
    for g, x in data:
        assert model.segment_of(x) == 4 - g
    best = {"recency": 1.0, "frequency": 2.0, "monetary": 7.5, "ticket": 5.0}
    worst = {"recency": 5.0, "frequency": 0.2, "monetary": 3.0, "ticket": 2.0}
    assert model.segment_of(best) == 1
    assert model.segment_of(worst) == 4


def test_checkpoint_round_trip_keeps_predictions():
    """A checkpoint restores a model that segments every point the same way."""
    model, _ = trained_model()
    restored = Segmenter.from_checkpoint(Segmenter(model).checkpoint()).model
    assert isinstance(restored, SegmentModel)
    assert restored is not model
    assert restored.version == model.version
    probes = [x for _, x in value_groups(99, n=200)]
    assert [restored.segment_of(x) for x in probes] == [model.segment_of(x) for x in probes]
    assert restored.clusterer.centres == model.clusterer.centres


@pytest.mark.parametrize("payload", [{"centres": []}, [1, 2, 3], "SegmentModel", None])
def test_restore_rejects_a_pickle_as_not_a_checkpoint(payload):
    """A pickle is never loaded: it is not JSON, so it is not an Insiders checkpoint."""
    with pytest.raises(CheckpointError, match=r"^not an Insiders checkpoint \(not JSON: b'\\x80"):
        Segmenter.from_checkpoint(pickle.dumps(payload))
