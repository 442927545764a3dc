"""What one daily ranking costs as the customer base grows: seconds, decisions, memory.

    .venv/bin/python benches/ranking.py [--data PATH] [--copies 1 10 230] [--runs 3]

Replays the file in memory once (the model and every customer's state and status as the
replay left them), then copies the customers under new ids ``--copies`` times onto a
:class:`segmenter.roster.Roster`, as the pipeline keeps it, and times the sweep on it, one
day and thirty days after the watermark: median of ``--runs``, with the range. Each run
starts from the same model and statuses (nothing is committed). 230 copies of UCI's 4,334
customers are about a million.

Copies are exact: each margin is shared by every copy, the worst case for the ties the
ranking breaks by id. The roster's bytes per customer are its arrays and the ids (with
their index), measured with ``tracemalloc``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumer.file_source import FileInvoiceSource  # noqa: E402
from consumer.memory import MemoryEventSink, MemoryFeatureStore  # noqa: E402
from consumer.pipeline import Pipeline  # noqa: E402
from segmenter.features import SECONDS_PER_DAY  # noqa: E402
from segmenter.model import SegmentModel  # noqa: E402
from segmenter.roster import Roster  # noqa: E402
from segmenter.segmentation import Segmenter  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="file to replay (default: UCI)")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10, 230])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"replaying {args.data.name} in memory...", file=sys.stderr)
    store = MemoryFeatureStore()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(args.data).blocks():
        pipeline.process(block)
    watermark = store.watermark()
    assert watermark is not None
    base = list(store.customers())
    checkpoint = pipeline.segmenter.checkpoint()
    print(
        "| customers | roster MiB | B/customer | fill s | days after | ranking s, median (range) "
        "| entries | exits | statuses written |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for copies in args.copies:
        tracemalloc.start()
        started = time.perf_counter()
        roster = Roster.of(
            (f"{c.customer_id}x{i}", c.state, c.status) for i in range(copies) for c in base
        )
        fill = time.perf_counter() - started
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        for days in (1, 30):
            seconds, result = [], None
            for _ in range(args.runs):
                segmenter = Segmenter.from_checkpoint(checkpoint)
                started = time.perf_counter()
                result = segmenter.sweep(roster, watermark + days * SECONDS_PER_DAY)
                seconds.append(time.perf_counter() - started)
            assert result is not None
            entries = sum(e.type == "insider.entered" for e in result.events)
            cells = [
                f"{len(roster):,}",
                f"{size / 2**20:,.0f}",
                f"{size / len(roster):,.0f}",
                f"{fill:.2f}",
                str(days),
                f"{statistics.median(seconds):.3f} ({min(seconds):.3f}-{max(seconds):.3f})",
                f"{entries:,}",
                f"{len(result.events) - entries:,}",
                f"{len(result.statuses):,}",
            ]
            print(f"| {' | '.join(cells)} |", flush=True)
        del roster


if __name__ == "__main__":
    main()
