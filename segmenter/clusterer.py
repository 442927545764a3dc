"""Sequential k-means with a warm start: a river ``Clusterer`` whose results do not drift.

river's ``KMeans`` starts from random centres and moves the winner by a constant
step; it also sums distances over a ``set`` of keys, so results change with
Python's hash seed. This clusterer:

* buffers the first ``warmup`` points and starts from the best of ``n_init``
  k-means++ seedings, each refined by Lloyd iterations on the buffer (a warm
  start: no random centres far from the data, and little dependence on the seed);
* then moves the winning centre by ``1 / n`` (n = points it has won), the
  sequential k-means of MacQueen, which makes each centre the running mean of its
  members; ``n`` is capped at ``memory`` so centres keep following slow drift;
* iterates features in a fixed order, so a run is reproducible bit for bit.

Its whole state (the buffer, the centres, their counts and the seeding draw's random
state) is plain data: :meth:`SequentialKMeans.to_state` and :meth:`SequentialKMeans.from_state`.
"""

from __future__ import annotations

import random
from typing import Any

from river import base

from segmenter.errors import CheckpointError
from segmenter.state import Fields, array, integer, join, number, vector

# random.Random's state: its version, 624 words of the Mersenne Twister and a position.
_RNG_VERSION = 3
_RNG_WORDS = 625
_STATE_FIELDS = (
    "n_clusters",
    "warmup",
    "memory",
    "seed",
    "n_init",
    "keys",
    "buffer",
    "centres",
    "counts",
    "rng",
)


