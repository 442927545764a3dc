"""Latency of the HTTP API over Redis holding the full Online Retail file: p50/p99 per route,
and what that state costs in Redis memory, by key family.

    .venv/bin/python benches/api_latency.py [--data PATH] [--requests 200]

Fills a fresh Redis prefix through the pipeline (file source, Redis store), starts the
real `insiders api` process on it, and times sequential requests from one client, so
each figure is one request's latency with nothing queued ahead of it. The report and
the dashboard read every customer on each request and are timed with fewer requests.
Starts Redis (and Kafka) with scripts/services. Peak memory is the API process's max RSS;
Redis memory is `MEMORY USAGE` of every key under the prefix (all elements sampled).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumer.file_source import FileInvoiceSource  # noqa: E402
from consumer.memory import MemoryEventSink  # noqa: E402
from consumer.pipeline import Pipeline  # noqa: E402
from consumer.redis_store import RedisFeatureStore  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
REDIS_URL = os.environ.get("INSIDERS_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def redis_footprint(client: redis.Redis, prefix: str) -> dict[str, tuple[int, int]]:
    """Keys and bytes per key family: `c:<id>` counts as `c:*`, `seen` as itself."""
    families: dict[str, tuple[int, int]] = {}
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        name = key.decode()[len(prefix) :]
        family = name.split(":", 1)[0] + ":*" if ":" in name else name
        used = int(client.memory_usage(key, samples=0) or 0)
        keys, size = families.get(family, (0, 0))
        families[family] = (keys + 1, size + used)
    return dict(sorted(families.items(), key=lambda item: -item[1][1]))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--requests", type=int, default=200, help="per light route")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} is absent: pass --data PATH to the full Online Retail file")
    subprocess.run([str(REPO / "scripts" / "services"), "start"], check=True)
    prefix = f"bench:api-{uuid.uuid4().hex[:8]}:"
    store = RedisFeatureStore.from_url(REDIS_URL, prefix)
    started = time.perf_counter()
    pipeline = Pipeline(store, MemoryEventSink())
    for block in FileInvoiceSource(args.data).blocks():
        pipeline.process(block)
    print(f"filled {prefix} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    footprint = redis_footprint(redis.Redis.from_url(REDIS_URL), prefix)

    port = free_port()
    env = {**os.environ, "INSIDERS_REDIS_URL": REDIS_URL, "INSIDERS_REDIS_PREFIX": prefix}
    api = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(42)
    ids = [c.customer_id for c in store.customers()]
    routes: list[tuple[str, int, Callable[[], str]]] = [
        ("/customers/{id}", args.requests, lambda: f"/customers/{rng.choice(ids)}"),
        ("/customers/{id}/history", args.requests, lambda: f"/customers/{rng.choice(ids)}/history"),
        ("/insiders?limit=100", args.requests, lambda: "/insiders?limit=100"),
        ("/events?limit=100", args.requests, lambda: "/events?limit=100"),
        ("/stats", args.requests, lambda: "/stats"),
        ("/report", max(args.requests // 10, 5), lambda: "/report"),
        ("/dashboard", max(args.requests // 10, 5), lambda: "/dashboard"),
    ]
    rows = []
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/healthz").raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the API did not start") from None
                    time.sleep(0.2)
            for name, count, path in routes:
                client.get(path()).raise_for_status()  # warm
                times = []
                for _ in range(count):
                    t = time.perf_counter()
                    client.get(path()).raise_for_status()
                    times.append((time.perf_counter() - t) * 1000)
                rows.append((name, count, statistics.median(times), percentile(times, 0.99)))
        rss = peak_rss_mib(api.pid)
    finally:
        api.terminate()
        api.wait(timeout=30)
        client_redis = redis.Redis.from_url(REDIS_URL)
        for key in client_redis.scan_iter(match=f"{prefix}*", count=1000):
            client_redis.unlink(key)

    print(f"\n`insiders api` over Redis: {len(ids):,} customers of {args.data.name}\n")
    print("| route | requests | p50 ms | p99 ms |\n| --- | ---: | ---: | ---: |")
    for name, count, p50, p99 in rows:
        print(f"| {name} | {count} | {p50:.1f} | {p99:.1f} |")
    print(f"\npeak RSS of the API process: {rss:.0f} MiB")
    total = sum(size for _, size in footprint.values())
    print(f"\nRedis memory under the prefix: {total / 2**20:.1f} MiB\n")
    print("| key family | keys | MiB | share |\n| --- | ---: | ---: | ---: |")
    for family, (keys, size) in footprint.items():
        print(f"| `{family}` | {keys:,} | {size / 2**20:.1f} | {size / total:.0%} |")


if __name__ == "__main__":
    main()
