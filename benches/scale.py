"""How the service scales with the customer base: synthetic retailers of 10k, 100k and 1M customers.

    .venv/bin/python benches/scale.py [--sizes 10000 100000 1000000] [--seed 1] [--work DIR]
        [--days D] [--runs 1] [--requests 50] [--keep] [--no-replay | --replay-only]

For each size, on a history written by ``insiders generate`` (cached in ``--work`` as
``synthetic-<N>-seed<S>[-<D>d].csv.gz``; ``--days`` shortens it, the same habits over fewer
days), it measures:

- ``insiders replay`` (embedded: file source, in-memory store): lines/s as the command
  reports it (the pipeline, from the first block to the last) and for the whole process,
  and the process's peak RSS (``wait4``'s ``ru_maxrss``);
- ``insiders publish`` into a fresh topic, then ``insiders consume --exit-at-end`` of it into
  a fresh Redis prefix: the consumer's lines/s as it reports it (the consume phase only,
  after the writer lock is claimed and the topic is assigned) and its peak RSS;
- Redis bytes per customer: ``MEMORY USAGE`` (every element sampled) summed over the
  prefix's keys (SCAN), divided by the customers, with the bytes by key family;
- the time of one sweep, the daily ranking of every customer. The consumer does not log
  its duration, so it is timed here, in-process, as the pipeline runs it: read every
  customer from the Redis prefix (``RedisFeatureStore.customers``), put them on a
  ``Roster`` (both only at a consumer's first ranking), then ``Segmenter.sweep`` on it with
  the model of the prefix's checkpoint, one day after the watermark (its result is not
  committed). Median of three, each part apart;
- ``insiders api`` on that prefix: ``/report`` and ``/dashboard``, the first request (cold:
  it may wait for the report to be built) apart, then ``--requests`` sequential requests
  (p50, p99); and ``GET /customers/{id}`` of random known ids while four threads fetch
  ``/dashboard`` in a loop (p50, p99), with the API process's peak RSS.

At 100,000 customers (12.5M lines) a size takes about 50 minutes on two cores. At 1,000,000
(125M lines) publish and consume take hours: ``--replay-only`` measures the embedded replay
alone, and ``--days`` a shorter history of the same habits.

Goals (from the issue): replay and consume lines/s flat within 20% across sizes; ``/report``
and ``/dashboard`` p99 at most 100 ms at 1M customers; ``/customers/{id}`` p99 at most 50 ms
under the dashboard load.

Applied event ids start in ``INSIDERS_SEEN_BUCKETS`` buckets (the service's default unless
``--seen-buckets``), which split as the ids grow.
Each size uses a topic, group and Redis prefix of its own (``scale-<tag>-<N>``,
``s<tag>:``, as long as the service's ``insiders:``), deleted afterwards unless ``--keep``.
Progress goes to stderr, one markdown table to stdout. ``--runs`` repeats replay and consume
(median, and the range).
Starts Kafka and Redis with scripts/services. ``free_port``, ``peak_rss_mib`` and
``percentile`` come from ``benches/api_latency.py``; ``benches/redis_footprint.py`` sums the
same ``key_sizes`` by its own families.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benches"))

from api_latency import free_port, peak_rss_mib, percentile  # noqa: E402

from consumer.ports import Retention  # noqa: E402
from consumer.redis_store import SEEN_BUCKETS  # noqa: E402
from consumer.synthetic import write_history  # noqa: E402

REDIS_URL = os.environ.get("INSIDERS_REDIS_URL", "redis://127.0.0.1:6379/0")
KAFKA = os.environ.get("INSIDERS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
RATE = re.compile(r"in ([\d.]+)s \(([\d,]+) lines/s\)")
REJECTED = re.compile(r"rejected \(([^)]*)\)")


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """One command's run: wall seconds, peak RSS, and the rate it reported itself."""

    seconds: float
    rss_mib: float
    reported: float  # lines/s the command printed (its pipeline only)
    output: str


