"""What building the report costs as the customer base grows: seconds, size and peak memory.

    .venv/bin/python benches/report_build.py [--data PATH] [--copies 1 10 230]

Replays the file in memory once, then copies its customers (and their events) under new ids
``--copies`` times and builds the report on the copies (`segmenter/report.py`), timed in
parts: the columns from customer objects (`Table.of`, what the API does when it builds the
report itself from a store's read), the columns from a roster (`Table.of_roster`, what the
consumer does), and the report itself. It also gives the size of the document the consumer
saves for the API (`api/saved_report.py`), which is what each API process reads instead.
230 copies of UCI's 4,334 customers are about a million.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.dashboard import revenue_shares  # noqa: E402
from api.report import all_events, report_body  # noqa: E402
from api.saved_report import SavedReport  # noqa: E402
from consumer.file_source import FileInvoiceSource  # noqa: E402
from consumer.memory import MemoryEventSink, MemoryFeatureStore  # noqa: E402
from consumer.pipeline import Pipeline  # noqa: E402
from consumer.ports import Customer  # noqa: E402
from segmenter.model import SegmentModel  # noqa: E402
from segmenter.report import Table, build_report  # noqa: E402
from segmenter.roster import Roster  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="file to replay (default: UCI)")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 10, 230])
    args = parser.parse_args()
    print(f"replaying {args.data.name} in memory...", file=sys.stderr)
    store = MemoryFeatureStore()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(args.data).blocks():
        pipeline.process(block)
    now = store.watermark()
    base = list(store.customers())
    events = all_events(store)
    print(
        "| customers | events | columns from customers s | columns from the roster s "
        "| the report s | saved document KiB | peak RSS MiB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for copies in args.copies:
        rows = [
            Customer(f"{c.customer_id}x{i}", c.state, c.status) for i in range(copies) for c in base
        ]
        copied = [
            dict(e, customer_id=f"{e['customer_id']}x{i}") for i in range(copies) for e in events
        ]
        copied.sort(key=lambda e: str(e["at"]))
        started = time.perf_counter()
        table = Table.of(rows)
        columns = time.perf_counter() - started
        roster = Roster.of((r.customer_id, r.state, r.status) for r in rows)
        started = time.perf_counter()
        from_roster = Table.of_roster(roster)
        roster_columns = time.perf_counter() - started
        assert from_roster.ids.tolist() == table.ids.tolist()
        started = time.perf_counter()
        report = build_report(from_roster, now, pipeline.segmenter, copied)
        took = time.perf_counter() - started
        body = report_body(report)
        doc = SavedReport(
            built_at=time.time(),
            seconds=took,
            due_within=5.0,
            report=body,
            shares=revenue_shares(from_roster, copied, body.weeks),
        ).model_dump_json()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cells = [
            f"{report.customers:,}",
            f"{len(copied):,}",
            f"{columns:.2f}",
            f"{roster_columns:.2f}",
            f"{took:.2f}",
            f"{len(doc) / 1024:,.1f}",
        ]
        print(f"| {' | '.join(cells)} | {peak:,.0f} |", flush=True)
        del rows, copied, table, roster, from_roster


if __name__ == "__main__":
    main()
