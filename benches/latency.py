"""Latency from a produced line to its effect, live, at steady input rates: p50/p99 per rate.

    .venv/bin/python benches/latency.py [--rates 1,10,100,5000] [--seconds 20]
                                        [--probe-every 1.0] [--timeout 10]

Runs the real `insiders consume` (live mode: no --exit-at-end, default event clock) and the
real `insiders api` against Kafka and Redis (INSIDERS_KAFKA_BOOTSTRAP, INSIDERS_REDIS_URL;
127.0.0.1:9092 and :6379 by default), on a topic, group, events topic and Redis prefix of
this run's own. First `insiders publish` backfills the shipped sample (377 customers), and
the bench waits for the consumer to apply it. Then, for each rate:

  background  lines at that rate for the sample's customers (copies of sample lines with
              new invoice numbers and event ids, dated at the sample's last invoice time,
              so the event clock stands still), produced as `insiders publish` does;
  probes      one line every --probe-every seconds for a NEW customer: one purchase of
              1,000 units at £500. It makes the customer visible, and it is big enough to
              put them in the Insiders at once (checked on the sample: margin ~1, entry 0.3).
  visible     from the producer's acknowledgement of the probe to the first 200 of
              GET /customers/{id} (polled every 15 ms, backing off to 5% of the wait so
              far once past 1 s, at most 200 ms; a thread per probe);
  event       from the same acknowledgement to its `insider.entered` on the events topic.

A probe not seen within --timeout seconds of its acknowledgement counts as late: its latency
is "> timeout" and ranks above every measured one. The background runs on until every probe
of the rate is seen or late, then stops, and the bench waits for the consumer to catch up
before the next rate. p99 of fewer than 100 probes is their maximum (nearest rank).
Peak memory is each process's max RSS. Everything it created is removed at the end
(processes stopped with SIGINT, Redis keys, topics, consumer group); subprocess logs are
kept, and named, only if something failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumer.files import read_records  # noqa: E402
from consumer.kafka_io import (  # noqa: E402
    KafkaPublisher,
    dlq_topic,
    ensure_topics,
    probe,
    producer,
)

SAMPLE = REPO / "consumer" / "data" / "online_retail_sample.csv.gz"
KAFKA = os.environ.get("INSIDERS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("INSIDERS_REDIS_URL", "redis://127.0.0.1:6379/0")
PROBE_QUANTITY = 1000
PROBE_PRICE = 500.0
STOP_WAIT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest rank; a late probe is +inf, so it ranks above every measured one."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float, timeout: float) -> str:
    return f"> {timeout * 1000:,.0f}" if value == float("inf") else f"{value * 1000:,.0f}"


@dataclass
class Probe:
    customer_id: str
    sent: float
    acked: float | None = None
    visible: float | None = None
    event: float | None = None


@dataclass
class RateResult:
    rate: float
    probes: list[Probe]
    achieved: float  # background lines/s over the probing window
    timeout: float
    caught_up: float  # seconds for the consumer to apply everything after the background

    def latencies(self, which: str) -> list[float]:
        out = []
        for p in self.probes:
            seen = getattr(p, which)
            if p.acked is None or seen is None or seen - p.acked > self.timeout:
                out.append(float("inf"))
            else:
                out.append(max(seen - p.acked, 0.0))
        return out


class Sample:
    """The shipped sample's customers and lines, as templates for background traffic."""

    def __init__(self, path: Path) -> None:
        self.lines: list[dict[str, Any]] = []
        self.count = 0
        last = ""
        for record in read_records(path):
            self.count += 1
            last = max(last, str(record["invoice_date"]))
            price, quantity = record["unit_price"], record["quantity"]
            if (
                record["customer_id"]
                and isinstance(quantity, int)
                and quantity > 0
                and isinstance(price, float)
                and price > 0
                and not str(record["invoice_no"]).startswith("C")
            ):
                self.lines.append(record)
        self.last_date = last  # event time stands still at the sample's end