class SequentialKMeans(base.Clusterer):
    """Online k-means with a k-means++ warm start and per-cluster 1/n learning rates.

    Parameters
    ----------
    n_clusters
        Number of clusters.
    warmup
        Points buffered before the first centres are chosen.
    memory
        Cap on a centre's count: its step never falls below ``1 / memory``.
    seed
        Seed of the k-means++ draw.

    Examples
    --------
    >>> model = SequentialKMeans(n_clusters=2, warmup=4, seed=1)
    >>> for x in [{"a": 0.0}, {"a": 0.2}, {"a": 10.0}, {"a": 10.2}, {"a": 0.1}]:
    ...     model.learn_one(x)
    >>> model.predict_one({"a": 9.0}) != model.predict_one({"a": 0.3})
    True
    >>> SequentialKMeans.from_state(model.to_state()).centres == model.centres
    True
    """

    def __init__(
        self,
        n_clusters: int = 4,
        warmup: int = 256,
        memory: int = 5000,
        seed: int = 42,
        n_init: int = 10,
    ) -> None:
        self.n_clusters = n_clusters
        self.warmup = warmup
        self.memory = memory
        self.seed = seed
        self.n_init = n_init
        self._rng = random.Random(seed)
        self._keys: tuple[str, ...] = ()
        self._buffer: list[list[float]] = []
        self.centres: list[list[float]] = []
        self.counts: list[int] = []

    @property
    def keys(self) -> tuple[str, ...]:
        """Feature names in the order of the centres' coordinates."""
        return self._keys

    @property
    def centers(self) -> dict[int, dict[str, float]]:
        """Centres by label, as river's clusterers expose them."""
        return {i: dict(zip(self._keys, c, strict=True)) for i, c in enumerate(self.centres)}

    def _vector(self, x: dict[str, float]) -> list[float]:
        if not self._keys:
            self._keys = tuple(sorted(x))
        return [float(x.get(k, 0.0)) for k in self._keys]

    def _nearest(self, v: list[float]) -> int:
        best, best_d = 0, float("inf")
        for i, c in enumerate(self.centres):
            d = 0.0
            for a, b in zip(c, v, strict=True):
                d += (a - b) * (a - b)
            if d < best_d:
                best, best_d = i, d
        return best

    def learn_one(self, x: dict[str, float]) -> None:  # type: ignore[override]
        v = self._vector(x)
        if not self.centres:
            self._buffer.append(v)
            if len(self._buffer) >= max(self.warmup, self.n_clusters):
                self._initialise()
            return
        i = self._nearest(v)
        self.counts[i] = min(self.counts[i] + 1, self.memory)
        rate = 1.0 / self.counts[i]
        c = self.centres[i]
        for j, value in enumerate(v):
            c[j] += rate * (value - c[j])

    def start(self) -> None:
        """End the warm-up now, if the buffer holds enough points for the clusters."""
        if not self.centres and len(self._buffer) >= 4 * self.n_clusters:
            self._initialise()

    @property
    def ready(self) -> bool:
        """Whether the warm-up is over and centres exist."""
        return bool(self.centres)

    def predict_one(self, x: dict[str, float]) -> int:  # type: ignore[override]
        """Label of the nearest centre; 0 for every point during the warm-up."""
        return self._nearest(self._vector(x)) if self.centres else 0

    def _initialise(self) -> None:
        points = self._buffer
        best: tuple[float, list[list[float]], list[int]] | None = None
        for _ in range(max(self.n_init, 1)):
            centres, counts, inertia = self._lloyd(points, self._seed_centres(points))
            if best is None or inertia < best[0]:
                best = (inertia, centres, counts)
        assert best is not None
        _, self.centres, self.counts = best
        self._buffer = []

    def _seed_centres(self, points: list[list[float]]) -> list[list[float]]:
        """k-means++: each next centre drawn with probability proportional to squared distance."""
        centres = [list(self._rng.choice(points))]
        while len(centres) < self.n_clusters:
            weights = [
                min(sum((a - b) ** 2 for a, b in zip(c, p, strict=True)) for c in centres)
                for p in points
            ]
            if sum(weights) == 0:
                centres.append(list(points[len(centres) % len(points)]))
                continue
            centres.append(list(self._rng.choices(points, weights=weights)[0]))
        return centres

    def _lloyd(
        self, points: list[list[float]], centres: list[list[float]], rounds: int = 20
    ) -> tuple[list[list[float]], list[int], float]:
        """Batch k-means on the warm-up buffer; returns centres, member counts and inertia."""
        self.centres = centres
        members: list[list[list[float]]] = []
        for _ in range(rounds):
            members = [[] for _ in centres]
            for p in points:
                members[self._nearest(p)].append(p)
            moved = False
            for i, group in enumerate(members):
                if group:
                    mean = [sum(col) / len(group) for col in zip(*group, strict=True)]
                    moved = moved or mean != centres[i]
                    centres[i] = mean
            if not moved:
                break
        inertia = sum(
            sum((a - b) ** 2 for a, b in zip(p, centres[i], strict=True))
            for i, group in enumerate(members)
            for p in group
        )
        return centres, [max(len(group), 1) for group in members], inertia

    def to_state(self) -> dict[str, Any]:
        """Parameters and learned state as JSON-ready data (copies, not views)."""
        version, words, gauss = self._rng.getstate()
        return {
            "n_clusters": self.n_clusters,
            "warmup": self.warmup,
            "memory": self.memory,
            "seed": self.seed,
            "n_init": self.n_init,
            "keys": list(self._keys),
            "buffer": [list(v) for v in self._buffer],
            "centres": [list(c) for c in self.centres],
            "counts": list(self.counts),
            "rng": [version, list(words), gauss],
        }

    @classmethod
    def from_state(cls, state: object, path: str = "clusterer") -> SequentialKMeans:
        """The clusterer ``to_state`` described, after checking every field's type and shape.

        It continues exactly as the saved one would have: same centres, counts, buffer
        and random state, so the same next points give the same floats.
        """
        doc = Fields(state, path, _STATE_FIELDS)
        model = cls(
            n_clusters=doc.integer("n_clusters", minimum=1),
            warmup=doc.integer("warmup"),
            memory=doc.integer("memory", minimum=1),
            seed=doc.integer("seed", minimum=None),
            n_init=doc.integer("n_init"),
        )
        keys = doc.names("keys")
        size = len(keys)
        buffer = [
            vector(v, join(doc.at("buffer"), i), size) for i, v in enumerate(doc.array("buffer"))
        ]
        centres = doc.array("centres")
        if centres and len(centres) != model.n_clusters:
            raise CheckpointError(
                f"{doc.at('centres')}: want none or {model.n_clusters}, got {len(centres)}"
            )
        if centres and buffer:
            raise CheckpointError(f"{doc.at('buffer')}: want none once centres exist")
        counts = doc.array("counts", size=len(centres))
        model._keys = tuple(keys)
        model._buffer = buffer
        model.centres = [vector(c, join(doc.at("centres"), i), size) for i, c in enumerate(centres)]
        model.counts = [integer(n, join(doc.at("counts"), i), 1) for i, n in enumerate(counts)]
        model._rng.setstate(_rng_state(doc.raw("rng"), doc.at("rng")))
        return model


def _rng_state(value: object, path: str) -> tuple[int, tuple[int, ...], float | None]:
    """A ``random.Random`` state from its JSON form, checked before ``setstate`` sees it."""
    version, words, gauss = array(value, path, size=3)
    if integer(version, join(path, 0)) != _RNG_VERSION:
        raise CheckpointError(f"{join(path, 0)}: want {_RNG_VERSION}, got {version}")
    words = array(words, join(path, 1))
    # One pass of cheap checks (the API reads a checkpoint for every answer).
    if (
        len(words) != _RNG_WORDS
        or set(map(type, words)) != {int}
        or min(words) < 0
        or max(words) >= 2**32
        or words[-1] > _RNG_WORDS - 1
    ):
        raise CheckpointError(f"{join(path, 1)}: want {_RNG_WORDS - 1} 32-bit words and a position")
    return version, tuple(words), None if gauss is None else number(gauss, join(path, 2))
