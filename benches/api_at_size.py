"""The API over Redis at a million customers, without a backfill of hours: `/report` and
`/dashboard` p50/p99, `GET /customers/{id}` p99 while four clients loop on `/dashboard`, the
API's memory, and a consumer's first full read of the customers.

    .venv/bin/python benches/api_at_size.py [--data PATH] [--copies 1 23 230] [--requests 50]

Replays the file in memory through the real pipeline once, then writes its customers
``--copies`` times under new ids (``<id>x<copy>``) into a fresh Redis prefix, as the Redis
store keeps them: each customer's hash ``c:<id>``, the ``customers`` set, the ``insiders``
sorted set, with the replay's events (copied per customer) in the ``events`` stream, and its
model checkpoint and watermark. The consumer's report writer (``api/saved_report.py``)
then builds the report from a roster of the copies and saves it, as the consumer does.
The real ``insiders api`` runs on the prefix, timed as ``benches/scale.py`` times it (its
``measure_api``), and the first ranking's read as it does (``time_sweep``, median of three).

What it leaves out: the state did not come through Kafka and the Lua apply (``scale.py``
measures those, up to 100,000 customers), and the prefix holds no applied ids, invoice sets or
histories, which these routes do not read. 230 copies of UCI's 4,334 customers are
996,820. Starts Redis with scripts/services; the prefix is deleted afterwards.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benches"))

from scale import REDIS_URL, Latency, delete_prefix, log, measure_api, time_sweep  # noqa: E402

from api.saved_report import ReportWriter  # noqa: E402
from consumer.file_source import FileInvoiceSource  # noqa: E402
from consumer.memory import MemoryEventSink, MemoryFeatureStore  # noqa: E402
from consumer.pipeline import Pipeline  # noqa: E402
from consumer.redis_store import RedisFeatureStore  # noqa: E402
from segmenter.model import SegmentModel  # noqa: E402
from segmenter.roster import Roster  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
BATCH = 5000


def optional(value: int | None) -> int | str:
    return "" if value is None else value


def fill(client: redis.Redis, prefix: str, source: MemoryFeatureStore, copies: int) -> Roster:
    """Write ``copies`` copies of ``source``'s customers and events under ``prefix``; the
    roster of the copies, as the consumer would hold it."""
    base = list(source.customers())
    events = [dict(e) for e in source.outbox]
    roster = Roster()
    pipe = client.pipeline(transaction=False)
    queued = 0
    for k in range(copies):
        for c in base:
            cid = f"{c.customer_id}x{k}"
            s, st = c.state, c.status
            pipe.hset(
                f"{prefix}c:{cid}",
                mapping={
                    "rev": s.revenue_micros,
                    "inv": s.invoices,
                    "lines": s.lines,
                    "units": s.units,
                    "rrev": s.returned_micros,
                    "runits": s.returned_units,
                    "first": optional(s.first_ts),
                    "last": optional(s.last_ts),
                    "seg": optional(st.segment),
                    "ins": int(st.insider),
                    "since": optional(st.insider_since),
                    "seq": st.sequence,
                    "mv": st.model_version,
                },
            )
            pipe.sadd(f"{prefix}customers", cid)
            if st.insider and st.insider_since is not None:
                pipe.zadd(f"{prefix}insiders", {cid: st.insider_since})
            roster.put(cid, s, st)
            queued += 1
            if queued % BATCH == 0:
                pipe.execute()
    # Events in time order across the copies, as the outbox would have them.
    copied = sorted(
        (dict(e, customer_id=f"{e['customer_id']}x{k}") for k in range(copies) for e in events),
        key=lambda e: str(e["at"]),
    )
    for n, event in enumerate(copied, 1):
        pipe.xadd(f"{prefix}events", {"e": orjson.dumps(event)})
        if n % BATCH == 0:
            pipe.execute()
    model = source.model_checkpoint()
    assert model is not None and source.last_ts is not None
    pipe.set(f"{prefix}model", model)
    pipe.set(f"{prefix}watermark", source.last_ts)
    pipe.execute()
    return roster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="file to replay (default: UCI)")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 23, 230])
    parser.add_argument("--requests", type=int, default=50, help="per route, after the first")
    args = parser.parse_args()
    subprocess.run([str(REPO / "scripts" / "services"), "start"], check=True)
    client = redis.Redis.from_url(REDIS_URL)
    log(f"replaying {args.data.name} in memory")
    source = MemoryFeatureStore()
    pipeline = Pipeline(source, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(args.data).blocks():
        pipeline.process(block)
    print(
        "| customers | events | fill Redis s | the consumer's report build s "
        "| first ranking's read s | `/report` p50 / p99 ms | `/dashboard` p50 / p99 ms "
        "| `/customers/{id}` p50 / p99 ms, 4 clients on `/dashboard` | API peak RSS MiB |"
    )
    print("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |", flush=True)
    for copies in args.copies:
        prefix = f"size:{uuid.uuid4().hex[:6]}:{copies}:"
        try:
            log(f"{copies} copies: filling {prefix}")
            started = time.perf_counter()
            roster = fill(client, prefix, source, copies)
            filled = time.perf_counter() - started
            store = RedisFeatureStore.from_url(REDIS_URL, prefix)
            writer = ReportWriter(store)
            started = time.perf_counter()
            writer.write(roster, pipeline.segmenter, store.watermark())
            built = time.perf_counter() - started
            saved = store.saved_report()
            assert saved is not None, "the report writer saved nothing"
            log(f"{copies} copies: report built and saved in {built:.2f} s; timing the read")
            reads = [time_sweep(prefix)[0] for _ in range(3)]
            ids = random.Random(7).sample(roster.ids, min(5000, len(roster)))
            log(f"{copies} copies: insiders api")
            api = measure_api(prefix, args.requests, ids)
            cells = [f"{len(roster):,}", f"{store.client.xlen(prefix + 'events'):,}"]
            cells += [f"{filled:.0f}", f"{built:.2f}"]
            cells.append(f"{statistics.median(reads):.2f} ({min(reads):.2f}-{max(reads):.2f})")
            for route in ("/report", "/dashboard", "/customers/{id}"):
                latency = api[route]
                assert isinstance(latency, Latency)
                cells.append(f"{latency.p(0.5):,.1f} / {latency.p(0.99):,.1f}")
            cells.append(f"{api['rss']:,.0f}")
            print(f"| {' | '.join(cells)} |", flush=True)
            del roster
        finally:
            delete_prefix(client, prefix)


if __name__ == "__main__":
    main()
