"""Segmentation steps: learn from the customers that changed and re-assign them; sweep."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field

from segmenter.events import InsiderEvent
from segmenter.features import SECONDS_PER_DAY, CustomerState, features_of
from segmenter.model import SegmentModel, model_input
from segmenter.policy import InsiderPolicy, InsiderStatus

Customers = Sequence[tuple[str, CustomerState, InsiderStatus]]


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

    def checkpoint(self) -> bytes:
        """The learned state (model, sweep clock) and the policy in force, for the store."""
        state = (self.model, self.swept_at, self.policy)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes, keep_policy: bool = True) -> None:
        """Load a checkpoint; keep this process's own policy unless ``keep_policy`` is False."""
        state = pickle.loads(blob)
        if not (
            isinstance(state, tuple)
            and len(state) == 3
            and isinstance(state[0], SegmentModel)
            and isinstance(state[2], InsiderPolicy)
        ):
            raise TypeError(f"checkpoint holds a {type(state).__name__}, not a segmenter's state")
        model, swept_at, policy = state
        self.model, self.swept_at = model, swept_at
        if not keep_policy:
            self.policy = policy

    @classmethod
    def from_checkpoint(cls, blob: bytes) -> Segmenter:
        """A segmenter as the writer saved it, policy included (for readers such as the API)."""
        segmenter = cls()
        segmenter.restore(blob, keep_policy=False)
        return segmenter
