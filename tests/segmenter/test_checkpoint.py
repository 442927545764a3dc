"""Checkpoints as versioned JSON: exact continuation after a restore, and checks on load."""

from __future__ import annotations

import copy
import math
import random
import struct
from dataclasses import replace
from typing import Any

import orjson
import pytest

from segmenter.clusterer import SequentialKMeans
from segmenter.errors import CheckpointError
from segmenter.features import SECONDS_PER_DAY, CustomerState, features_of
from segmenter.model import SegmentModel, model_input
from segmenter.policy import InsiderPolicy, InsiderStatus, PolicySettings
from segmenter.segmentation import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, Segmenter, StepResult

DAY = SECONDS_PER_DAY
T0 = 1_290_000_000
RULES = PolicySettings(entry_margin=0.2, exit_margin=0.1, min_dwell_days=5, lapse_days=60.0)


def stream(steps: int = 40, customers: int = 300, seed: int = 11) -> list[tuple[int, list]]:
    """Steps of (now, changed customers' states): purchases arrive day after day."""
    rng = random.Random(seed)
    states = {str(20_000 + i): CustomerState() for i in range(customers)}
    big = {cid for cid in states if rng.random() < 0.2}
    out = []
    for k in range(steps):
        now = T0 + k * DAY + rng.randrange(DAY)
        changed = rng.sample(sorted(states), rng.randint(5, 40))
        for cid in changed:
            s = states[cid]
            s.revenue_micros += rng.randint(5, 400) * 10**6 * (30 if cid in big else 1)
            s.invoices += 1
            s.lines += rng.randint(1, 9)
            s.units += rng.randint(1, 90)
            s.invoice_nos.add(f"{cid}-{k}")
            s.first_ts = now if s.first_ts is None else s.first_ts
            s.last_ts = now
        out.append((now, [(cid, copy.deepcopy(states[cid])) for cid in changed]))
    return out


def fresh() -> Segmenter:
    return Segmenter(SegmentModel(n_segments=4, warmup=120, seed=5), InsiderPolicy(RULES))


def run(
    segmenter: Segmenter,
    steps: list,
    statuses: dict[str, InsiderStatus],
    latest: dict[str, CustomerState] | None = None,
) -> list[StepResult]:
    """What the pipeline does with each block: a step, then the sweep when it is due.

    ``statuses`` and ``latest`` (each customer's last state) play the store.
    """
    results = []
    latest = {} if latest is None else latest
    for now, changed in steps:
        customers = [(cid, state, statuses.get(cid, InsiderStatus())) for cid, state in changed]
        results.append(segmenter.step(customers, now))
        statuses.update(results[-1].statuses)
        latest.update(changed)
        if segmenter.sweep_due(now):
            # Everyone, as the pipeline passes them when the policy holds a target share.
            everyone = [(c, st, statuses.get(c, InsiderStatus())) for c, st in latest.items()]
            results.append(segmenter.sweep(everyone, now))
            statuses.update(results[-1].statuses)
    return results


def scaler_stats(segmenter: Segmenter) -> list[list[tuple[str, Any]]]:
    scaler = segmenter.model.scaler
    return [list(scaler.counts.items()), list(scaler.means.items()), list(scaler.vars.items())]


@pytest.mark.parametrize("cut", [1, 2, 6, 23])
def test_a_restored_segmenter_continues_bit_for_bit(cut):
    """Stop at ``cut`` (1 and 2: mid warm-up; later: with centres), restore into a fresh
    segmenter, go on with the same data: every result and every float equals the run that
    never stopped."""
    steps = stream()
    whole, whole_statuses = fresh(), {}
    whole_results = run(whole, steps, whole_statuses, {})

    first, statuses = fresh(), {}
    known: dict[str, CustomerState] = {}
    results = run(first, steps[:cut], statuses, known)
    blob = first.checkpoint()
    assert first.model.clusterer.ready == (cut > 2)
    resumed = fresh()
    resumed.restore(blob)
    assert resumed.checkpoint() == blob
    results += run(resumed, steps[cut:], statuses, known)

    assert results == whole_results
    assert sum(len(r.events) for r in results) > 10, "the stream must move customers"
    assert statuses == whole_statuses
    assert resumed.model.clusterer.centres == whole.model.clusterer.centres
    assert resumed.model.clusterer.counts == whole.model.clusterer.counts
    assert scaler_stats(resumed) == scaler_stats(whole)
    assert resumed.model.clusterer._rng.getstate() == whole.model.clusterer._rng.getstate()
    assert (resumed.model.version, resumed.swept_at) == (whole.model.version, whole.swept_at)
    probes = [state for _, changed in steps[-3:] for _, state in changed]
    for state in probes:
        x = model_input(features_of(state, steps[-1][0]))
        assert resumed.model.assess(x, explain=True) == whole.model.assess(x, explain=True)
    assert resumed.model.typical() == whole.model.typical()
    assert resumed.checkpoint() == whole.checkpoint()


