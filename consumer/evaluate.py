"""`insiders evaluate`: replay a file embedded and measure the Insiders it finds.

Size: the Insiders' share of the customers known, at the cut and on every day after
the warm-up, against the target share.
Out-of-time value: Insiders at the cut against the revenue that follows it, side by
side with the same number of top customers by past value (what they kept), the best
simple ranking.
Agreement: Insiders at the end against batch KMeans on the same features.
Stability: flaps (exit and re-entry within 30 days) over the last three months.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from consumer.export import export_frame
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.ports import SourceRecord
from segmenter.errors import InsidersError
from segmenter.evaluation import (
    Capture,
    Interval,
    Stability,
    batch_kmeans_top,
    bootstrap,
    capture,
    jaccard,
    members_at,
    silhouette,
    silhouette_of,
    stability,
    top_share,
)
from segmenter.features import SECONDS_PER_DAY, features_of, to_datetime
from segmenter.model import model_input
from segmenter.report import expected_revenue

# Fewer customers than this at the cut measure nothing: one customer is 2% of them.
MIN_CUSTOMERS_AT_CUT = 50


class EvaluationError(InsidersError):
    """The file and the cut cannot be evaluated (one line, for the command line)."""


@dataclass
class Evaluation:
    cut: datetime
    target_share: float | None
    share_band: float
    customers_at_cut: int
    insiders_at_cut: int
    # The share after each block from the first ranking on (after the warm-up): the
    # moments the service decides. Clock value -> share of the customers known.
    shares: pd.Series
    # Customers per segment rank at the cut (the model's assessed customers only): a
    # segment that wins almost nobody is a dead cluster.
    segments_at_cut: dict[int, int]
    captures: list[Capture]
    future_mean: dict[str, Interval]
    future_median: dict[str, Interval]
    jaccard_end: float
    silhouette_model: float  # in the batch feature space (log RFM), like the batch model
    silhouette_own: float  # in this model's own (scaled, weighted) input space
    silhouette_batch: float
    insiders_end: int
    batch_end: int
    stability: Stability
    # The report's expected revenue at the cut, over the days the data runs on after it,
    # against what was spent: group -> (expected, actual), £.
    horizon_days: float
    expected: dict[str, tuple[float, float]]

    @property
    def model(self) -> Capture:
        return self.captures[0]


def evaluate(
    path: Path,
    make_pipeline: Callable[[MemoryFeatureStore], Pipeline],
    cut: datetime,
    block_size: int = 5000,
    draws: int = 1000,
    seed: int = 42,
) -> Evaluation:
    store = MemoryFeatureStore()
    pipeline = make_pipeline(store)
    shares: dict[int, float] = {}

    def process(block: list[SourceRecord]) -> None:
        pipeline.process(block)
        now = store.watermark()
        if pipeline.segmenter.calibration is not None and now is not None:
            shares[now] = store.insider_count() / max(store.customer_count(), 1)

    for block in FileInvoiceSource(path, block_size, until=cut).blocks():
        process(block)
    cut_ts = store.watermark()
    if cut_ts is None:
        raise EvaluationError(
            f"no purchase in {path.name} is dated before the cut {cut:%Y-%m-%d}: "
            "pick a cut inside the data"
        )
    at_cut = export_frame(store, cut_ts).set_index("customer_id")
    if len(at_cut) < MIN_CUSTOMERS_AT_CUT:
        raise EvaluationError(
            f"only {len(at_cut)} customers are known at the cut {cut:%Y-%m-%d} "
            f"(at least {MIN_CUSTOMERS_AT_CUT} needed): pick a later cut"
        )
    if not pipeline.segmenter.model.clusterer.ready:
        raise EvaluationError(
            f"the model is still warming up at the cut {cut:%Y-%m-%d} "
            f"({len(at_cut):,} customers known): pick a later cut"
        )
    members_at_cut = set(at_cut.index[at_cut["insider"]])
    pace = [(features_of(c.state, cut_ts), c.status.insider) for c in store.customers()]
    for block in FileInvoiceSource(path, block_size).blocks():
        process(block)
    end_ts = store.watermark() or cut_ts
    if end_ts <= cut_ts:
        raise EvaluationError(
            f"the cut {cut:%Y-%m-%d} is at or after the last purchase of {path.name} "
            f"({to_datetime(end_ts):%Y-%m-%d}): nothing comes after it to measure"
        )
    end = export_frame(store, end_ts).set_index("customer_id")

    # Future purchases as the issue defines them, and net of the returns made after the cut
    # (one £168k order after the cut was cancelled the same day).
    future = (end["revenue"].reindex(at_cut.index) - at_cut["revenue"]).clip(lower=0)
    returned = end["returned_value"].reindex(at_cut.index) - at_cut["returned_value"]
    future_net = (future - returned).clip(lower=0)
    insiders = at_cut["insider"]
    batch_cut, _ = batch_kmeans_top(at_cut, seed=seed)
    # The same number of customers as the Insiders, by the simple rankings.
    size = float(insiders.mean())
    selections = {
        "Insiders (this model)": insiders,
        "same number by past value (kept)": top_share(at_cut["kept_value"], size),
        "same number by past revenue": top_share(at_cut["revenue"], size),
        "batch KMeans k=4 (log spec v1)": batch_cut,
        "hindsight: same number by future revenue": top_share(future, size),
    }
    captures = [capture(name, mask, future, future_net) for name, mask in selections.items()]
    horizon = ((store.watermark() or 0) - cut_ts) / SECONDS_PER_DAY
    expected = {
        "Insiders": (
            sum(expected_revenue(f, cut_ts, horizon) for f, inside in pace if inside),
            float(future[insiders].sum()),
        ),
        "rest": (
            sum(expected_revenue(f, cut_ts, horizon) for f, inside in pace if not inside),
            float(future[~insiders].sum()),
        ),
    }
    groups = {"Insiders": future[insiders].to_numpy(), "rest": future[~insiders].to_numpy()}
    future_mean = {k: bootstrap(v, "mean", draws, seed) for k, v in groups.items()}
    future_median = {k: bootstrap(v, "median", draws, seed) for k, v in groups.items()}

    batch_end, batch_labels = batch_kmeans_top(end, seed=seed)
    assessed = end["segment"].notna()
    ours = end.loc[assessed, "segment"].astype(int).to_numpy()
    window_start = pd.Timestamp(end["last_purchase_at"].max()).to_pydatetime() - timedelta(days=91)
    events = pipeline.store.events(None, 10**9).events
    model = pipeline.segmenter.model
    now = store.watermark() or 0
    own = [
        (model.scaled_input(model_input(features_of(c.state, now))), c.status.segment)
        for c in store.customers()
        if c.status.segment is not None
    ]
    members_at_window = members_at(events, window_start)
    rules = pipeline.segmenter.policy.settings
    return Evaluation(
        cut=cut,
        target_share=rules.target_share,
        share_band=rules.share_band,
        customers_at_cut=len(at_cut),
        insiders_at_cut=len(members_at_cut),
        shares=pd.Series(shares, dtype=float),
        segments_at_cut=_segment_counts(at_cut["segment"]),
        captures=captures,
        future_mean=future_mean,
        future_median=future_median,
        jaccard_end=jaccard(end.index[end["insider"]], end.index[batch_end]),
        silhouette_model=silhouette(end.loc[assessed], ours, seed),
        silhouette_own=silhouette_of(
            np.array([list(z.values()) for z, _ in own]), [label for _, label in own], seed
        ),
        silhouette_batch=silhouette(end, batch_labels, seed),
        insiders_end=int(end["insider"].sum()),
        batch_end=int(batch_end.sum()),
        stability=stability(events, window_start, members_at_window),
        horizon_days=horizon,
        expected=expected,
    )


def _segment_counts(segments: pd.Series) -> dict[int, int]:
    counts = segments.dropna().astype(int).value_counts().sort_index()
    return {int(rank): int(count) for rank, count in zip(counts.index, counts, strict=True)}


def report(result: Evaluation) -> str:
    share = result.insiders_at_cut / result.customers_at_cut
    lines = []
    if result.target_share is not None:
        target, shares = result.target_share, result.shares
        tolerance = 0.02
        inside = int(((shares - target).abs() <= tolerance + 1e-12).sum())
        lines += [
            f"Size: target {target:.1%} of the customers known (the edges hold "
            f"±{result.share_band:.1%} at each daily ranking)",
            f"at the cut: {share:.1%} ({result.insiders_at_cut:,} of "
            f"{result.customers_at_cut:,}); "
            + (
                f"after each of the {len(shares)} blocks since the first ranking: "
                f"{shares.min():.1%} to {shares.max():.1%}, {inside} of them within "
                f"±{tolerance:.0%}"
                if len(shares)
                else "no ranking yet"
            ),
            "",
        ]
    lines += [
        f"Out-of-time value: Insiders on {result.cut:%Y-%m-%d}, revenue after it",
        f"({result.customers_at_cut:,} customers known at the cut, "
        f"{result.insiders_at_cut:,} Insiders; customers per segment: "
        + ", ".join(f"{k}: {v:,}" for k, v in result.segments_at_cut.items())
        + ")",
        "",
        f"{'selection':<38} {'customers':>9} {'future revenue':>15} {'net of returns':>15}",
    ]
    for c in result.captures:
        lines.append(
            f"{c.name:<38} {c.customers:>9.1%} {c.future_revenue:>15.1%} {c.future_net:>15.1%}"
        )
    ours, simple = result.captures[0], result.captures[1]
    lines += [
        "",
        f"Insiders against the same number by past value: {ours.future_revenue:.1%} against "
        f"{simple.future_revenue:.1%} of the future revenue "
        f"({(ours.future_revenue - simple.future_revenue) * 100:+.2f} points), "
        f"{ours.future_net:.1%} against {simple.future_net:.1%} net of returns",
        "",
        "future revenue per customer, £ (bootstrap 95% interval)",
        f"{'':<10} {'mean':>30} {'median':>30}",
    ]
    for group in ("Insiders", "rest"):
        lines.append(
            f"{group:<10} {result.future_mean[group]!s:>30} {result.future_median[group]!s:>30}"
        )
    lines += [
        "",
        f"expected revenue at the cut (each customer's own pace, over the "
        f"{result.horizon_days:.0f} days after it) against what was spent, £",
    ]
    for group, (guess, actual) in result.expected.items():
        lines.append(
            f"{group:<10} expected {guess:>12,.0f}   spent {actual:>12,.0f}   "
            f"({guess / actual - 1:+.0%})"
            if actual
            else f"{group:<10} expected {guess:>12,.0f}   spent 0"
        )
    lines += [
        "",
        "Agreement at the end of the stream",
        f"Insiders {result.insiders_end:,}, batch KMeans top cluster {result.batch_end:,}, "
        f"Jaccard {result.jaccard_end:.2f}",
        f"silhouette in the batch space (log RFM): this model's segments "
        f"{result.silhouette_model:.3f}, batch KMeans {result.silhouette_batch:.3f}; "
        f"this model in its own input space {result.silhouette_own:.3f}",
        "",
        "Stability over the last three months",
        f"{result.stability.insiders_in_window:,} Insiders in the window, "
        f"{result.stability.flipped:,} exited and re-entered within 30 days "
        f"({result.stability.flip_rate:.2%}; goal < 2%)",
        "",
        "entries and exits per week",
        result.stability.weekly.to_string(),
    ]
    return "\n".join(lines)
