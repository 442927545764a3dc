"""Segmentation steps: learn from the customers that changed and re-assign them; sweep.

The step assesses the customers a block changed against the policy's edges. The daily
sweep ranks every customer by margin, calibrates the edges to the target share
(:func:`segmenter.policy.calibrate`) and applies them to everyone: that is what holds
the group's size, and what takes out Insiders as time passes without a purchase.

The segmenter's checkpoint is versioned JSON (``orjson`` bytes), never a pickle::

    {"format": "insiders.checkpoint", "version": 2, "model_version": 812,
     "segments": 4, "seed": 42, "swept_at": 1323993600,
     "calibration": {"entry": 0.61, "exit": 0.42, "customers": 4334, ...},
     "policy": {"target_share": 0.12, ...},
     "model": {"n_segments": 4, ..., "scaler": {...}, "clusterer": {...}}}

Version 1 (before target shares) is read too: it has no calibration, and the next
sweep makes one. Reading a checkpoint runs no code; every field is checked before the
model is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson

from segmenter.errors import CheckpointError
from segmenter.events import InsiderEvent
from segmenter.features import SECONDS_PER_DAY, CustomerState, features_of
from segmenter.lines import MICROS_PER_POUND
from segmenter.model import Assessment, SegmentModel, column_inputs, model_input
from segmenter.policy import (
    Calibration,
    Edges,
    InsiderPolicy,
    InsiderStatus,
    calibrate,
    lapsed_mask,
    overdue_mask,
)
from segmenter.roster import NONE, Roster
from segmenter.state import Fields, describe

Customers = Sequence[tuple[str, CustomerState, InsiderStatus]]

CHECKPOINT_FORMAT = "insiders.checkpoint"
CHECKPOINT_VERSION = 2
_CHECKPOINT_FIELDS = (
    "format",
    "version",
    "model_version",
    "segments",
    "seed",
    "swept_at",
    "calibration",
    "policy",
    "model",
)


def _best(
    rows: np.ndarray, margins: np.ndarray, name: Callable[[int], str], count: int
) -> np.ndarray:
    """The ``count`` of ``rows`` with the highest margins, best first, ties by ``name``;
    only the rows at or above the cut are sorted one by one. A row without a margin (NaN)
    is not ranked."""
    rows = rows[~np.isnan(margins[rows])]
    if count <= 0 or not len(rows):
        return rows[:0]
    if count < len(rows):
        cut = -np.partition(-margins[rows], count - 1)[count - 1]
        rows = rows[margins[rows] >= cut]
    return np.array(sorted(rows.tolist(), key=lambda i: (-margins[i], name(i)))[:count], dtype=int)


class _Columns:
    """The totals the ranking reads, of some rows of a roster, as float arrays."""

    def __init__(self, roster: Roster, rows: np.ndarray) -> None:
        def column(name: str) -> np.ndarray:
            return roster.column(name)[rows].astype(float)

        self.revenue = column("revenue_micros") / MICROS_PER_POUND
        self.kept = self.revenue - column("returned_micros") / MICROS_PER_POUND
        self.invoices, self.first, self.last = (
            column("invoices"),
            column("first_ts"),
            column("last_ts"),
        )
        self.span_days = (self.last - self.first) / SECONDS_PER_DAY

    def inputs(self, now_ts: int) -> dict[str, np.ndarray]:
        return column_inputs(self.revenue, self.kept, self.invoices, self.first, self.last, now_ts)


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
    calibration: Calibration | None = None

    @property
    def edges(self) -> Edges | None:
        """The edges in force: calibrated to the target share, or the policy's fixed ones.

        None until the first sweep after the warm-up has ranked the customers.
        """
        if self.policy.settings.target_share is None:
            return self.policy.fixed_edges
        return None if self.calibration is None else self.calibration.edges

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
        if self.swept_at is None or now_ts - self.swept_at >= self.sweep_every:
            return True
        # The model just left its warm-up: rank at once rather than up to a day later.
        if self.edges is None:
            return self.model.clusterer.ready
        # So many new customers came that the group fell below its band: rank again now.
        rules = self.policy.settings
        calibration = self.calibration
        return (
            rules.target_share is not None
            and calibration is not None
            and calibration.below(rules.target_share - rules.share_band)
        )

    @property
    def sweeps_everyone(self) -> bool:
        """Whether :meth:`sweep` needs every customer (a target share) or only the Insiders."""
        return self.policy.settings.target_share is not None

    def sweep(self, customers: Customers | Roster, now_ts: int) -> StepResult:
        """Re-assess as time moves (recency grows without new events).

        ``customers`` is everyone: a :class:`Roster`, or the customers to make one of.

        With a target share, they are ranked by margin and the edges calibrated
        (:func:`segmenter.policy.calibrate`); Insiders below the exit edge leave; then
        customers at or above the entry edge enter, and if the group is still below the
        target, the best-ranked others enter until it is reached (the entry edge in force
        until the next sweep is lowered to match).

        Without a target share, only time can take an Insider out here, and only once
        overdue: the Insiders due (overdue by now) are re-assessed against the fixed edges.

        Both are array code over the roster; a customer is decided one by one only when
        due, or when their membership or segment changes. With a target share only such
        changes are written (a segment or a membership, not a new model version); without
        one, the overdue Insiders' statuses are written as a step writes them.
        """
        self.swept_at = now_ts
        roster = customers if isinstance(customers, Roster) else Roster.of(customers)
        if not self.sweeps_everyone:
            return self._recheck(roster, now_ts)
        if not self.model.clusterer.ready:
            return StepResult()
        return self._rank(roster, now_ts)

    def _recheck(self, roster: Roster, now_ts: int) -> StepResult:
        """Fixed edges: the overdue Insiders re-assessed; the others' segments kept current."""
        rules, ids = self.policy.settings, roster.ids
        insiders = np.flatnonzero(roster.column("insider") == 1)
        columns = _Columns(roster, insiders)
        due = overdue_mask(
            (now_ts - columns.last) / SECONDS_PER_DAY, columns.invoices, columns.span_days, rules
        )
        result = self._assess(
            [
                (ids[row], roster.state(row), roster.status(row))
                for row in sorted(insiders[due].tolist(), key=ids.__getitem__)
            ],
            now_ts,
            sweep=True,
        )
        if self.model.clusterer.ready:
            _, segments = self.model.margins(columns.inputs(now_ts))
            stored = roster.column("segment")[insiders]
            moved = np.flatnonzero(~due & (segments != stored)).tolist()
            for j in sorted(moved, key=lambda j: ids[int(insiders[j])]):
                row = int(insiders[j])
                status = replace(
                    roster.status(row), segment=int(segments[j]), model_version=self.model.version
                )
                result.statuses[ids[row]] = status
        return result

    def _rank(self, roster: Roster, now_ts: int) -> StepResult:
        rules = self.policy.settings
        assert rules.target_share is not None
        ids, version = roster.ids, self.model.version
        known = np.flatnonzero(roster.column("lines") > 0)
        columns = _Columns(roster, known)
        margins, segments = self.model.margins(columns.inputs(now_ts))
        eligible = ~lapsed_mask(
            (now_ts - columns.last) / SECONDS_PER_DAY, columns.invoices, columns.span_days, rules
        )
        calibration = calibrate(margins, eligible, rules.target_share, rules.share_band, now_ts)
        edges = calibration.edges
        insider = roster.column("insider")[known] == 1
        was_segment = roster.column("segment")[known]
        result = StepResult()
        changed: list[tuple[str, InsiderStatus]] = []

        def by_id(picked: np.ndarray) -> list[int]:
            return sorted(picked.tolist(), key=lambda i: ids[known[i]])

        def decide(i: int, edges: Edges) -> InsiderStatus:
            row = int(known[i])
            cid, state, status = ids[row], roster.state(row), roster.status(row)
            features = features_of(state, now_ts)
            assessment = Assessment(int(segments[i]), float(margins[i]))
            new, event = self.policy.decide(
                cid, status, assessment, features, now_ts, version, edges, sweep=True
            )
            if event is not None:
                # The same decision, with the drivers its reason names. The margin stays the
                # ranking's: the one-customer computation may differ from it in the last bit.
                drivers = self.model.assess(model_input(features), explain=True).drivers
                assessment = replace(assessment, drivers=drivers)
                new, event = self.policy.decide(
                    cid, status, assessment, features, now_ts, version, edges, sweep=True
                )
                assert event is not None
                result.events.append(event)
            # Only changes are written: a segment or a membership, not a new model version.
            if new.insider != status.insider or new.segment != status.segment:
                changed.append((cid, new))
            return new

        def moved_segment(picked: np.ndarray) -> None:
            """Statuses of customers whose segment, and nothing else, changed."""
            for i in by_id(picked[segments[picked] != was_segment[picked]]):
                moved = replace(
                    roster.status(int(known[i])), segment=int(segments[i]), model_version=version
                )
                changed.append((ids[known[i]], moved))

        # Insiders: the ones the policy takes out (lapsed, or below the exit edge after the
        # dwell: a sweep never waives it) are decided one by one; the others keep their place.
        since = roster.column("insider_since")[known]
        dwell = np.where(since == NONE, 0.0, (now_ts - since.astype(float)) / SECONDS_PER_DAY)
        leaving = insider & (~eligible | ((margins < edges.exit) & (dwell >= rules.min_dwell_days)))
        members = int(insider.sum())
        for i in by_id(np.flatnonzero(leaving)):
            members -= not decide(i, edges).insider
        moved_segment(np.flatnonzero(insider & ~leaving))
        insiders_changed = len(changed)
        # Entries, best-ranked first: everyone at or above the entry edge while the group
        # is below the top of its band (Insiders kept by their dwell count too), and then,
        # if the group is still below the target, the next best until it is reached.
        candidates = np.flatnonzero(~insider & eligible)
        target = round(rules.target_share * len(known))
        room = max(0, calibration.cap - members)
        above = candidates[margins[candidates] >= edges.entry]
        admitted = _best(above, margins, lambda i: ids[known[i]], room)
        if len(admitted) + members < target:
            admitted = _best(candidates, margins, lambda i: ids[known[i]], target - members)
            fill = float(margins[admitted[-1]]) if len(admitted) else edges.entry
            if fill < edges.entry:
                edges = Edges(fill, edges.exit, edges.note + ", filled to the target")
                calibration = replace(calibration, edges=edges)
        chosen = np.zeros(len(known), dtype=bool)
        chosen[admitted] = True
        for i in by_id(np.flatnonzero(chosen)):
            members += decide(i, edges).insider
        moved_segment(np.flatnonzero(~insider & ~chosen))
        # In id order, Insiders first, whatever order the roster keeps.
        outside = sorted(changed[insiders_changed:])
        result.statuses = dict(sorted(changed[:insiders_changed]) + outside)
        self.calibration = replace(calibration, members=members)
        return result

    def _assess(self, customers: Customers, now_ts: int, sweep: bool) -> StepResult:
        result = StepResult()
        version = self.model.version
        calibration = self.calibration if self.sweeps_everyone else None
        for cid, state, status in customers:
            features = features_of(state, now_ts)
            x = model_input(features)
            assessment = self.model.assess(x)
            if calibration is not None and status.model_version == 0:
                calibration = calibration.grown(1)  # never assessed before: a new customer
            if calibration is not None and not status.insider and calibration.full:
                # The group is at the top of its band: the next ranking decides who enters.
                edges = None
            else:
                edges = self.edges
            new, event = self.policy.decide(
                cid, status, assessment, features, now_ts, version, edges, sweep=sweep
            )
            if event is not None:
                # The same decision again, with the drivers the event's reason names.
                assessment = self.model.assess(x, explain=True)
                new, event = self.policy.decide(
                    cid, status, assessment, features, now_ts, version, edges, sweep=sweep
                )
            if new != status:
                result.statuses[cid] = new
            if event is not None:
                result.events.append(event)
                if calibration is not None:
                    calibration = calibration.moved(1 if new.insider else -1)
        if calibration is not None:
            self.calibration = calibration
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
            "calibration": None if self.calibration is None else self.calibration.to_state(),
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
        if state.get("version") not in (1, CHECKPOINT_VERSION):
            raise CheckpointError(
                f"Insiders checkpoint version {describe(state.get('version'))}: "
                f"this release reads versions 1 and {CHECKPOINT_VERSION}"
            )
        if state["version"] == 1:
            state = {**state, "version": CHECKPOINT_VERSION, "calibration": None}
        doc = Fields(state, "checkpoint", _CHECKPOINT_FIELDS)
        model = SegmentModel.from_state(doc.raw("model"), doc.at("model"))
        for name, have in (
            ("model_version", model.version),
            ("segments", model.n_segments),
            ("seed", model.seed),
        ):
            if doc.integer(name, minimum=None) != have:
                raise CheckpointError(f"{doc.at(name)}: {doc.raw(name)}, but the model's is {have}")
        calibration = doc.raw("calibration")
        return cls(
            model=model,
            policy=InsiderPolicy.from_state(doc.raw("policy"), doc.at("policy")),
            swept_at=doc.optional_integer("swept_at", minimum=None),
            calibration=None
            if calibration is None
            else Calibration.from_state(calibration, doc.at("calibration")),
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
        self.model, self.swept_at, self.calibration = (
            saved.model,
            saved.swept_at,
            saved.calibration,
        )
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
