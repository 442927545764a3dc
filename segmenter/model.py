"""The online segmentation model: scaling, a river clusterer, and segments ranked by value.

river's clusterers number their clusters arbitrarily and move them as they learn.
Callers never see those numbers: :class:`SegmentModel` reports a *segment rank*,
1 being the highest-value segment (the Insiders), recomputed from the centroids
after every update. The model is not thread-safe; one writer owns it.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass

from river import preprocessing

from segmenter.clusterer import SequentialKMeans
from segmenter.features import CustomerFeatures

INSIDER_SEGMENT = 1

# Signs of each model input in a segment's value: more money and more visits
# are worth more, a longer time since the last purchase is worth less.
VALUE_WEIGHTS = {"monetary": 1.0, "frequency": 1.0, "ticket": 0.5, "recency": -1.0}


def model_input(features: CustomerFeatures) -> dict[str, float]:
    """Log-scaled RFM inputs: spec v1 features are heavy-tailed (a few wholesalers dominate).

    >>> from segmenter.features import CustomerState, features_of
    >>> s = CustomerState(revenue_micros=99_000_000, invoices=1, lines=1, units=1,
    ...                   first_ts=0, last_ts=0)
    >>> {k: round(v, 3) for k, v in model_input(features_of(s, 0)).items()}
    {'recency': 0.0, 'frequency': 0.693, 'monetary': 4.605, 'ticket': 4.605}
    """
    return {
        "recency": math.log1p(max(features.recency_days or 0.0, 0.0)),
        "frequency": math.log1p(features.frequency or 0.0),
        "monetary": math.log1p(max(features.revenue, 0.0)),
        "ticket": math.log1p(max(features.avg_ticket or 0.0, 0.0)),
    }


@dataclass
class SegmentModel:
    """StandardScaler and sequential k-means; segments ranked by centroid value.

    >>> model = SegmentModel(n_segments=2, warmup=4, seed=1)
    >>> for m in [1.0, 1.2, 9.0, 9.5] * 5:
    ...     model.learn({"recency": 1.0, "frequency": m / 3, "monetary": m, "ticket": m})
    >>> model.segment_of({"recency": 1.0, "frequency": 3.0, "monetary": 9.2, "ticket": 9.2})
    1
    """

    n_segments: int = 4
    warmup: int = 256
    seed: int = 42
    version: int = 0

    def __post_init__(self) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.clusterer = SequentialKMeans(self.n_segments, warmup=self.warmup, seed=self.seed)
        self._ranks: dict[int, int] = {}

    def learn(self, x: dict[str, float]) -> None:
        self.scaler.learn_one(x)
        self.clusterer.learn_one(self.scaler.transform_one(x))
        self._ranks = {}

    def end_step(self) -> None:
        """Close one model update: a new version, with segments re-ranked."""
        self.version += 1
        self._ranks = self._rank()

    def _rank(self) -> dict[int, int]:
        def value(label: int) -> float:
            centre = self.clusterer.centers[label]
            return sum(w * centre.get(name, 0.0) for name, w in VALUE_WEIGHTS.items())

        ordered = sorted(self.clusterer.centers, key=value, reverse=True)
        return {label: rank for rank, label in enumerate(ordered, start=1)}

    def segment_of(self, x: dict[str, float]) -> int | None:
        """Segment rank of ``x`` (1 is the top-value segment); None during the warm-up."""
        if not self.clusterer.ready:
            return None
        if not self._ranks:
            self._ranks = self._rank()
        label = self.clusterer.predict_one(self.scaler.transform_one(x))
        return self._ranks[label]

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(blob: bytes) -> SegmentModel:
        model = pickle.loads(blob)
        if not isinstance(model, SegmentModel):
            raise TypeError(f"checkpoint holds a {type(model).__name__}, not a SegmentModel")
        return model
