"""What a file's state costs in Redis, per customer and key family, for each dedupe retention.

    .venv/bin/python benches/redis_footprint.py [--data PATH] [--dedupe-days 400 30]
        [--seen-buckets N] [--every-days N] [--keep | --resume PREFIX]

For each retention (``INSIDERS_DEDUPE_DAYS``; 0 keeps every id), fills a fresh Redis
prefix (``b<7 hex digits>:``) with the consumer's own pipeline (file source, Redis
store, the default settings otherwise), as `insiders consume --exit-at-end` would from a
topic holding the file, then sums `MEMORY USAGE` (every element sampled) of each key under
the prefix by family and divides by the customers with a purchase. Prints one table, bytes
per customer, a column a retention; the prefixes are deleted afterwards (unless kept, below).
One row adds what ``MEMORY USAGE`` leaves out: how much Redis's ``used_memory``
grew over each fill, which also counts the keyspace's own table (a slot of 8 bytes a key, in a
table that doubles as keys come) and whatever else Redis allocated meanwhile. It means what it
says only on a Redis that nothing else writes to while the bench fills.
Starts Redis with scripts/services, unless ``INSIDERS_REDIS_URL`` names a Redis (then that
one is used as it is). Default data: the full UCI file beside the repo, else the shipped
sample.

``--every-days N`` also measures the prefix each N days of event time while it fills (the
fill waits), and prints the bytes per customer at each: what a customer costs follows the
season (the ids of the last days are kept), so two sizes of one generated calendar compare
day by day, and a fill too long to finish still says what it cost so far.

A fill too long for one sitting (a million customers fill at about 12,000 lines/s: some 3
hours) can be done in several: ``--keep`` leaves the prefix in Redis, interrupted or not,
once it holds a line, and ``--resume PREFIX`` goes on filling it from where it stopped: the
pipeline skips the lines the prefix holds by their offsets, as a restarted consumer does. A
kept prefix records its file (name and size) and retention, and a resume of another file or
retention is refused. The Redis scripts/services starts saves nothing (a restart empties
it): for sittings days apart, fill a Redis that saves its data (an RDB or AOF file), named
by ``INSIDERS_REDIS_URL``. The fill rate and the lines refused count this sitting only, and
the fill rate's seconds include skipping the lines held and the first full read of the
customers a resumed pipeline makes for its daily ranking.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scale import delete_prefix, key_sizes  # noqa: E402

from consumer.cli import build_pipeline  # noqa: E402
from consumer.file_source import FileInvoiceSource  # noqa: E402
from consumer.memory import MemoryEventSink  # noqa: E402
from consumer.redis_store import RedisFeatureStore  # noqa: E402
from consumer.settings import ConsumerSettings  # noqa: E402

FULL = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
SAMPLE = REPO / "consumer" / "data" / "online_retail_sample.csv.gz"
SERVICES_REDIS_URL = "redis://127.0.0.1:6379/0"  # where scripts/services starts Redis
# A prefix of the bench: as long as the service's default, "insiders:". Every key's name is
# part of what it costs (its bytes, rounded up to an allocation size), so a longer prefix
# would add some 16 bytes a key, about 35 a customer at 2.2 keys a customer.
KEPT = re.compile(r"b[0-9a-f]{7}:")
FAMILIES = ("c:", "ci:", "seen:", "h:", "events", "customers", "insiders", "others")


def family(name: str) -> str:
    """``c:17850`` -> ``c:``, ``events`` -> ``events``; the small bookkeeping keys -> others."""
    head, colon, _ = name.partition(":")
    if colon and head + ":" in FAMILIES:
        return head + ":"
    return name if name in FAMILIES else "others"


def footprint(client: redis.Redis, prefix: str) -> dict[str, int]:
    """Bytes by key family under ``prefix`` (`MEMORY USAGE`, all elements sampled)."""
    sizes = dict.fromkeys(FAMILIES, 0)
    for name, used in key_sizes(client, prefix):
        sizes[family(name)] += used
    return sizes


def used_memory(client: redis.Redis) -> int:
    """What Redis has allocated in all (``INFO memory``'s ``used_memory``), less its clients'
    buffers (a connection's, not the data's; a block's arguments pass through them)."""
    info: Any = client.info("memory")
    return int(info["used_memory"]) - int(info["mem_clients_normal"])


def fill(
    data: Path,
    days: int,
    buckets: int,
    client: redis.Redis,
    prefix: str,
    every_days: int | None = None,
) -> tuple[int, Any, float]:
    """``prefix`` filled with ``data``, from where it stopped (a fresh one from the start):
    (customers, the pipeline's stats, seconds). With ``every_days``, prints the footprint
    each that many days of event time as it fills (the seconds exclude those measures)."""
    settings = ConsumerSettings(dedupe_days=days, seen_buckets=buckets)
    client.hsetnx(prefix + "bench", "data", data.name)
    client.hsetnx(prefix + "bench", "bytes", data.stat().st_size)
    client.hsetnx(prefix + "bench", "dedupe_days", days)
    print(f"filling Redis prefix {prefix} with {days} days", file=sys.stderr, flush=True)
    store = RedisFeatureStore(client, prefix, settings.seen_buckets, settings.retention())
    pipeline = build_pipeline(store, MemoryEventSink(), settings)
    next_day: int | None = None
    elapsed = 0.0
    for block in FileInvoiceSource(data, settings.block_size).blocks():
        started = time.perf_counter()
        pipeline.process(block)
        elapsed += time.perf_counter() - started
        if every_days is None or (watermark := store.watermark()) is None:
            continue
        day = watermark // 86_400
        if next_day is None:
            next_day = day + every_days
            print_progress_header(days)
        elif day >= next_day:
            next_day = day + every_days
            print_progress(day, pipeline.stats.records, store.customer_count(), client, prefix)
    return store.customer_count(), pipeline.stats, elapsed


def print_progress_header(days: int) -> None:
    print(f"\nWhile filling, INSIDERS_DEDUPE_DAYS={days}: bytes per customer by event day\n")
    print(
        "| event day | lines | customers | " + " | ".join(f"`{f}`" for f in FAMILIES) + " | all |"
    )
    print("| --- | ---: | ---: |" + " ---: |" * (len(FAMILIES) + 1), flush=True)


def print_progress(day: int, lines: int, customers: int, client: redis.Redis, prefix: str) -> None:
    sizes = footprint(client, prefix)
    cells = [f"{sizes[name] / customers:,.0f}" for name in FAMILIES]
    when = datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat()
    total = sum(sizes.values()) / customers
    print(
        f"| {when} | {lines:,} | {customers:,} | " + " | ".join(cells) + f" | {total:,.0f} |",
        flush=True,
    )


def resumable(
    parser: argparse.ArgumentParser,
    client: redis.Redis,
    prefix: str,
    data: Path,
    days: list[int] | None,
) -> int:
    """The retention of ``prefix``, a fill kept by --keep of ``data``; else a one-line error."""
    if not KEPT.fullmatch(prefix):
        parser.error(f"--resume {prefix!r}: only a prefix this bench kept, like b1a2b3c4:")
    raw: Any = client.hgetall(prefix + "bench")
    kept = {k.decode(): v.decode() for k, v in raw.items()}
    if not client.exists(prefix + "offsets") or not kept:
        parser.error(f"--resume: Redis holds no fill kept under {prefix!r}")
    size = str(data.stat().st_size)
    if (kept.get("data"), kept.get("bytes")) != (data.name, size):
        parser.error(
            f"--resume {prefix}: it was filled from {kept.get('data')} ({kept.get('bytes')} "
            f"bytes), not {data.name} ({size} bytes)"
        )
    stored = int(kept.get("dedupe_days", "-1"))
    if days is not None and days != [stored]:
        parser.error(f"--resume {prefix}: it was filled with --dedupe-days {stored}")
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=FULL if FULL.exists() else SAMPLE)
    parser.add_argument(
        "--dedupe-days",
        type=int,
        nargs="+",
        help="the retentions to fill, a prefix each (default 400 30; with --resume, the kept "
        "prefix's own)",
    )
    parser.add_argument(
        "--every-days",
        type=int,
        help="also measure each N days of event time while filling (a table per retention)",
    )
    parser.add_argument(
        "--seen-buckets",
        type=int,
        default=ConsumerSettings().seen_buckets,
        help="INSIDERS_SEEN_BUCKETS: the buckets a prefix starts with (they split as ids grow)",
    )
    kept = parser.add_mutually_exclusive_group()
    kept.add_argument(
        "--keep",
        action="store_true",
        help="leave the filled prefix in Redis (also when interrupted), to --resume it later",
    )
    kept.add_argument(
        "--resume",
        metavar="PREFIX",
        help="fill on a prefix kept by --keep from where it stopped, with its file and "
        "retention, and keep it",
    )
    args = parser.parse_args()
    url = os.environ.get("INSIDERS_REDIS_URL")
    if not url:
        subprocess.run([str(REPO / "scripts" / "services"), "start"], check=True)
    client = redis.Redis.from_url(url or SERVICES_REDIS_URL)
    retentions = args.dedupe_days or [400, 30]
    if args.resume:
        retentions = [resumable(parser, client, args.resume, args.data, args.dedupe_days)]
    keep = args.keep or args.resume is not None
    columns = []
    grown: list[int] = []  # used_memory's growth over each fill, a column each
    for days in retentions:
        prefix = args.resume or f"b{uuid.uuid4().hex[:7]}:"
        used = used_memory(client)
        try:
            customers, stats, elapsed = fill(
                args.data, days, args.seen_buckets, client, prefix, args.every_days
            )
            sizes = footprint(client, prefix)
            grown.append(used_memory(client) - used)
        finally:
            if keep and client.exists(prefix + "offsets"):
                print(f"kept: resume with --resume {prefix}", file=sys.stderr)
            else:
                delete_prefix(client, prefix)
        columns.append((days, customers, stats, elapsed, sizes))
        print(f"filled with {days} days in {elapsed:.0f}s", file=sys.stderr)

    _, customers, stats, _, _ = columns[0]
    lines = stats.records
    print(
        f"\nRedis bytes per customer: {args.data.name}, {lines:,} lines, {customers:,} "
        f"customers, {args.seen_buckets:,} buckets"
    )
    print("(INSIDERS_DEDUPE_DAYS in the header; 0 keeps every id)\n")
    print("| key family | " + " | ".join(f"{days} days" for days, *_ in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for name in FAMILIES:
        cells = [f"{sizes[name] / n:,.0f}" for _, n, _, _, sizes in columns]
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    totals = [f"**{sum(sizes.values()) / n:,.0f}**" for _, n, _, _, sizes in columns]
    print("| all | " + " | ".join(totals) + " |")
    mib = [f"{sum(sizes.values()) / 2**20:.1f}" for *_, sizes in columns]
    print("| all, MiB | " + " | ".join(mib) + " |")
    if not args.resume:  # a resumed fill's growth is this sitting's only
        cells = [f"{g / n:,.0f}" for g, (_, n, *_) in zip(grown, columns, strict=True)]
        print("| Redis `used_memory` grown, bytes a customer | " + " | ".join(cells) + " |")
    speed = [
        f"{(stats.records - stats.stale) / elapsed:,.0f}" for _, _, stats, elapsed, _ in columns
    ]
    print("| fill, lines/s | " + " | ".join(speed) + " |")
    late = [f"{stats.rejected['beyond_retention']:,}" for _, _, stats, _, _ in columns]
    print("| lines refused as `beyond_retention`, this sitting | " + " | ".join(late) + " |")
    if args.resume:
        print(f"| lines held before this sitting (skipped) | {columns[0][2].stale:,} |")


if __name__ == "__main__":
    # Ctrl-C or a TERM stops a fill cleanly (its prefix kept or deleted as asked), also when it
    # was started in the background, where SIGINT comes ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("redis_footprint: interrupted")
