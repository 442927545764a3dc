"""Measures of an Insider list: out-of-time value, agreement with batch KMeans, stability.

Pure functions over pandas frames and event dictionaries; `insiders evaluate` feeds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from segmenter.events import event_time

LOG_INPUTS = ("recency_days", "frequency", "revenue", "avg_ticket")


def log_features(frame: pd.DataFrame) -> np.ndarray:
    """log1p of the RFM inputs, the batch notebook's feature space (and the model's)."""
    return np.log1p(frame[list(LOG_INPUTS)].clip(lower=0).to_numpy(dtype=float))


@dataclass(frozen=True)
class Capture:
    name: str
    customers: float  # share of customers selected
    future_revenue: float  # share of the future purchases they make
    future_net: float  # share of the future purchases net of future returns


def capture(name: str, selected: pd.Series, future: pd.Series, future_net: pd.Series) -> Capture:
    """Share of customers in ``selected`` (a boolean mask) and their share of ``future``
    and of ``future_net``.

    >>> future = pd.Series([10.0, 0.0, 30.0, 60.0])
    >>> capture("x", pd.Series([False, False, True, True]), future, future.clip(upper=30))
    Capture(name='x', customers=0.5, future_revenue=0.9, future_net=0.8571428571428571)
    """
    return Capture(
        name, float(selected.mean()), _share(future, selected), _share(future_net, selected)
    )


def _share(values: pd.Series, selected: pd.Series) -> float:
    total = float(values.sum())
    return float(values[selected].sum()) / total if total else 0.0


def top_share(score: pd.Series, share: float) -> pd.Series:
    """Mask of the top ``share`` of rows by ``score`` (ties broken by position)."""
    count = round(len(score) * share)
    order = score.rank(method="first", ascending=False)
    return order <= count


def batch_kmeans_top(
    frame: pd.DataFrame, k: int = 4, seed: int = 42
) -> tuple[pd.Series, np.ndarray]:
    """The batch notebook's answer: KMeans on scaled log features, top cluster by value.

    Returns the Insider mask and every row's label.
    """
    scaled = StandardScaler().fit_transform(log_features(frame))
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(scaled)
    # Value of a centre: money and visits up, recency (days since last purchase) down.
    weights = np.array([-1.0, 1.0, 1.0, 0.5])
    top = int(np.argmax(model.cluster_centers_ @ weights))
    return pd.Series(model.labels_ == top, index=frame.index), model.labels_


def silhouette(frame: pd.DataFrame, labels: Sequence[int] | np.ndarray, seed: int = 42) -> float:
    """Silhouette of ``labels`` in the batch notebook's space (scaled log RFM)."""
    return silhouette_of(StandardScaler().fit_transform(log_features(frame)), labels, seed)


