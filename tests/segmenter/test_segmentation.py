"""Segmenter: checkpoints (model, sweep clock, policy) and the sweep schedule."""

from __future__ import annotations

import random

import pytest

from segmenter.features import SECONDS_PER_DAY, CustomerState
from segmenter.model import SegmentModel
from segmenter.policy import InsiderPolicy, InsiderStatus, PolicySettings
from segmenter.segmentation import Segmenter, StepResult

DAY = SECONDS_PER_DAY
T0 = 1_300_000_000
SAVED_RULES = PolicySettings(
    entry_margin=0.45, exit_margin=0.15, min_dwell_days=12.0, lapse_days=75.0, overdue_factor=3.0
)
RUNNING_RULES = PolicySettings(
    entry_margin=0.05, exit_margin=0.6, min_dwell_days=3.0, lapse_days=200.0, overdue_factor=1.5
)


def customers(n: int, seed: int = 2) -> list[tuple[str, CustomerState, InsiderStatus]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        big = i % 3 == 0
        invoices = rng.randint(8, 20) if big else rng.randint(1, 3)
        first = T0 - rng.randint(30, 300) * DAY
        out.append(
            (
                str(10_000 + i),
                CustomerState(
                    revenue_micros=rng.randint(2_000, 9_000) * 10**6 * (20 if big else 1),
                    invoices=invoices,
                    lines=invoices * 3,
                    units=invoices * 30,
                    first_ts=first,
                    last_ts=T0 - rng.randint(0, 20) * DAY,
                    invoice_nos={f"{i}-{k}" for k in range(invoices)},
                ),
                InsiderStatus(),
            )
        )
    return out


@pytest.fixture
def trained() -> Segmenter:
    segmenter = Segmenter(SegmentModel(n_segments=3, warmup=30, seed=4), InsiderPolicy(SAVED_RULES))
    batch = customers(60)
    segmenter.step(batch[:30], T0)
    segmenter.step(batch[30:], T0 + DAY)
    assert segmenter.model.clusterer.ready and segmenter.model.version == 2
    segmenter.sweep([], T0 + 2 * DAY)
    return segmenter


def test_from_checkpoint_restores_model_sweep_clock_and_policy(trained):
    blob = trained.checkpoint()
    restored = Segmenter.from_checkpoint(blob)
    assert restored.model is not trained.model
    assert restored.model.version == 2
    assert restored.model.clusterer.centers == trained.model.clusterer.centers
    assert len(restored.model.clusterer.centers) == 3
    assert restored.swept_at == T0 + 2 * DAY
    assert restored.policy.settings == SAVED_RULES
    assert restored.policy.settings != PolicySettings()
    probe = {"monetary": 9.0, "tenure": 5.0}
    assert restored.model.assess(probe) == trained.model.assess(probe)


def test_restore_keeps_the_running_policy_by_default(trained):
    blob = trained.checkpoint()
    running = Segmenter(SegmentModel(), InsiderPolicy(RUNNING_RULES))
    running.restore(blob)
    assert running.policy.settings == RUNNING_RULES
    assert running.model.version == 2
    assert running.model.clusterer.centers == trained.model.clusterer.centers
    assert running.swept_at == T0 + 2 * DAY


def test_restore_can_adopt_the_saved_policy(trained):
    running = Segmenter(SegmentModel(), InsiderPolicy(RUNNING_RULES))
    running.restore(trained.checkpoint(), keep_policy=False)
    assert running.policy.settings == SAVED_RULES


def test_sweep_is_due_initially_then_once_a_day():
    segmenter = Segmenter(SegmentModel(n_segments=3, warmup=30, seed=4))
    assert segmenter.sweep_every == DAY
    assert segmenter.sweep_due(T0)
    segmenter.sweep([], T0)
    assert segmenter.swept_at == T0
    assert not segmenter.sweep_due(T0)
    assert not segmenter.sweep_due(T0 + DAY - 1)
    assert segmenter.sweep_due(T0 + DAY)


def test_a_sweep_of_no_customers_is_empty(trained):
    version = trained.model.version
    result = trained.sweep([], T0 + 5 * DAY)
    assert result == StepResult()
    assert result.statuses == {} and result.events == []
    assert trained.model.version == version  # a sweep never trains the model


def test_a_step_of_customers_without_purchases_is_empty(trained):
    version = trained.model.version
    result = trained.step([("1", CustomerState(), InsiderStatus())], T0 + 3 * DAY)
    assert result == StepResult()
    assert trained.model.version == version
