"""The online segmentation model: scaling, a clusterer, segments ranked by value, and why.

river's clusterers number their clusters arbitrarily and move them as they learn.
Callers never see those numbers: :class:`SegmentModel` reports a *segment rank*,
1 being the highest-value segment (the Insiders), recomputed from the centroids
after every update. The model is not thread-safe; one writer owns it.

Besides the segment, :meth:`SegmentModel.assess` gives a customer's *margin*: where
they stand on the value axis between the top segment's centre and the next segment's
(the Insider edge is halfway), and which inputs pull them towards or away from it: the
"why" of a status. The axis is the value that ranks the segments, so more money or a
longer relationship never lowers a margin: the biggest customers rank first, whichever
segment the clustering puts them in.

The model's state is plain data (:meth:`SegmentModel.to_state`), checked field by
field when it is read back (:meth:`SegmentModel.from_state`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import preprocessing

from segmenter.clusterer import SequentialKMeans
from segmenter.errors import CheckpointError
from segmenter.features import SECONDS_PER_DAY, CustomerFeatures, CustomerState
from segmenter.lines import MICROS_PER_POUND
from segmenter.state import Fields

INSIDER_SEGMENT = 1

# Signs of each model input in a segment's value: more money and more visits
# are worth more, a longer time since the last purchase is worth less.
VALUE_WEIGHTS = {
    "monetary": 1.0,
    "frequency": 1.0,
    "ticket": 0.5,
    "tenure": 0.5,
    "recency": -1.0,
}
RFM = ("recency", "frequency", "monetary", "ticket")

# Model input -> (spec v1 feature it comes from, unit) for explanations.
INPUT_FEATURES = {
    "recency": ("recency_days", "days"),
    "frequency": ("frequency", "invoices per 30 days"),
    "monetary": ("kept_value", "£"),
    "ticket": ("avg_ticket", "£ per invoice"),
    "tenure": ("tenure_days", "days"),
}

_STATE_FIELDS = (
    "n_segments",
    "warmup",
    "memory",
    "seed",
    "inputs",
    "weights",
    "warmup_days",
    "version",
    "started_at",
    "scaler",
    "clusterer",
)
_SCALER_FIELDS = ("counts", "means", "vars")


def model_input(features: CustomerFeatures) -> dict[str, float]:
    """Log-scaled RFM inputs: the features are heavy-tailed (a few wholesalers dominate).

    Money is what the customer kept (spec v2 ``kept_value``): returns take value away.

    >>> from segmenter.features import CustomerState, features_of
    >>> s = CustomerState(revenue_micros=99_000_000, invoices=1, lines=1, units=1,
    ...                   first_ts=0, last_ts=0)
    >>> {k: round(v, 3) for k, v in model_input(features_of(s, 0)).items()}
    {'recency': 0.0, 'frequency': 0.693, 'monetary': 4.605, 'ticket': 4.605, 'tenure': 0.0}
    >>> s.returned_micros = 98_000_000  # £98 of the £99 came back
    >>> round(model_input(features_of(s, 0))["monetary"], 3)
    0.693
    """
    recency = max(features.recency_days or 0.0, 0.0)
    first, last = features.first_purchase_at, features.last_purchase_at
    span = (last - first).total_seconds() / 86_400 if first and last else 0.0
    return {
        "recency": math.log1p(recency),
        "frequency": math.log1p(features.frequency or 0.0),
        "monetary": math.log1p(max(features.kept_value, 0.0)),
        "ticket": math.log1p(max(features.avg_ticket or 0.0, 0.0)),
        # Days since the first purchase: long relationships are worth more.
        "tenure": math.log1p(recency + span),
    }


def state_column(states: Sequence[CustomerState], name: str) -> np.ndarray:
    """One running total of many customers as an array of floats (the daily ranking)."""
    return np.fromiter((getattr(s, name) for s in states), dtype=float, count=len(states))


def model_inputs(states: Sequence[CustomerState], now_ts: int) -> dict[str, np.ndarray]:
    """:func:`model_input` of many customers at once, one array per input.

    The daily ranking of every customer uses it: it skips building each customer's
    features (dates and all), which would cost more than the ranking itself.
    """
    revenue = state_column(states, "revenue_micros") / MICROS_PER_POUND
    kept = revenue - state_column(states, "returned_micros") / MICROS_PER_POUND
    return column_inputs(
        revenue,
        kept,
        state_column(states, "invoices"),
        state_column(states, "first_ts"),
        state_column(states, "last_ts"),
        now_ts,
    )


def column_inputs(
    revenue: np.ndarray,
    kept: np.ndarray,
    invoices: np.ndarray,
    first_ts: np.ndarray,
    last_ts: np.ndarray,
    now_ts: int,
) -> dict[str, np.ndarray]:
    """:func:`model_input` from columns: money in pounds, times in epoch seconds."""
    recency = np.maximum((now_ts - last_ts) / SECONDS_PER_DAY, 0.0)
    tenure_days = (now_ts - first_ts) / SECONDS_PER_DAY
    frequency = invoices * 30 / np.maximum(30.0, tenure_days)
    return {
        "recency": np.log1p(recency),
        "frequency": np.log1p(frequency),
        "monetary": np.log1p(np.maximum(kept, 0.0)),
        "ticket": np.log1p(np.maximum(revenue / np.maximum(invoices, 1), 0.0)),
        "tenure": np.log1p(recency + (last_ts - first_ts) / SECONDS_PER_DAY),
    }


@dataclass(frozen=True, slots=True)
class Driver:
    """One input's part in a customer's position relative to the Insider edge."""

    input: str
    feature: str
    value: float  # the customer's spec v1 value
    insider_typical: float  # the same feature at the Insider centre
    pull: float  # this input's share of the margin: > 0 towards the Insiders, < 0 away


@dataclass(frozen=True, slots=True)
class Assessment:
    """Where a customer stands: segment rank, margin to the Insider edge, and drivers.

    ``margin`` is the position on the value axis, in units of half the value between the
    top segment's centre and the next segment's: 1 at the Insider centre's value, 0 on
    the edge halfway, -1 at the next segment's, above 1 beyond the Insider centre (the
    biggest customers). The drivers' ``pull`` values sum to it.
    """

    segment: int | None
    margin: float | None
    drivers: tuple[Driver, ...] = ()


@dataclass
class SegmentModel:
    """StandardScaler and sequential k-means; segments ranked by centroid value.

    >>> model = SegmentModel(n_segments=2, warmup=4, seed=1)
    >>> for m in [1.0, 1.2, 9.0, 9.5] * 5:
    ...     model.learn({"recency": 1.0, "frequency": m / 3, "monetary": m, "ticket": m})
    >>> model.segment_of({"recency": 1.0, "frequency": 3.0, "monetary": 9.2, "ticket": 9.2})
    1
    >>> SegmentModel.from_state(model.to_state()).to_state() == model.to_state()
    True
    """

    n_segments: int = 4
    warmup: int = 1024
    memory: int = 20_000
    seed: int = 42
    # Measured with `insiders evaluate` (see README): money and relationship length
    # separate the customers worth most in the next quarter better than RFM does;
    # recency is left to the policy's lapse rules.
    inputs: tuple[str, ...] = ("monetary", "tenure")
    weights: dict[str, float] = field(
        default_factory=lambda: {"monetary": 2.0, "tenure": 1.5}
    )  # per input, after scaling
    warmup_days: float = 120.0
    version: int = 0
    started_at: int | None = None

    def __post_init__(self) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.clusterer = SequentialKMeans(
            self.n_segments, warmup=self.warmup, memory=self.memory, seed=self.seed
        )
        self._ranks: dict[int, int] = {}
        self._axis_cache: tuple[list[float], list[float], float] | None = None

    def to_state(self) -> dict[str, Any]:
        """Parameters, scaler statistics and clusterer state as JSON-ready data."""
        scaler = self.scaler
        return {
            "n_segments": self.n_segments,
            "warmup": self.warmup,
            "memory": self.memory,
            "seed": self.seed,
            "inputs": list(self.inputs),
            "weights": dict(self.weights),
            "warmup_days": self.warmup_days,
            "version": self.version,
            "started_at": self.started_at,
            # river's StandardScaler (0.26, no window) keeps its running statistics in three
            # dicts, Welford's count, mean and variance per input; nothing else of it
            # changes as it learns. Each dict keeps its own key order.
            "scaler": {
                "counts": dict(scaler.counts),
                "means": dict(scaler.means),
                "vars": dict(scaler.vars),
            },
            "clusterer": self.clusterer.to_state(),
        }

    @classmethod
    def from_state(cls, state: object, path: str = "model") -> SegmentModel:
        """The model ``to_state`` described, after checking every field's type and shape.

        It continues exactly as the saved one would have: same statistics, same centres,
        the same next floats for the same next points.
        """
        doc = Fields(state, path, _STATE_FIELDS)
        inputs = doc.names("inputs")
        model = cls(
            n_segments=doc.integer("n_segments", minimum=1),
            warmup=doc.integer("warmup"),
            memory=doc.integer("memory", minimum=1),
            seed=doc.integer("seed", minimum=None),
            inputs=tuple(inputs),
            weights=doc.numbers("weights"),
            warmup_days=doc.number("warmup_days", minimum=0),
            version=doc.integer("version"),
            started_at=doc.optional_integer("started_at", minimum=None),
        )
        scaler = doc.fields("scaler", _SCALER_FIELDS)
        counts = scaler.counts("counts")
        means = {k: float(v) for k, v in scaler.numbers("means").items()}
        variances = {k: float(v) for k, v in scaler.numbers("vars", minimum=0).items()}
        for name, stats in (("counts", counts), ("means", means), ("vars", variances)):
            _only(stats, inputs, scaler.at(name))
        if means.keys() != variances.keys() or not counts.keys() <= means.keys():
            raise CheckpointError(f"{scaler.path}: counts, means and vars name different inputs")
        model.scaler.counts = Counter(counts)
        model.scaler.means = defaultdict(float, means)
        model.scaler.vars = defaultdict(float, variances)
        clusterer = SequentialKMeans.from_state(doc.raw("clusterer"), doc.at("clusterer"))
        for name, want in (
            ("n_clusters", model.n_segments),
            ("warmup", model.warmup),
            ("memory", model.memory),
            ("seed", model.seed),
        ):
            if getattr(clusterer, name) != want:
                raise CheckpointError(
                    f"{doc.at('clusterer')}.{name}: {getattr(clusterer, name)}, "
                    f"but the model's is {want}"
                )
        _only(dict.fromkeys(clusterer.keys), inputs, doc.at("clusterer.keys"))
        model.clusterer = clusterer
        return model

    def _select(self, x: dict[str, float]) -> dict[str, float]:
        return {name: x[name] for name in self.inputs if name in x}

    def _scaled(self, x: dict[str, float]) -> dict[str, float]:
        z = self.scaler.transform_one(self._select(x))
        if self.weights:
            z = {k: v * self.weights.get(k, 1.0) for k, v in z.items()}
        return z

    def scaled_input(self, x: dict[str, float]) -> dict[str, float]:
        """``x`` as the clusterer sees it: selected, standardised, weighted."""
        return self._scaled(self._select(x))

    def learn(self, x: dict[str, float]) -> None:
        x = self._select(x)
        self.scaler.learn_one(x)
        self.clusterer.learn_one(self._scaled(x))
        self._ranks = {}
        self._axis_cache = None

    def end_step(self, now_ts: int | None = None) -> None:
        """Close one model update: a new version, with segments re-ranked.

        The warm-up ends after ``warmup`` points, or once ``warmup_days`` of event
        time have passed since the first step (small data sets never reach the count).
        """
        if now_ts is not None and not self.clusterer.ready:
            if self.started_at is None:
                self.started_at = now_ts
            elif now_ts - self.started_at >= self.warmup_days * 86_400:
                self.clusterer.start()
        self.version += 1
        self._ranks = self._rank()
        self._axis_cache = None

    def _rank(self) -> dict[int, int]:
        def value(label: int) -> float:
            centre = self.clusterer.centers[label]
            return sum(w * centre.get(name, 0.0) for name, w in VALUE_WEIGHTS.items())

        ordered = sorted(self.clusterer.centers, key=value, reverse=True)
        return {label: rank for rank, label in enumerate(ordered, start=1)}

    @property
    def ranks(self) -> dict[int, int]:
        if not self._ranks:
            self._ranks = self._rank()
        return self._ranks

    def segment_of(self, x: dict[str, float]) -> int | None:
        """Segment rank of ``x`` (1 is the top-value segment); None during the warm-up."""
        return self.assess(x).segment

    def assess(self, x: dict[str, float], explain: bool = False) -> Assessment:
        """Segment and margin to the Insider edge; with ``explain``, the deciding inputs.

        Explaining costs more than assessing, so callers ask for it only when they
        need words (an event's reason, the API's why).
        """
        if not self.clusterer.ready:
            return Assessment(None, None)
        x = self._select(x)
        z = self._scaled(x)
        keys = self.clusterer.keys
        v = [z.get(k, 0.0) for k in keys]
        centres = self.clusterer.centres
        distances = [sum((a - b) * (a - b) for a, b in zip(c, v, strict=True)) for c in centres]
        label = min(range(len(distances)), key=distances.__getitem__)
        if len(centres) < 2:
            return Assessment(INSIDER_SEGMENT, 1.0)
        weights, mid, half = self._axis()
        # Position along the value axis: +1 at the top centre's value, 0 halfway to the next
        # segment's, -1 at it; more of a valued input never lowers it.
        pulls_by_input = [w * (a - m) / half for w, a, m in zip(weights, v, mid, strict=True)]
        margin = sum(pulls_by_input)
        if not explain:
            return Assessment(self.ranks[label], margin)
        top = centres[self._top()]
        pulls = sorted(enumerate(pulls_by_input), key=lambda item: -abs(item[1]))
        return Assessment(
            self.ranks[label],
            margin,
            tuple(self._driver(keys[i], pull, x, top[i]) for i, pull in pulls),
        )

    def margins(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`assess`'s margins and segment ranks for many inputs at once.

        ``inputs`` holds one array per input (:func:`model_inputs`). The daily ranking of
        every customer uses it; it agrees with :meth:`assess` to rounding. While the
        model warms up: NaN margins and segment 0.
        """
        count = len(next(iter(inputs.values()))) if inputs else 0
        if not self.clusterer.ready or not count:
            return np.full(count, np.nan), np.zeros(count, dtype=int)
        keys = self.clusterer.keys
        raw = np.column_stack([inputs[k] for k in keys]).astype(float)
        means = np.array([self.scaler.means.get(k, 0.0) for k in keys])
        variances = np.array([self.scaler.vars.get(k, 0.0) for k in keys])
        weights = np.array([self.weights.get(k, 1.0) if self.weights else 1.0 for k in keys])
        # As river's StandardScaler: an input of zero variance scales to 0.
        stds = np.where(variances > 0, np.sqrt(variances), 1.0)
        z = np.where(variances > 0, (raw - means) / stds, 0.0) * weights
        centres = np.array(self.clusterer.centres, dtype=float)
        distances = ((z[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        labels = distances.argmin(axis=1)
        ranks = self.ranks
        segments = np.array([ranks[label] for label in range(len(centres))])[labels]
        if len(centres) < 2:
            return np.ones(count), segments
        value_weights, mid, half = self._axis()
        return (z - np.array(mid)) @ np.array(value_weights) / half, segments

    def _value(self, point: Sequence[float]) -> float:
        keys = self.clusterer.keys
        return sum(VALUE_WEIGHTS.get(k, 0.0) * c for k, c in zip(keys, point, strict=True))

    def _top(self) -> int:
        return next(label for label, rank in self.ranks.items() if rank == INSIDER_SEGMENT)

    def _axis(self) -> tuple[list[float], list[float], float]:
        """The value axis of the margin (cached): each input's value weight, the point
        halfway between the top centre and the next segment's, and half their difference
        in value."""
        if self._axis_cache is None:
            centres = self.clusterer.centres
            second = next(label for label, rank in self.ranks.items() if rank == 2)
            top, runner = centres[self._top()], centres[second]
            weights = [VALUE_WEIGHTS.get(k, 0.0) for k in self.clusterer.keys]
            mid = [(a + b) / 2 for a, b in zip(top, runner, strict=True)]
            half = (self._value(top) - self._value(runner)) / 2 or 1e-12
            self._axis_cache = (weights, mid, half)
        return self._axis_cache

    def typical(self, segment: int = INSIDER_SEGMENT) -> dict[str, float]:
        """The centre of ``segment`` in the spec v1 features' own units, e.g. revenue in £.

        Empty while the model warms up.
        """
        if not self.clusterer.ready:
            return {}
        label = next(label for label, rank in self.ranks.items() if rank == segment)
        centre = self.clusterer.centers[label]
        return {
            INPUT_FEATURES.get(name, (name, ""))[0]: self._in_units(name, centre.get(name, 0.0))
            for name in self.inputs
        }

    def _in_units(self, name: str, z: float) -> float:
        """Back from a (weighted) standardised input to the feature's own units."""
        weight = self.weights.get(name, 1.0) or 1.0
        mean = self.scaler.means.get(name, 0.0)
        std = math.sqrt(self.scaler.vars.get(name, 0.0)) or 1.0
        return math.expm1(z / weight * std + mean)

    def _driver(self, name: str, pull: float, x: dict[str, float], top: float) -> Driver:
        feature = INPUT_FEATURES.get(name, (name, ""))[0]
        return Driver(name, feature, math.expm1(x[name]), self._in_units(name, top), pull)


def _only(named: dict[str, Any], inputs: list[str], path: str) -> None:
    """Refuse names that are not among the model's inputs."""
    unknown = [name for name in named if name not in inputs]
    if unknown:
        raise CheckpointError(f"{path}: {', '.join(unknown)} not among the inputs {inputs}")