def silhouette_of(points: np.ndarray, labels: Sequence[int] | np.ndarray, seed: int = 42) -> float:
    if len(set(labels)) < 2:
        return float("nan")
    size = min(len(points), 5000)
    return float(silhouette_score(points, labels, sample_size=size, random_state=seed))


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|A ∩ B| / |A ∪ B|.

    >>> jaccard(["1", "2"], ["2", "3"])
    0.3333333333333333
    """
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:,.0f} [{self.low:,.0f}, {self.high:,.0f}]"


def bootstrap(
    values: np.ndarray, stat: str, draws: int, seed: int, sample: int | None = None
) -> Interval:
    """Percentile bootstrap 95% interval of the mean or the median of ``values``.

    With ``sample``, the resampling draws from a random ``sample`` of the values when
    there are more: the cost is bounded, and the interval is wider than the whole set's
    (conservative). The estimate is always the whole set's.

    >>> values = np.arange(100_000, dtype=float)
    >>> whole = bootstrap(values, "mean", 200, 1, sample=2_000)
    >>> whole.estimate, whole.low < 49_999.5 < whole.high, whole.high - whole.low > 1_000
    (49999.5, True, True)
    """
    fn = np.mean if stat == "mean" else np.median
    rng = np.random.default_rng(seed)
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    drawn = values
    if sample is not None and len(values) > sample:
        drawn = rng.choice(values, size=sample, replace=False)
    samples = rng.choice(drawn, size=(draws, len(drawn)), replace=True)
    estimates = fn(samples, axis=1)
    low, high = np.percentile(estimates, [2.5, 97.5])
    return Interval(float(fn(values)), float(low), float(high))


def members_at(events: Iterable[dict[str, object]], moment: datetime) -> set[str]:
    """The Insiders just before ``moment``, replayed from the events (oldest first).

    >>> events = [
    ...     {"customer_id": "1", "type": "insider.entered", "at": "2011-01-01T00:00:00"},
    ...     {"customer_id": "2", "type": "insider.entered", "at": "2011-01-02T00:00:00"},
    ...     {"customer_id": "1", "type": "insider.exited", "at": "2011-02-01T00:00:00"},
    ... ]
    >>> sorted(members_at(events, datetime(2011, 1, 15)))
    ['1', '2']
    """
    members: set[str] = set()
    for e in events:
        if event_time(e) >= moment:
            break
        if e["type"] == "insider.entered":
            members.add(str(e["customer_id"]))
        else:
            members.discard(str(e["customer_id"]))
    return members


@dataclass(frozen=True)
class Stability:
    insiders_in_window: int
    flipped: int  # exited and re-entered within the window's re-entry limit
    weekly: pd.DataFrame  # entries and exits per week

    @property
    def flip_rate(self) -> float:
        return self.flipped / self.insiders_in_window if self.insiders_in_window else 0.0


def flaps(
    events: Sequence[dict[str, object]],
    start: datetime,
    members_at_start: Iterable[str],
    reentry_days: int = 30,
) -> tuple[int, int]:
    """(flipped, members): of the customers who were Insiders at some point since
    ``start``, how many exited and re-entered within ``reentry_days``.

    >>> events = [
    ...     {"customer_id": "1", "type": "insider.exited", "at": "2011-03-01T00:00:00"},
    ...     {"customer_id": "1", "type": "insider.entered", "at": "2011-03-20T00:00:00"},
    ...     {"customer_id": "2", "type": "insider.exited", "at": "2011-03-01T00:00:00"},
    ...     {"customer_id": "2", "type": "insider.entered", "at": "2011-05-01T00:00:00"},
    ... ]
    >>> flaps(events, datetime(2011, 2, 1), {"1", "2", "3"})
    (1, 3)
    """
    members = set(members_at_start)
    exits: dict[str, list[datetime]] = {}
    flipped: set[str] = set()
    limit = timedelta(days=reentry_days)
    timed = [(event_time(e), e) for e in events]
    for at, e in sorted((t for t in timed if t[0] >= start), key=lambda t: t[0]):
        customer = str(e["customer_id"])
        if e["type"] == "insider.exited":
            exits.setdefault(customer, []).append(at)
            continue
        members.add(customer)
        if any(timedelta(0) < at - x <= limit for x in exits.get(customer, ())):
            flipped.add(customer)
    return len(flipped), len(members)


def stability(
    events: Sequence[dict[str, object]],
    start: datetime,
    members_at_start: Iterable[str],
    reentry_days: int = 30,
) -> Stability:
    """Flaps since ``start`` (see :func:`flaps`) and the weekly entry/exit counts."""
    flipped, members = flaps(events, start, members_at_start, reentry_days)
    frame = pd.DataFrame(
        {
            "customer_id": [e["customer_id"] for e in events],
            "type": [e["type"] for e in events],
            "at": pd.to_datetime([event_time(e) for e in events]),
        }
    )
    window = frame[frame["at"] >= pd.Timestamp(start)]
    weekly = (
        window.assign(week=window["at"].dt.to_period("W-SUN").dt.start_time)
        .pivot_table(
            index="week", columns="type", values="customer_id", aggfunc="count", fill_value=0
        )
        .rename(columns={"insider.entered": "entries", "insider.exited": "exits"})
    )
    for column in ("entries", "exits"):
        if column not in weekly:
            weekly[column] = 0
    return Stability(members, flipped, weekly[["entries", "exits"]])
