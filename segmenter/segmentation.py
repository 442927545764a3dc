"""Segmentation steps: learn from the customers that changed and re-assign them; sweep.

The segmenter's checkpoint is versioned JSON (``orjson`` bytes), never a pickle::

    {"format": "insiders.checkpoint", "version": 1, "model_version": 812,
     "segments": 4, "seed": 42, "swept_at": 1323993600,
     "policy": {"entry_margin": 0.3, ...},
     "model": {"n_segments": 4, ..., "scaler": {...}, "clusterer": {...}}}

Reading one runs no code; every field is checked before the model is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from segmenter.errors import CheckpointError
from segmenter.events import InsiderEvent
from segmenter.features import SECONDS_PER_DAY, CustomerState, features_of
from segmenter.model import SegmentModel, model_input
from segmenter.policy import InsiderPolicy, InsiderStatus
from segmenter.state import Fields, describe

Customers = Sequence[tuple[str, CustomerState, InsiderStatus]]

CHECKPOINT_FORMAT = "insiders.checkpoint"
CHECKPOINT_VERSION = 1
_CHECKPOINT_FIELDS = (
    "format",
    "version",
    "model_version",
    "segments",
    "seed",
    "swept_at",
    "policy",
    "model",
)


@dataclass
class StepResult:
    statuses: dict[str, InsiderStatus] = field(default_factory=dict)
    events: list[InsiderEvent] = field(default_factory=list)


@dataclass
class Segmenter:
    """Pure core of the segmentation: no I/O, no clock (``now_ts`` is passed in).

    Steps are deterministic for a given model state, customer order and ``now_ts``,
    which is what lets a replay and the live path agree exactly.
    """

    model: SegmentModel = field(default_factory=SegmentModel)
    policy: InsiderPolicy = field(default_factory=InsiderPolicy)
    sweep_every: int = SECONDS_PER_DAY
    swept_at: int | None = None

    def step(self, customers: Customers, now_ts: int) -> StepResult:
        """Learn from customers whose state changed, then re-assess them."""
        changed = [(cid, state, status) for cid, state, status in customers if state.has_purchases]
        if not changed:
            return StepResult()
        for _, state, _ in changed:
            self.model.learn(model_input(features_of(state, now_ts)))
        self.model.end_step(now_ts)
        return self._assess(changed, now_ts, sweep=False)

    def sweep_due(self, now_ts: int) -> bool:
        return self.swept_at is None or now_ts - self.swept_at >= self.sweep_every

    def sweep(self, insiders: Customers, now_ts: int) -> StepResult:
        """Re-assess current Insiders as time moves (recency grows without new events)."""
        self.swept_at = now_ts
        return self._assess(insiders, now_ts, sweep=True)

    def _assess(self, customers: Customers, now_ts: int, sweep: bool) -> StepResult:
        result = StepResult()
        version = self.model.version
        for cid, state, status in customers:
            features = features_of(state, now_ts)
            x = model_input(features)
            assessment = self.model.assess(x)
            new, event = self.policy.decide(
                cid, status, assessment, features, now_ts, version, sweep=sweep
            )
            if event is not None:
                # The same decision again, with the drivers the event's reason names.
                assessment = self.model.assess(x, explain=True)
                new, event = self.policy.decide(
                    cid, status, assessment, features, now_ts, version, sweep=sweep
                )
            if new != status:
                result.statuses[cid] = new
            if event is not None:
                result.events.append(event)
        return result

    def to_state(self) -> dict[str, Any]:
        """The learned state (model, sweep clock) and the policy in force, as JSON-ready data.

        ``model_version``, ``segments`` and ``seed`` repeat the model's own, so a reader
        can tell what a checkpoint holds at a glance.
        """
        model = self.model
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model_version": model.version,
            "segments": model.n_segments,
            "seed": model.seed,
            "swept_at": self.swept_at,
            "policy": self.policy.to_state(),
            "model": model.to_state(),
        }

    @classmethod
    def from_state(cls, state: object) -> Segmenter:
        """A segmenter as ``to_state`` described it, policy included; checked field by field."""
        if not isinstance(state, dict):
            raise CheckpointError(f"not an Insiders checkpoint (JSON {describe(state)})")
        if state.get("format") != CHECKPOINT_FORMAT:
            found = describe(state["format"]) if "format" in state else "no format field"
            raise CheckpointError(f"not an Insiders checkpoint (format {found})")
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"Insiders checkpoint version {describe(state.get('version'))}: "
                f"this release reads version {CHECKPOINT_VERSION}"
            )
        doc = Fields(state, "checkpoint", _CHECKPOINT_FIELDS)
        model = SegmentModel.from_state(doc.raw("model"), doc.at("model"))
        for name, have in (
            ("model_version", model.version),
            ("segments", model.n_segments),
            ("seed", model.seed),
        ):
            if doc.integer(name, minimum=None) != have:
                raise CheckpointError(f"{doc.at(name)}: {doc.raw(name)}, but the model's is {have}")
        return cls(
            model=model,
            policy=InsiderPolicy.from_state(doc.raw("policy"), doc.at("policy")),
            swept_at=doc.optional_integer("swept_at", minimum=None),
        )

    def checkpoint(self) -> bytes:
        """The state (:meth:`to_state`) as JSON bytes, for the store."""
        return orjson.dumps(self.to_state())

    def restore(self, blob: bytes, keep_policy: bool = True) -> None:
        """Load a checkpoint; keep this process's own policy unless ``keep_policy`` is False.

        Raises :class:`CheckpointError` if ``blob`` is not a valid checkpoint; then
        nothing of this segmenter has changed.
        """
        saved = Segmenter.from_checkpoint(blob)
        self.model, self.swept_at = saved.model, saved.swept_at
        if not keep_policy:
            self.policy = saved.policy

    @classmethod
    def from_checkpoint(cls, blob: bytes) -> Segmenter:
        """A segmenter as the writer saved it, policy included (for readers such as the API).

        >>> blob = Segmenter(SegmentModel(n_segments=3, seed=7)).checkpoint()
        >>> restored = Segmenter.from_checkpoint(blob)
        >>> restored.model.n_segments, restored.model.seed, restored.checkpoint() == blob
        (3, 7, True)
        >>> Segmenter.from_checkpoint(b"\\x80\\x04K*.")  # a pickle
        Traceback (most recent call last):
        ...
        segmenter.errors.CheckpointError: not an Insiders checkpoint (not JSON: b'\\x80\\x04K*.')
        """
        try:
            state = orjson.loads(blob)
        except orjson.JSONDecodeError:
            raise CheckpointError(
                f"not an Insiders checkpoint (not JSON: {bytes(blob[:16])!r})"
            ) from None
        return cls.from_state(state)
