"""One segmentation step: learn from the customers that changed, then re-assign them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from segmenter.events import InsiderEvent
from segmenter.features import CustomerState, features_of
from segmenter.model import SegmentModel, model_input
from segmenter.policy import InsiderPolicy, InsiderStatus


@dataclass
class StepResult:
    statuses: dict[str, InsiderStatus] = field(default_factory=dict)
    events: list[InsiderEvent] = field(default_factory=list)


@dataclass
class Segmenter:
    """Pure core of the segmentation: no I/O, no clock (``now_ts`` is passed in).

    The step is deterministic for a given model state, customer order and
    ``now_ts``, which is what lets a replay and the live path agree exactly.
    """

    model: SegmentModel = field(default_factory=SegmentModel)
    policy: InsiderPolicy = field(default_factory=InsiderPolicy)

    def step(
        self,
        customers: Sequence[tuple[str, CustomerState, InsiderStatus]],
        now_ts: int,
    ) -> StepResult:
        result = StepResult()
        changed = [(cid, state, status) for cid, state, status in customers if state.has_purchases]
        if not changed:
            return result
        inputs = []
        for cid, state, status in changed:
            features = features_of(state, now_ts)
            x = model_input(features)
            self.model.learn(x)
            inputs.append((cid, status, features, x))
        self.model.end_step()
        version = self.model.version
        for cid, status, features, x in inputs:
            segment = self.model.segment_of(x)
            new, event = self.policy.decide(cid, status, segment, features, now_ts, version)
            result.statuses[cid] = new
            if event is not None:
                result.events.append(event)
        return result