def run(args: list[str], env: dict[str, str], timeout: float = 6 * 3600) -> Run:
    """Run ``insiders ARGS``; its peak RSS from wait4, its own lines/s from its output."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    reader.join(timeout=10)
    output = "".join(lines)
    if status != 0:
        raise SystemExit(f"insiders {' '.join(args)} failed:\n{output[-3000:]}")
    rates = RATE.findall(output)
    reported = float(rates[-1][1].replace(",", "")) if rates else float("nan")
    return Run(seconds, usage.ru_maxrss / 1024, reported, output)


def count_lines(path: Path) -> int:
    import gzip

    with gzip.open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b"")) - 1


def footprint(client: redis.Redis, prefix: str) -> tuple[int, dict[str, int]]:
    """Bytes under ``prefix`` (``MEMORY USAGE``, all elements sampled), and by key family
    (``c:*`` for the keys ``c:<id>``), largest first."""
    families: dict[str, int] = {}
    for name, used in key_sizes(client, prefix):
        family = name.split(":", 1)[0] + ":*" if ":" in name else name
        families[family] = families.get(family, 0) + used
    return sum(families.values()), dict(sorted(families.items(), key=lambda item: -item[1]))


def key_sizes(client: redis.Redis, prefix: str) -> Iterator[tuple[str, int]]:
    """Each key under ``prefix``, named without it, with its ``MEMORY USAGE`` (all elements
    sampled), pipelined a few thousand keys a round trip (one a key is too slow for
    millions)."""
    batch: list[bytes] = []

    def sizes() -> Iterator[tuple[str, int]]:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, used in zip(batch, pipe.execute(), strict=True):
            yield key.decode()[len(prefix) :], int(used or 0)
        batch.clear()

    for key in client.scan_iter(match=f"{prefix}*", count=10_000):
        batch.append(key)
        if len(batch) >= 2000:
            yield from sizes()
    if batch:
        yield from sizes()


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=10_000):
        batch.append(key)
        if len(batch) >= 5000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def delete_topics(names: list[str], group: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=KAFKA, request_timeout_ms=30_000)
    except KafkaError as exc:
        log(f"topics left behind ({exc}): {', '.join(names)}")
        return
    try:
        existing = set(admin.list_topics())
        admin.delete_topics([name for name in names if name in existing])
        with contextlib.suppress(KafkaError):
            admin.delete_groups([group])
    except KafkaError as exc:
        log(f"could not delete the topics or the group ({exc})")
    finally:
        admin.close()


def time_sweep(prefix: str) -> tuple[float, float, float]:
    """One sweep as the pipeline runs it, timed: seconds to read every customer, to put
    them on a roster (both only at a consumer's first ranking), and to rank them. Not
    committed: the prefix is left as the consumer left it."""
    from consumer.redis_store import RedisFeatureStore
    from segmenter.roster import Roster
    from segmenter.segmentation import Segmenter

    store = RedisFeatureStore.from_url(REDIS_URL, prefix)
    checkpoint = store.model_checkpoint()
    watermark = store.watermark()
    if checkpoint is None or watermark is None:
        raise SystemExit(f"no model checkpoint or watermark under {prefix}")
    started = time.perf_counter()
    customers = [(c.customer_id, c.state, c.status) for c in store.customers()]
    read = time.perf_counter() - started
    started = time.perf_counter()
    roster = Roster.of(customers)
    filled = time.perf_counter() - started
    segmenter = Segmenter.from_checkpoint(checkpoint)
    started = time.perf_counter()
    segmenter.sweep(roster, watermark + 86_400)
    return read, filled, time.perf_counter() - started


@dataclass
class Latency:
    cold_ms: float
    times_ms: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        return percentile(self.times_ms, q) if self.times_ms else float("nan")


def wait_api(client: httpx.Client, api: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if api.poll() is not None:
            raise SystemExit("insiders api exited at start")
        try:
            client.get("/healthz").raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise SystemExit("the API did not answer /healthz") from None
            time.sleep(0.2)


def timed_get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    client.get(path).raise_for_status()
    return (time.perf_counter() - started) * 1000


def measure_api(prefix: str, requests: int, ids: list[str]) -> dict[str, object]:
    port = free_port()
    env = {**os.environ, "INSIDERS_REDIS_URL": REDIS_URL, "INSIDERS_REDIS_PREFIX": prefix}
    api = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    out: dict[str, object] = {}
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            wait_api(client, api)
            for route in ("/report", "/dashboard"):
                latency = Latency(timed_get(client, route))
                for _ in range(requests):
                    latency.times_ms.append(timed_get(client, route))
                out[route] = latency
                log(f"{route}: cold {latency.cold_ms:,.0f} ms, p50 {latency.p(0.5):.1f} ms")
            # GET /customers/{id} while four clients load /dashboard in a loop.
            stop = threading.Event()
            loads = [0] * 4

            def load(k: int) -> None:
                with httpx.Client(base_url=base, timeout=600) as mine:
                    while not stop.is_set():
                        mine.get("/dashboard").raise_for_status()
                        loads[k] += 1

            threads = [threading.Thread(target=load, args=(k,), daemon=True) for k in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            rng = random.Random(7)
            busy = Latency(float("nan"))
            started = time.perf_counter()
            for _ in range(max(requests * 4, 200)):
                busy.times_ms.append(timed_get(client, f"/customers/{rng.choice(ids)}"))
            elapsed = time.perf_counter() - started
            stop.set()
            for thread in threads:
                thread.join(timeout=120)
            out["/customers/{id}"] = busy
            out["dashboards/s"] = sum(loads) / max(elapsed + 1.0, 1e-9)
            log(f"/customers/{{id}} under load: p99 {busy.p(0.99):.1f} ms")
        out["rss"] = peak_rss_mib(api.pid)
    finally:
        api.terminate()
        try:
            api.wait(timeout=30)
        except subprocess.TimeoutExpired:
            api.kill()
            api.wait()
    return out


def known_ids(client: redis.Redis, prefix: str, count: int = 5000) -> list[str]:
    ids: list[str] = []
    for key in client.scan_iter(match=f"{prefix}c:*", count=10_000):
        ids.append(key.decode()[len(prefix) + 2 :])
        if len(ids) >= count:
            break
    return ids


def refusals(output: str) -> str:
    """The rejected lines by reason, from the summary a run prints last (``none``, or
    ``reason=count, ...``)."""
    found = REJECTED.findall(output)
    return found[-1] if found else "?"


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """The median, and the range when there is more than one value."""
    middle = format(statistics.median(values), fmt)
    if len(values) < 2:
        return middle
    return f"{middle} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def fresh_run(kind: str, size: int) -> tuple[str, str, str, str, dict[str, str]]:
    """A topic, consumer group, events topic and Redis prefix of one run's own, and the
    environment that points ``insiders`` at them."""
    tag = uuid.uuid4().hex[:7]
    topic, group = f"{kind}-{tag}-{size}", f"{kind}-{tag}"
    # The prefix as long as the service's own ("insiders:"): a key's name is part of what
    # it costs, so a longer one would overstate the bytes a customer.
    events, prefix = f"{kind}-events-{tag}-{size}", f"{kind[0]}{tag}:"
    env = {
        **os.environ,
        "INSIDERS_REDIS_URL": REDIS_URL,
        "INSIDERS_TOPIC": topic,
        "INSIDERS_EVENTS_TOPIC": events,
        "INSIDERS_GROUP": group,
        "INSIDERS_REDIS_PREFIX": prefix,
    }
    return topic, group, events, prefix, env


def measure_size(size: int, args: argparse.Namespace, client: redis.Redis) -> dict[str, str]:
    days = "" if args.days is None else f"-{args.days}d"
    path = args.work / f"synthetic-{size}-seed{args.seed}{days}.csv.gz"
    row: dict[str, str] = {}
    if not path.exists():
        log(f"generating {size:,} customers into {path}")
        written = write_history(path, size, args.seed, days=args.days)
        row["generate lines/s (.csv.gz, level 1)"] = f"{written.lines / written.seconds:,.0f}"
        lines = written.lines
    else:
        lines = count_lines(path)
        row["generate lines/s (.csv.gz, level 1)"] = "(cached)"
    row["lines"] = f"{lines:,}"
    topic, group, events, prefix, env = fresh_run("scale", size)
    if args.dedupe_days is not None:
        env["INSIDERS_DEDUPE_DAYS"] = str(args.dedupe_days)
    row["dedupe retention, days (`INSIDERS_DEDUPE_DAYS`)"] = env.get(
        "INSIDERS_DEDUPE_DAYS", str(Retention().dedupe_days)
    )
    if args.seen_buckets is not None:
        env["INSIDERS_SEEN_BUCKETS"] = str(args.seen_buckets)
    row["`INSIDERS_SEEN_BUCKETS` (the start; they split as ids come)"] = env.get(
        "INSIDERS_SEEN_BUCKETS", str(SEEN_BUCKETS)
    )
    replays = []
    for k in range(0 if args.no_replay else args.runs):
        log(f"{size:,}: insiders replay ({k + 1}/{args.runs})")
        replays.append(run(["replay", str(path)], env))
    if replays:
        row["replay lines/s (pipeline)"] = spread([r.reported for r in replays])
        row["replay lines/s (whole process)"] = spread([lines / r.seconds for r in replays])
        row["replay peak RSS MiB"] = spread([r.rss_mib for r in replays])
    if args.replay_only:
        return row
    consumes: list[Run] = []
    try:
        for k in range(args.runs):
            if k:  # a fresh prefix for each run: the consumer starts from nothing
                delete_prefix(client, prefix)
            if not consumes:
                log(f"{size:,}: insiders publish to {topic}")
                published = run(["publish", str(path)], env)
                row["publish lines/s"] = f"{lines / published.seconds:,.0f}"
            log(f"{size:,}: insiders consume --exit-at-end ({k + 1}/{args.runs})")
            consumes.append(run(["consume", "--exit-at-end"], env))
        row["consume lines/s (consume phase)"] = spread([r.reported for r in consumes])
        row["consume lines/s (whole process)"] = spread([lines / r.seconds for r in consumes])
        row["consume peak RSS MiB"] = spread([r.rss_mib for r in consumes])
        row["lines refused (dead letters), by reason"] = refusals(consumes[-1].output)
        log(f"{size:,}: Redis footprint of {prefix}")
        total, families = footprint(client, prefix)
        from consumer.redis_store import RedisFeatureStore

        customers = RedisFeatureStore.from_url(REDIS_URL, prefix).customer_count()
        row["customers (with a purchase)"] = f"{customers:,}"
        row["Redis bytes per customer"] = f"{total / max(customers, 1):,.0f}"
        top = list(families.items())[:4]
        row["… of which (bytes per customer)"] = ", ".join(
            f"`{name}` {size_ / max(customers, 1):,.0f}" for name, size_ in top
        )
        log(f"{size:,}: timing sweeps")
        sweeps = [time_sweep(prefix) for _ in range(3)]
        row["sweep: read every customer s"] = spread([s[0] for s in sweeps], ",.2f")
        row["sweep: put them on a roster s"] = spread([s[1] for s in sweeps], ",.2f")
        row["sweep: rank them s"] = spread([s[2] for s in sweeps], ",.2f")
        log(f"{size:,}: insiders api")
        api = measure_api(prefix, args.requests, known_ids(client, prefix))
        for route in ("/report", "/dashboard"):
            latency = api[route]
            assert isinstance(latency, Latency)
            row[f"`{route}` first request ms"] = f"{latency.cold_ms:,.0f}"
            row[f"`{route}` p50 / p99 ms ({args.requests} requests)"] = (
                f"{latency.p(0.5):,.1f} / {latency.p(0.99):,.1f}"
            )
        busy = api["/customers/{id}"]
        assert isinstance(busy, Latency)
        row["`/customers/{id}` p50 / p99 ms, 4 clients on `/dashboard`"] = (
            f"{busy.p(0.5):,.1f} / {busy.p(0.99):,.1f}"
        )
        row["`/dashboard` served per second meanwhile"] = f"{api['dashboards/s']:,.1f}"
        row["API peak RSS MiB"] = f"{api['rss']:,.0f}"
    finally:
        if args.keep:
            log(f"kept {prefix} and topic {topic}")
        else:
            delete_prefix(client, prefix)
            delete_topics([topic, f"{topic}.dlq", events], group)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "insiders-scale",
        help="where generated files are cached (default: insiders-scale in the temp folder)",
    )
    parser.add_argument("--runs", type=int, default=1, help="replay and consume runs per size")
    parser.add_argument("--requests", type=int, default=50, help="per route, after the first")
    parser.add_argument("--keep", action="store_true", help="keep the Redis prefix and topics")
    parser.add_argument(
        "--no-replay",
        action="store_true",
        help="skip insiders replay (its in-memory state grows with the lines within retention)",
    )
    parser.add_argument(
        "--replay-only",
        action="store_true",
        help="only generate and replay: no publish, consume, Redis or API",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=None,
        metavar="D",
        help="days of generated history (default: the generator's, 374)",
    )
    parser.add_argument(
        "--dedupe-days",
        type=int,
        default=None,
        metavar="D",
        help="INSIDERS_DEDUPE_DAYS for replay and consume (default: the environment's, or "
        "the service's 400): applied event ids are kept this many days of event time",
    )
    parser.add_argument(
        "--seen-buckets",
        type=int,
        metavar="N",
        help="INSIDERS_SEEN_BUCKETS for each prefix, the buckets it starts with (default: the "
        "environment's, or the service's 1024)",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(REPO / "scripts" / "services"), "start"], check=True)
    client = redis.Redis.from_url(REDIS_URL)
    columns: list[tuple[int, dict[str, str]]] = []
    for size in args.sizes:
        columns.append((size, measure_size(size, args, client)))
        emit(columns, args)  # after each size: a long run leaves a table behind as it goes
    flat(columns)


def emit(columns: list[tuple[int, dict[str, str]]], args: argparse.Namespace) -> None:
    names = [key for _, row in columns for key in row]
    keys = list(dict.fromkeys(names))
    sizes = " | ".join(f"{size:,} customers" for size, _ in columns)
    print(f"\nseed {args.seed}, {args.runs} run(s) of replay and consume\n", flush=True)
    print(f"| | {sizes} |\n| --- |{' ---: |' * len(columns)}")
    for key in keys:
        cells = " | ".join(row.get(key, "-") for _, row in columns)
        print(f"| {key} | {cells} |", flush=True)


def flat(columns: list[tuple[int, dict[str, str]]]) -> None:
    """Whether replay and consume lines/s stayed within 20% of the smallest size's."""
    if len(columns) < 2:
        return
    parse: Callable[[str], float] = lambda text: float(text.split(" ")[0].replace(",", ""))  # noqa: E731
    for key in ("replay lines/s (pipeline)", "consume lines/s (consume phase)"):
        if any(key not in row for _, row in columns):
            continue
        base = parse(columns[0][1][key])
        ratios = [parse(row[key]) / base for _, row in columns[1:]]
        verdict = "flat within 20%" if all(abs(r - 1) <= 0.2 for r in ratios) else "NOT flat"
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"\n{key}: {shown} of the smallest size's: {verdict}")


if __name__ == "__main__":
    main()
