"""Consume with a million customers in the store, without a backfill of hours: lines/s of
`insiders consume`, its peak memory and its first read, at each size, on the same lines per
customer.

    .venv/bin/python benches/consume_at_size.py [--data PATH] [--copies 2 23 230]
        [--tail-days 5]

Replays the file in memory through the real pipeline up to ``--tail-days`` days before its
last day, and writes that state ``--copies`` times under new ids (``<id>x<copy>``) into a
fresh Redis prefix, as ``benches/api_at_size.py`` does. Then it writes the file's last
``--tail-days`` days as many times, each copy under the same new customer ids and its own
invoice numbers (``<invoice>x<copy>``), interleaved in time, publishes them with
``insiders publish`` and times ``insiders consume --exit-at-end`` over them: the rate the
consumer reports (its pipeline, from its claim of the prefix and its first full read of the
customers to its last report) and its peak RSS. The lines applied must be the same number for
each copy, and each copy must end with the totals of the whole file replayed at once
(revenue, invoices, lines, units, returns). Each copy is the same customers buying the same
things, so a line costs the same at every size unless the size itself costs something: the
first read of every customer, the daily ranking over all of them, the report the consumer
builds, Redis's own tables.

What it leaves out: the state before the tail did not come through Kafka and the Lua apply
(``benches/scale.py`` runs whole generated histories, up to 100,000 customers), so the prefix
holds no applied ids, invoice sets or histories from before the tail; its Redis bytes are not
those of a real backfill. 230 copies of UCI's 4,334 customers are 996,820. Starts Kafka and
Redis with scripts/services; the prefix and the topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import pandas as pd
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benches"))

from api_at_size import fill  # noqa: E402
from scale import (  # noqa: E402
    REDIS_URL,
    delete_prefix,
    delete_topics,
    fresh_run,
    log,
    run,
    time_sweep,
)

from consumer.file_source import FileInvoiceSource  # noqa: E402
from consumer.memory import MemoryEventSink, MemoryFeatureStore  # noqa: E402
from consumer.pipeline import Pipeline  # noqa: E402
from consumer.ports import Customer  # noqa: E402
from consumer.redis_store import RedisFeatureStore  # noqa: E402
from segmenter.model import SegmentModel  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"


def split_file(data: Path, tail_days: int) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The file's lines from ``tail_days`` days before its last day on (as text), and that day."""
    frame = pd.read_csv(data, dtype=str, keep_default_na=False)
    dates = pd.to_datetime(frame["InvoiceDate"])
    cut = dates.max().normalize() - timedelta(days=tail_days)
    tail = frame[dates >= cut].copy()
    tail["_at"] = dates[dates >= cut]
    return tail, cut


def write_copies(tail: pd.DataFrame, copies: int, path: Path) -> int:
    """``copies`` copies of ``tail`` under new customer ids and invoice numbers, in time
    order (a stable sort: an invoice's lines keep their order), to ``path``; the lines."""
    parts = []
    for k in range(copies):
        part = tail.copy()
        part["InvoiceNo"] = part["InvoiceNo"] + f"x{k}"
        known = part["CustomerID"] != ""
        ids = part.loc[known, "CustomerID"].str.replace(r"\.0+$", "", regex=True)
        part.loc[known, "CustomerID"] = ids + f"x{k}"
        parts.append(part)
    lines = pd.concat(parts, ignore_index=True).sort_values("_at", kind="stable")
    with gzip.open(path, "wt", compresslevel=1, newline="") as out:
        lines.drop(columns="_at").to_csv(out, index=False)
    return len(lines)


def totals(customers: Iterable[Customer]) -> tuple[int, ...]:
    """Revenue, invoices, lines, units and returned revenue, summed over ``customers``."""
    sums = [0, 0, 0, 0, 0]
    for c in customers:
        s = c.state
        for k, value in enumerate(
            (s.revenue_micros, s.invoices, s.lines, s.units, s.returned_micros)
        ):
            sums[k] += value
    return tuple(sums)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="file to replay (default: UCI)")
    parser.add_argument("--copies", type=int, nargs="+", default=[2, 23, 230])
    parser.add_argument(
        "--tail-days", type=int, default=5, help="days at the end of the file to consume"
    )
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()), help="where the copies go"
    )
    args = parser.parse_args()
    subprocess.run([str(REPO / "scripts" / "services"), "start"], check=True)
    client = redis.Redis.from_url(REDIS_URL)
    tail, cut = split_file(args.data, args.tail_days)
    log(f"replaying {args.data.name} in memory up to {cut:%Y-%m-%d}")
    source = MemoryFeatureStore()
    pipeline = Pipeline(source, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(
        args.data, until=cut.to_pydatetime() - timedelta(seconds=1)
    ).blocks():
        pipeline.process(block)
    # What the whole file gives, replayed at once: each copy must end with the same totals.
    whole = MemoryFeatureStore()
    whole_pipeline = Pipeline(whole, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(args.data).blocks():
        whole_pipeline.process(block)
    expected = totals(whole.customers())
    print(
        f"\n{args.data.name}: its state before {cut:%Y-%m-%d} copied, then its last "
        f"{args.tail_days} days ({len(tail):,} lines a copy) consumed\n"
    )
    print(
        "| customers | lines consumed | publish lines/s | consume lines/s "
        "| consume peak RSS MiB | first read of every customer, s | Insiders after |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
    applied_per_copy: int | None = None
    for copies in args.copies:
        topic, group, events, prefix, env = fresh_run("atsize", copies)
        path = args.work / f"{topic}.csv.gz"
        try:
            log(f"{copies} copies: filling {prefix}")
            roster = fill(client, prefix, source, copies)
            customers = len(roster)
            del roster
            lines = write_copies(tail, copies, path)
            log(f"{copies} copies: publishing {lines:,} lines")
            published = run(["publish", str(path)], env)
            log(f"{copies} copies: consuming")
            consumed = run(["consume", "--exit-at-end"], env)
            summary = next(line for line in consumed.output.splitlines() if " records: " in line)
            applied = int(summary.split(" records: ")[1].split(" applied")[0].replace(",", ""))
            if applied % copies:
                raise SystemExit(f"{applied:,} lines applied is not {copies} equal copies")
            if applied_per_copy is None:
                applied_per_copy = applied // copies
            elif applied != applied_per_copy * copies:
                raise SystemExit(f"{applied:,} lines applied, not {copies} x {applied_per_copy:,}")
            read = time_sweep(prefix)[0]
            got = totals(RedisFeatureStore.from_url(REDIS_URL, prefix).customers())
            if got != tuple(copies * v for v in expected):
                raise SystemExit(f"{copies} copies ended with {got}, not {copies} x {expected}")
            insiders = client.zcard(prefix + "insiders")
            cells = [
                f"{customers:,}",
                f"{lines:,}",
                f"{published.reported:,.0f}",
                f"{consumed.reported:,.0f}",
                f"{consumed.rss_mib:,.0f}",
                f"{read:.2f}",
                f"{insiders:,}",
            ]
            print(f"| {' | '.join(cells)} |", flush=True)
        finally:
            path.unlink(missing_ok=True)
            delete_prefix(client, prefix)
            delete_topics([topic, f"{topic}.dlq", events], group)


if __name__ == "__main__":
    main()
