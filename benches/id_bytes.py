"""What an applied id costs in Redis, and how many a customer holds, as a retailer grows.

    .venv/bin/python benches/id_bytes.py [--invoice-digits 6 7] [--smallest 10]
        [--largest 100] [--data FILE ...] [--days 2011-04-15 2011-12-09] [--dedupe-days 30]

Redis keeps the applied event ids in small sorted sets, the buckets ``seen:<n>`` (see
``consumer/lua/apply.lua``), each a listpack whose allocation jemalloc rounds up to a size
class. What an id costs thus depends on both its length and its bucket's size, and one bucket
size can hide a difference that the spread of sizes shows. Part one fills 100 buckets of each
size from ``--smallest`` to ``--largest`` (the buckets split at 40 ids on average, so while
the ids grow a bucket holds about 20 to 80; they never merge, so fewer once the ids shrink)
with ids shaped as UCI's, ``<invoice>:<line>``, for each ``--invoice-digits``, scored as
apply.lua scores them (day * 2^32 + fingerprint), under key names as long as the product's,
and prints the bytes an id from ``MEMORY USAGE`` (all elements sampled): every tenth size,
and the mean over the sizes (each size counted once, not weighted by the ids it holds). Uses
the Redis ``INSIDERS_REDIS_URL`` names, else starts the project's with scripts/services;
deletes its keys afterwards.

Part two, with ``--data``: for each file (an ISO-dated CSV in the UCI layout, as
``insiders generate`` writes), on each of ``--days``, the ids a customer holds once pruning
has caught up, from the file alone: the lines dated within the dedupe window (the
watermark's day, the latest day with lines up to that day, and the ``--dedupe-days`` before
it; 0 keeps every day; apply.lua keeps an id for every line it applies, ignored ones too),
over the customers with a purchase so far (a customer id on a line of positive quantity and
price with a product's stock code, as ``segmenter.lines.classify`` has it). Dead-lettered
lines (a negative price, a zero quantity) are counted too: a few in a million.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segmenter.lines import is_product  # noqa: E402

SERVICES_REDIS_URL = "redis://127.0.0.1:6379/0"  # where scripts/services starts Redis
BUCKETS = 100  # of each size
DAY = 15_000  # an epoch day of 2011, as apply.lua scores it


def bytes_an_id(client: redis.Redis, digits: int, size: int, rng: random.Random) -> float:
    """Mean bytes an id over BUCKETS buckets of ``size`` ids with invoices of ``digits``."""
    prefix = f"b{uuid.uuid4().hex[:7]}:"  # as long as "insiders:"
    keys = [f"{prefix}seen:{100_000 + n}" for n in range(BUCKETS)]  # a big prefix's numbers
    low = 10 ** (digits - 1)
    try:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            members: dict[str, int] = {}
            while len(members) < size:
                event_id = f"{rng.randrange(low, 10 * low)}:{rng.randrange(0, 30)}"
                day = DAY + rng.randrange(0, 31)
                members[event_id] = day * 2**32 + rng.randrange(0, 2**32)
            pipe.zadd(key, members)
        pipe.execute()
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.memory_usage(key, samples=0)
        return sum(pipe.execute()) / (BUCKETS * size)
    finally:
        client.unlink(*keys)


def print_bytes(client: redis.Redis, digits: list[int], smallest: int, largest: int) -> None:
    rng = random.Random(1)
    sizes = range(smallest, largest + 1)
    cost = {(d, size): bytes_an_id(client, d, size, rng) for size in sizes for d in digits}
    print("Bytes an applied id in Redis, by bucket size and invoice digits (`MEMORY USAGE`)\n")
    print("| ids a bucket | " + " | ".join(f"{d}-digit invoices" for d in digits) + " |")
    print("| ---: |" + " ---: |" * len(digits))
    for size in sizes:
        if (size - smallest) % 10 == 0 or size == largest:
            print(f"| {size} | " + " | ".join(f"{cost[d, size]:.2f}" for d in digits) + " |")
    means = [sum(cost[d, s] for s in sizes) / len(sizes) for d in digits]
    print(
        f"| mean, {smallest}-{largest} | " + " | ".join(f"**{m:.2f}**" for m in means) + " |",
        flush=True,
    )


def window_counts(path: Path) -> tuple[Counter[date], dict[str, date]]:
    """Lines by invoice day, and each customer's first day with a purchase."""
    lines: Counter[date] = Counter()
    first: dict[str, date] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        rows = csv.reader(handle)
        header = next(rows)
        names = ("StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID")
        try:
            stock, quantity, when, price, who = (header.index(name) for name in names)
        except ValueError:
            sys.exit(f"id_bytes: {path.name} is not in the UCI layout (header {header[:8]})")
        for number, row in enumerate(rows, start=2):
            if len(row) < len(header):
                continue
            try:
                day = date.fromisoformat(row[when][:10])
            except ValueError:
                sys.exit(f"id_bytes: {path.name} row {number}: InvoiceDate {row[when]!r}")
            lines[day] += 1
            customer = row[who]
            if not customer or first.get(customer, day) < day:
                continue
            try:
                bought = float(row[quantity]) > 0 and float(row[price]) > 0
            except ValueError:
                continue
            if bought and is_product(row[stock]):
                first[customer] = day
    return lines, first


def held_a_customer(lines: Counter[date], first: dict[str, date], day: date, keep: int) -> str:
    """The lines within the window on ``day`` per customer with a purchase so far."""
    latest = max((d for d in lines if d <= day), default=None)  # the watermark's day
    customers = sum(1 for d in first.values() if d <= day)
    if latest is None or not customers:
        return "-"
    since = latest - timedelta(days=keep) if keep else date.min
    held = sum(n for d, n in lines.items() if since <= d <= latest)
    return f"{held / customers:.2f}"


def print_window(paths: list[Path], days: list[date], keep: int) -> None:
    print(f"\nLines within {keep or 'all'} days a customer with a purchase so far, by day\n")
    print("| file | " + " | ".join(day.isoformat() for day in days) + " |")
    print("| --- |" + " ---: |" * len(days))
    for path in paths:
        lines, first = window_counts(path)
        cells = [held_a_customer(lines, first, day, keep) for day in days]
        print(f"| {path.name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invoice-digits", type=int, nargs="+", default=[6, 7])
    parser.add_argument("--smallest", type=int, default=10, help="ids a bucket, from")
    parser.add_argument("--largest", type=int, default=100, help="ids a bucket, to")
    parser.add_argument("--data", type=Path, nargs="*", default=[], help="files (UCI layout)")
    parser.add_argument("--days", type=date.fromisoformat, nargs="+", default=[date(2011, 4, 15)])
    parser.add_argument("--dedupe-days", type=int, default=30)
    args = parser.parse_args()
    if not 1 <= args.smallest <= args.largest:
        parser.error("--smallest must be at least 1 and at most --largest")
    if not all(1 <= d <= 15 for d in args.invoice_digits):
        parser.error("--invoice-digits: from 1 to 15")
    if args.dedupe_days < 0:
        parser.error("--dedupe-days: 0 (every id) or more")
    url = os.environ.get("INSIDERS_REDIS_URL")
    if not url:
        subprocess.run([str(REPO / "scripts" / "services"), "start"], check=True)
    print_bytes(
        redis.Redis.from_url(url or SERVICES_REDIS_URL),
        args.invoice_digits,
        args.smallest,
        args.largest,
    )
    if args.data:
        print_window(args.data, args.days, args.dedupe_days)


if __name__ == "__main__":
    main()