def test_a_restored_clusterer_finishes_its_warm_up_like_the_original():
    """Mid warm-up the buffer and the random state matter: the k-means++ draw that ends the
    warm-up after a restore picks the same centres."""
    rng = random.Random(3)
    points = [{"a": rng.gauss(rng.choice([0.0, 5.0, 9.0]), 1.0)} for _ in range(300)]
    model = SequentialKMeans(n_clusters=3, warmup=200, seed=8)
    for x in points[:150]:
        model.learn_one(x)
    restored = SequentialKMeans.from_state(orjson.loads(orjson.dumps(model.to_state())))
    for m in (model, restored):
        for x in points[150:]:
            m.learn_one(x)
    assert model.ready and restored.centres == model.centres
    assert restored.counts == model.counts


def test_orjson_round_trips_every_finite_double_exactly():
    """The checkpoint's exactness rests on this: the shortest repr, parsed back, is the same
    64 bits (subnormals and -0.0 included)."""
    rng = random.Random(0)
    values = [-0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2]
    while len(values) < 20_000:
        (x,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(x):
            values.append(x)
    back = orjson.loads(orjson.dumps(values))
    assert [struct.pack("<d", x) for x in back] == [struct.pack("<d", x) for x in values]


def test_the_checkpoint_is_versioned_json_of_plain_data():
    blob = fresh().checkpoint()
    doc = orjson.loads(blob)
    assert doc["format"] == CHECKPOINT_FORMAT and doc["version"] == CHECKPOINT_VERSION
    assert (doc["segments"], doc["seed"], doc["model_version"]) == (4, 5, 0)
    assert doc["policy"] == {
        "target_share": 0.12,
        "share_band": 0.015,
        "entry_margin": 0.2,
        "exit_margin": 0.1,
        "min_dwell_days": 5,  # an int stays an int
        "lapse_days": 60.0,
        "overdue_factor": 2.0,
    }
    restored = Segmenter.from_checkpoint(blob)
    assert restored.policy.settings == RULES
    assert isinstance(restored.policy.settings.min_dwell_days, int)


def trained_state() -> dict[str, Any]:
    segmenter = fresh()
    run(segmenter, stream(steps=12), {})
    assert segmenter.model.clusterer.ready
    state: dict[str, Any] = orjson.loads(segmenter.checkpoint())
    return state


def edit(path: str, value: Any) -> Any:
    """A change to a trained checkpoint: set the value at a dotted path (``-`` deletes)."""

    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if value == "-":
            del node[key]
        else:
            node[key] = value

    return apply


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            edit("format", "insiders.snapshot"),
            "not an Insiders checkpoint (format 'insiders.snapshot')",
        ),
        (edit("format", "-"), "not an Insiders checkpoint (format no format field)"),
        (edit("version", 3), "Insiders checkpoint version 3: this release reads versions 1 and 2"),
        (edit("policy.share_band", 0.2), "checkpoint.policy: target share 0.12 with band 0.2"),
        (edit("calibration", {"entry": 1}), "checkpoint.calibration: missing exit, note"),
        (edit("segments", 5), "checkpoint.segments: 5, but the model's is 4"),
        (edit("swept_at", "yesterday"), "checkpoint.swept_at: want an integer, got 'yesterday'"),
        (edit("policy.lapse_days", None), "checkpoint.policy.lapse_days: want a finite number"),
        (edit("policy.extra", 1), "checkpoint.policy: unexpected extra"),
        (edit("model.version", -1), "checkpoint.model.version: want an integer >= 0, got -1"),
        (edit("model.n_segments", True), "checkpoint.model.n_segments: want an integer >= 1"),
        (edit("model.scaler.counts.tenure", 2.5), "checkpoint.model.scaler.counts.tenure: want"),
        (
            edit("model.scaler.vars.tenure", -1.0),
            "checkpoint.model.scaler.vars.tenure: want a number >= 0",
        ),
        (edit("model.scaler.means.ticket", 1.0), "ticket not among the inputs"),
        (edit("model.scaler.means", {}), "counts, means and vars name different inputs"),
        (
            edit("model.clusterer.centres.1", [0.5]),
            "checkpoint.model.clusterer.centres[1]: want 2 items, got 1",
        ),
        (
            edit("model.clusterer.centres.2.0", "x"),
            "checkpoint.model.clusterer.centres[2][0]: want a finite number",
        ),
        (
            edit("model.clusterer.centres.3", "-"),
            "checkpoint.model.clusterer.centres: want none or 4, got 3",
        ),
        (
            edit("model.clusterer.counts.0", 0),
            "checkpoint.model.clusterer.counts[0]: want an integer >= 1, got 0",
        ),
        (
            edit("model.clusterer.counts", [1]),
            "checkpoint.model.clusterer.counts: want 4 items, got 1",
        ),
        (
            edit("model.clusterer.buffer", [[1.0, 2.0]]),
            "checkpoint.model.clusterer.buffer: want none once centres exist",
        ),
        (
            edit("model.clusterer.keys", ["tenure", "tenure"]),
            "checkpoint.model.clusterer.keys: names repeat",
        ),
        (
            edit("model.clusterer.seed", 43),
            "checkpoint.model.clusterer.seed: 43, but the model's is 5",
        ),
        (
            edit("model.clusterer.rng.1", [1, 2]),
            "checkpoint.model.clusterer.rng[1]: want 624 32-bit words",
        ),
        (edit("model.clusterer.rng.0", 2), "checkpoint.model.clusterer.rng[0]: want 3, got 2"),
        (edit("model.clusterer.rng.1.3", 2**32), "checkpoint.model.clusterer.rng[1]: want 624"),
        (
            edit("model.clusterer", []),
            "checkpoint.model.clusterer: want an object, got a list of 0",
        ),
        (edit("model.scaler", "-"), "checkpoint.model: missing scaler"),
    ],
)
def test_a_checkpoint_that_is_not_well_formed_is_refused_in_one_line(change, message):
    state = trained_state()
    change(state)
    with pytest.raises(CheckpointError) as raised:
        Segmenter.from_checkpoint(orjson.dumps(state))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "not an Insiders checkpoint (not JSON: b'')"),
        (b"\x80\x05\x95\x15\x00", "not an Insiders checkpoint (not JSON: b'\\x80\\x05\\x95"),
        (b"[1, 2]", "not an Insiders checkpoint (JSON a list of 2)"),
        (b'"SegmentModel"', "not an Insiders checkpoint (JSON 'SegmentModel')"),
        (b"null", "not an Insiders checkpoint (JSON null)"),
        (b'{"centres": []}', "not an Insiders checkpoint (format no format field)"),
        (b'{"format": "insiders.checkpoint", "version": 1e999}', "not JSON"),
    ],
)
def test_what_is_not_our_json_is_not_an_insiders_checkpoint(blob, message):
    with pytest.raises(CheckpointError) as raised:
        Segmenter.from_checkpoint(blob)
    assert message in str(raised.value)


def test_non_finite_numbers_are_refused_even_from_python_data():
    """JSON has no NaN (orjson reads none), but from_state takes Python data too."""
    state = trained_state()
    state["model"]["clusterer"]["centres"][0][1] = float("nan")
    with pytest.raises(CheckpointError, match=r"centres\[0\]\[1\]: want a finite number, got nan"):
        Segmenter.from_state(state)


def test_a_failed_restore_leaves_the_segmenter_as_it_was():
    segmenter = fresh()
    run(segmenter, stream(steps=8), {})
    before = segmenter.checkpoint()
    with pytest.raises(CheckpointError):
        segmenter.restore(b'{"format": "insiders.checkpoint", "version": 1}')
    assert segmenter.checkpoint() == before


def test_restore_keeps_the_running_policy_and_from_checkpoint_the_saved_one():
    saved = fresh()
    blob = saved.checkpoint()
    other = replace(RULES, entry_margin=0.9)
    running = Segmenter(SegmentModel(n_segments=4, warmup=120, seed=5), InsiderPolicy(other))
    running.restore(blob)
    assert running.policy.settings == other
    assert Segmenter.from_checkpoint(blob).policy.settings == RULES
