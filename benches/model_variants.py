"""Which changes to the online model work: one row per step from river's KMeans to ours.

    .venv/bin/python benches/model_variants.py [--data PATH] [--seeds 1 2 3] [--only tradeoff]

Each row replays the full file embedded (`insiders evaluate`'s code) and reports the
Insiders at the 2011-09-08 cut: share of customers, share of the next quarter's revenue,
flaps (exit and re-entry within 30 days, last three months), agreement with batch KMeans
at the end (Jaccard), and the silhouette of the model's segments in its own input space.
Median over the seeds, min-max beside it.

The trade-off table runs the default model and policy at several target shares: the
programme's size against the share of the next quarter's revenue it captures, beside the
same number of top customers by past value (what they kept).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from river import cluster

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumer.evaluate import evaluate  # noqa: E402
from consumer.memory import MemoryEventSink, MemoryFeatureStore  # noqa: E402
from consumer.pipeline import Pipeline  # noqa: E402
from segmenter.model import RFM, SegmentModel  # noqa: E402
from segmenter.policy import InsiderPolicy, PolicySettings  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
CUT = datetime(2011, 9, 8, 23, 59, 59)

# "Insider while in the top segment": no margins, no dwell, no time-driven exits.
PLAIN = PolicySettings(
    target_share=None,
    entry_margin=0.0,
    exit_margin=0.0,
    min_dwell_days=0,
    lapse_days=1e9,
    overdue_factor=1e9,
)


class RiverKMeans:
    """river's KMeans behind the clusterer interface SegmentModel uses."""

    ready = True

    def __init__(self, n_clusters: int, halflife: float, seed: int) -> None:
        self.model = cluster.KMeans(n_clusters=n_clusters, halflife=halflife, seed=seed)

    def start(self) -> None:
        pass

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted(RFM))

    @property
    def centres(self) -> list[list[float]]:
        return [[self.model.centers[label][k] for k in self.keys] for label in sorted(self.centers)]

    @property
    def centers(self) -> dict[int, dict[str, float]]:
        return {label: dict(c) for label, c in self.model.centers.items()}

    def learn_one(self, x: dict[str, float]) -> None:
        self.model.learn_one(x)

    def predict_one(self, x: dict[str, float]) -> int:
        return int(self.model.predict_one(x))


def river_model(seed: int) -> SegmentModel:
    model = SegmentModel(inputs=RFM, weights={}, seed=seed)
    model.clusterer = RiverKMeans(4, halflife=0.05, seed=seed)  # type: ignore[assignment]
    return model


VARIANTS: list[tuple[str, Callable[[int], SegmentModel], PolicySettings]] = [
    ("river KMeans k=4, halflife 0.05, RFM", river_model, PLAIN),
    (
        "sequential k-means, 1/n steps, no warm start, RFM",
        lambda seed: SegmentModel(inputs=RFM, weights={}, warmup=4, seed=seed),
        PLAIN,
    ),
    (
        "+ warm start (k-means++ x10 on 1,024 points)",
        lambda seed: SegmentModel(inputs=RFM, weights={}, seed=seed),
        PLAIN,
    ),
    ("+ inputs: monetary and tenure, weighted", lambda seed: SegmentModel(seed=seed), PLAIN),
    (
        "+ policy: margins 0.3, dwell 30 d, lapse rules",
        lambda seed: SegmentModel(seed=seed),
        PolicySettings(target_share=None),
    ),
    (
        "+ target share 12% ± 1.5 (the default)",
        lambda seed: SegmentModel(seed=seed),
        PolicySettings(),
    ),
]


def run(make_model: Callable[[int], SegmentModel], rules: PolicySettings, seed: int) -> Any:
    def make(store: MemoryFeatureStore) -> Pipeline:
        return Pipeline(store, MemoryEventSink(), make_model(seed), policy=InsiderPolicy(rules))

    return evaluate(DATA if ARGS.data is None else ARGS.data, make, CUT, draws=10, seed=seed)


def cell(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    print(
        f"{'variant':<52} {'customers':>20} {'future revenue':>20} {'flaps':>18}  Jaccard  silh."
        "  smallest segment"
    )
    for name, make_model, rules in VARIANTS:
        started = time.perf_counter()
        results = [run(make_model, rules, seed) for seed in ARGS.seeds]
        customers = [r.model.customers * 100 for r in results]
        future = [r.model.future_revenue * 100 for r in results]
        flaps = [r.stability.flip_rate * 100 for r in results]
        jaccard = statistics.median(r.jaccard_end for r in results)
        silhouette = statistics.median(r.silhouette_own for r in results)
        # Dead clusters: the share of assessed customers in the smallest segment.
        smallest = [
            100 * min(r.segments_at_cut.values()) / sum(r.segments_at_cut.values())
            if len(r.segments_at_cut) == SegmentModel().n_segments
            else 0.0  # a segment that won nobody
            for r in results
        ]
        print(
            f"{name:<52} {cell(customers, '.1f'):>20} {cell(future, '.1f'):>20} "
            f"{cell(flaps, '.1f'):>18}  {jaccard:7.2f}  {silhouette:5.2f}  "
            f"{cell(smallest, '.1f')}",
            flush=True,
        )
        print(f"  ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    print(
        "\ncustomers, future revenue and flaps in %; flaps goal < 2%",
        flush=True,
    )


def tradeoff() -> None:
    """The programme's size is a setting: what each target share captures."""
    print(f"\nsize trade-off (default model and policy, seed {ARGS.seeds[0]})")
    print(
        f"{'target':>6} {'customers':>10} {'future revenue':>15} {'by past value':>14} "
        f"{'flaps':>7}",
        flush=True,
    )
    for share in ARGS.shares:
        band = min(0.015, share / 4)
        rules = PolicySettings(target_share=share, share_band=band)
        r = run(lambda seed: SegmentModel(seed=seed), rules, ARGS.seeds[0])
        print(
            f"{share:>6.0%} {r.model.customers:>10.1%} {r.model.future_revenue:>15.1%} "
            f"{r.captures[1].future_revenue:>14.1%} {r.stability.flip_rate:>7.1%}",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.08, 0.12, 0.16, 0.20])
    parser.add_argument(
        "--only", choices=["variants", "tradeoff"], help="run one of the two tables"
    )
    ARGS = parser.parse_args()
    if not (ARGS.data or DATA).exists():
        raise SystemExit(f"{ARGS.data or DATA} is absent: pass --data PATH to the full file")
    if ARGS.only != "tradeoff":
        main()
    if ARGS.only != "variants":
        tradeoff()