class Background(threading.Thread):
    """Lines at ``rate``/s for sample customers, through the publisher `insiders publish` uses."""

    def __init__(self, sample: Sample, topic: str, rate: float, tag: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.sample, self.rate, self.tag = sample, rate, tag
        self.publisher = KafkaPublisher(KAFKA, topic)
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _run(self) -> None:
        start = time.perf_counter()
        lines = self.sample.lines
        while not self.stopping.is_set():
            ahead = start + self.sent / self.rate - time.perf_counter()
            if ahead > 0:
                self.stopping.wait(min(ahead, 0.05))
                continue
            template = self.rng.choice(lines)
            invoice = f"B{self.tag}-{self.sent}"  # a one-line invoice: event ids are unique
            self.publisher.send(
                {
                    **template,
                    "event_id": f"{invoice}:0",
                    "invoice_no": invoice,
                    "invoice_date": self.sample.last_date,
                }
            )
            self.sent += 1
        self.publisher.flush()
        self.publisher.close()


class EventWatcher(threading.Thread):
    """Notes when each probe customer's `insider.entered` arrives on the events topic."""

    def __init__(self, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            bootstrap_servers=KAFKA, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        parts = self.consumer.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.probes: dict[str, Probe] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def watch(self, probe: Probe) -> None:
        with self.lock:
            self.probes[probe.customer_id] = probe

    def run(self) -> None:
        while not self.stopping.is_set():
            polled = self.consumer.poll(timeout_ms=100)
            now = time.perf_counter()
            for records in polled.values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event.get("type") != "insider.entered":
                        continue
                    with self.lock:
                        probe = self.probes.get(str(event.get("customer_id")))
                    if probe is not None and probe.event is None:
                        probe.event = now
        self.consumer.close()


def poll_visible(client: httpx.Client, probe: Probe, deadline: float) -> None:
    """GET /customers/{id} until it answers 200 or ``deadline`` passes (one thread per probe)."""
    while True:
        try:
            response = client.get(f"/customers/{probe.customer_id}")
            now = time.perf_counter()
            if response.status_code == 200:
                probe.visible = now
                return
        except httpx.HTTPError:
            now = time.perf_counter()
        if now > deadline:
            return
        waited = now - probe.sent
        time.sleep(0.015 if waited < 1.0 else min(0.2, 0.05 * waited))


class Run:
    """The processes and names of one bench run, and their cleanup."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.topic = f"bench-lat-{self.tag}"
        self.group = f"bench-lat-{self.tag}"
        self.events_topic = f"bench-lat-events-{self.tag}"
        self.prefix = f"bench:lat-{self.tag}:"
        self.port = free_port()
        self.logs = Path(tempfile.mkdtemp(prefix="insiders-latency-"))
        self.env = {
            **os.environ,
            "INSIDERS_KAFKA_BOOTSTRAP": KAFKA,
            "INSIDERS_REDIS_URL": REDIS_URL,
            "INSIDERS_TOPIC": self.topic,
            "INSIDERS_GROUP": self.group,
            "INSIDERS_EVENTS_TOPIC": self.events_topic,
            "INSIDERS_REDIS_PREFIX": self.prefix,
            # The CLI of this checkout, whatever the venv's editable install points at.
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.rss: dict[str, float] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
        log.close()
        self.processes[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise SystemExit(
                    f"`insiders {name}` exited with status {proc.returncode}: {self.log_tail(name)}"
                )

    def log_tail(self, name: str) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-15:])

    def applied_offset(self) -> int:
        value = self.redis.hget(self.prefix + "offsets", f"{self.topic}:0")
        return -1 if value is None else int(value)

    def end_offset(self) -> int:
        consumer = KafkaConsumer(bootstrap_servers=KAFKA)
        try:
            tp = TopicPartition(self.topic, 0)
            return int(consumer.end_offsets([tp])[tp])
        finally:
            consumer.close()

    def wait_applied(self, timeout: float) -> float:
        """Seconds until Redis holds the topic's last offset (the consumer has caught up)."""
        started = time.perf_counter()
        last = self.end_offset() - 1
        while self.applied_offset() < last:
            self.check_alive()
            if time.perf_counter() - started > timeout:
                raise SystemExit(
                    f"the consumer has not caught up after {timeout:.0f}s "
                    f"(applied {self.applied_offset()}, end {last}): {self.log_tail('consume')}"
                )
            time.sleep(0.05)
        return time.perf_counter() - started

    def stop(self) -> None:
        for name, proc in self.processes.items():
            self.rss[name] = peak_rss_mib(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for name, proc in self.processes.items():
            try:
                proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                print(
                    f"`insiders {name}` ignored SIGINT for {STOP_WAIT:.0f}s; killed",
                    file=sys.stderr,
                )
                proc.kill()
                proc.wait()

    def clean(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            self.redis.unlink(*keys[i : i + 500])
        try:
            admin = KafkaAdminClient(bootstrap_servers=KAFKA, request_timeout_ms=15_000)
        except KafkaError as exc:
            print(
                f"topics left behind ({exc}): {self.topic}*, {self.events_topic}", file=sys.stderr
            )
            return
        try:
            existing = set(admin.list_topics())
            names = [self.topic, dlq_topic(self.topic), self.events_topic]
            admin.delete_topics([t for t in names if t in existing])
            with contextlib.suppress(KafkaError):
                admin.delete_groups([self.group])
        except KafkaError as exc:
            print(f"could not delete the topics or group ({exc})", file=sys.stderr)
        finally:
            admin.close()


def wait_api(run: Run, client: httpx.Client, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.get("/healthz").raise_for_status()
            return
        except httpx.HTTPError:
            run.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"the API did not start: {run.log_tail('api')}") from None
            time.sleep(0.2)


def measure_rate(
    run: Run,
    sample: Sample,
    rate: float,
    args: argparse.Namespace,
    watcher: EventWatcher,
    client: httpx.Client,
    index: int,
) -> RateResult:
    background = Background(sample, run.topic, rate, f"{run.tag}r{index}", seed=index)
    probe_producer = producer(KAFKA, linger_ms=0)
    probes: list[Probe] = []
    pollers: list[threading.Thread] = []
    background.start()
    try:
        time.sleep(1.0)  # let the rate settle before the first probe
        count = max(1, round(args.seconds / args.probe_every))
        window_start, sent_before = time.perf_counter(), background.sent
        for k in range(count):
            due = window_start + k * args.probe_every
            time.sleep(max(0.0, due - time.perf_counter()))
            cid = f"lat{run.tag}r{index}p{k}"
            invoice = f"P{run.tag}r{index}p{k}"
            record = {
                "event_id": f"{invoice}:0",
                "invoice_no": invoice,
                "stock_code": "85123A",
                "description": "WHITE HANGING HEART T-LIGHT HOLDER",
                "quantity": PROBE_QUANTITY,
                "invoice_date": sample.last_date,
                "unit_price": PROBE_PRICE,
                "customer_id": cid,
                "country": "United Kingdom",
            }
            p = Probe(cid, time.perf_counter())
            watcher.watch(p)
            future = probe_producer.send(run.topic, key=cid.encode(), value=orjson.dumps(record))

            def acked(_: Any, p: Probe = p) -> None:
                p.acked = time.perf_counter()

            future.add_callback(acked)
            future.get(timeout=30)
            probes.append(p)
            t = threading.Thread(
                target=poll_visible, args=(client, p, p.sent + args.timeout + 0.5), daemon=True
            )
            t.start()
            pollers.append(t)
            if background.error is not None:
                raise background.error
        window = time.perf_counter() - window_start
        achieved = (background.sent - sent_before) / max(window, 1e-9)
        # The background goes on until each probe is seen or late: a steady stream is what
        # a line waits in, not the quiet after the last one.
        for p in probes:
            while p.event is None and time.perf_counter() < p.sent + args.timeout + 0.5:
                time.sleep(0.02)
        for t in pollers:
            t.join()
    finally:
        background.stopping.set()
        background.join()
        probe_producer.close()
    if background.error is not None:
        raise background.error
    caught_up = run.wait_applied(timeout=300)
    run.check_alive()
    return RateResult(rate, probes, achieved, args.timeout, caught_up)


def print_table(
    results: list[RateResult], run: Run, sample: Sample, args: argparse.Namespace
) -> None:
    print(
        f"\nlive `insiders consume` + `insiders api`, after a backfill of {sample.count:,} "
        f"lines ({SAMPLE.name}); a probe every {args.probe_every:g}s for {args.seconds:g}s "
        f"per rate; late = not seen within {args.timeout:g}s of its ack\n"
    )
    print(
        "| rate lines/s | probes | visible p50 ms | visible p99 ms | event p50 ms "
        "| event p99 ms | late (visible/event) | lines/s achieved | catch-up s |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        vis, ev = r.latencies("visible"), r.latencies("event")
        late_v = sum(1 for v in vis if v == float("inf"))
        late_e = sum(1 for v in ev if v == float("inf"))
        print(
            f"| {r.rate:,g} | {len(r.probes)} | {ms(percentile(vis, 0.5), r.timeout)} "
            f"| {ms(percentile(vis, 0.99), r.timeout)} | {ms(percentile(ev, 0.5), r.timeout)} "
            f"| {ms(percentile(ev, 0.99), r.timeout)} | {late_v}/{late_e} "
            f"| {r.achieved:,.0f} | {r.caught_up:.1f} |"
        )
    measured = [(r.rate, v) for r in results for v in r.latencies("visible") if v != float("inf")]
    if measured:
        print(
            "\nvisible, measured probes only, min-max ms by rate: "
            + "; ".join(
                f"{r.rate:,g}: {min(vs) * 1000:,.0f}-{max(vs) * 1000:,.0f}"
                for r in results
                if (vs := [v for v in r.latencies("visible") if v != float("inf")])
            )
        )
    rss = ", ".join(
        f"{name} {mib:.0f} MiB" if mib == mib else f"{name} - (had exited)"
        for name, mib in run.rss.items()
    )
    print(f"peak RSS: {rss}")


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,10,100") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive lines per second")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="See the module docstring (head of benches/latency.py) for the method.",
    )
    parser.add_argument(
        "--rates",
        type=parse_rates,
        default=[1.0, 10.0, 100.0, 5000.0],
        help="background lines/s, comma-separated (default 1,10,100,5000)",
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="probing window per rate (default 20)"
    )
    parser.add_argument(
        "--probe-every", type=float, default=1.0, help="seconds between probes (default 1)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="a probe not seen this many seconds after its ack is late (default 10)",
    )
    args = parser.parse_args()
    try:
        probe(KAFKA)
        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as exc:
        raise SystemExit(f"{exc}; start the services with `scripts/services start`") from None

    sample = Sample(SAMPLE)
    run = Run()
    ok = False
    failure: str | None = None
    results: list[RateResult] = []
    watcher: EventWatcher | None = None
    try:
        ensure_topics(KAFKA, [run.topic, dlq_topic(run.topic), run.events_topic])
        started = time.perf_counter()
        publish = subprocess.run(
            [sys.executable, "-m", "consumer.cli", "publish", str(SAMPLE)],
            env=run.env,
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        if publish.returncode != 0:
            raise SystemExit(f"`insiders publish` failed: {publish.stderr.decode()[-2000:]}")
        watcher = EventWatcher(run.events_topic)
        watcher.start()
        run.start("consume", "consume")
        run.wait_applied(timeout=300)
        print(
            f"backfilled {sample.count:,} lines in {time.perf_counter() - started:.1f}s "
            f"(topic {run.topic}, prefix {run.prefix})",
            file=sys.stderr,
        )
        run.start("api", "api", "--port", str(run.port))
        with httpx.Client(base_url=f"http://127.0.0.1:{run.port}", timeout=10) as client:
            wait_api(run, client)
            for index, rate in enumerate(args.rates):
                try:
                    result = measure_rate(run, sample, rate, args, watcher, client, index)
                except SystemExit as exc:  # the rates done so far still make a table
                    failure = f"rate {rate:,g}/s: {exc}"
                    break
                results.append(result)
                vis = result.latencies("visible")
                print(
                    f"rate {rate:,g}/s: {len(result.probes)} probes, visible p50 "
                    f"{ms(percentile(vis, 0.5), args.timeout)} ms",
                    file=sys.stderr,
                )
        ok = failure is None
    finally:
        run.stop()
        if watcher is not None:
            watcher.stopping.set()
            watcher.join(timeout=5)
        run.clean()
        if ok:
            shutil.rmtree(run.logs, ignore_errors=True)
        else:
            print(f"logs of the consumer and the API: {run.logs}", file=sys.stderr)
    if results:
        print_table(results, run, sample, args)
    if failure is not None:
        raise SystemExit(f"stopped early at {failure}")


if __name__ == "__main__":
    main()
