"""Throughput of the pipeline on the full Online Retail file: a table of lines/s and memory.

    .venv/bin/python benches/throughput.py [--runs 3] [--data PATH] [--modes embedded consume]

Modes, each run --runs times (median reported, as the machine is shared and noisy):
  embedded   `insiders replay`: file source, in-memory store, no servers
  publish    `insiders publish` into a fresh topic
  consume    `insiders consume --exit-at-end` of that topic into a fresh Redis prefix
  end-to-end publish and a live consumer running at once; clock stops when Redis holds the
             last offset (what a user waits for from the first line sent to the last applied)
Starts Kafka and Redis with scripts/services. Peak memory is the process's max RSS.
``--modes`` runs some of them (consume publishes its topic first, timed as publish).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
MODES = ("embedded", "publish", "consume", "end-to-end")
REDIS_URL = os.environ.get("INSIDERS_REDIS_URL", "redis://127.0.0.1:6379/0")


def insiders(*args: str) -> list[str]:
    return [sys.executable, "-m", "consumer.cli", *args]


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd`` under /usr/bin/time-like accounting; returns (seconds, peak RSS MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        assert proc.stderr is not None  # stderr=PIPE
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def count_lines(path: Path) -> int:
    import gzip

    with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
        return sum(1 for _ in f) - 1


def end_to_end(env: dict[str, str], data: Path, lines: int, client: redis.Redis) -> float:
    topic = env["INSIDERS_TOPIC"]
    prefix = env["INSIDERS_REDIS_PREFIX"]
    consumer = subprocess.Popen(
        insiders("consume", "--group", f"e2e-{uuid.uuid4().hex[:6]}"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)  # let it join the group before the first line goes out
    started = time.perf_counter()
    publisher = subprocess.Popen(
        insiders("publish", str(data)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = lines - 1
    while True:
        done = client.hget(prefix + "offsets", f"{topic}:0")
        if done is not None and int(done) >= last:
            break
        if consumer.poll() is not None:
            raise SystemExit("the consumer died")
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    publisher.wait()
    consumer.terminate()
    consumer.wait(timeout=60)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="modes to run (default all)",
    )
    args = parser.parse_args()
    modes = set(args.modes) | ({"publish"} if "consume" in args.modes else set())
    if not args.data.exists():
        raise SystemExit(f"{args.data} is absent: pass --data PATH to the full Online Retail file")
    subprocess.run([str(REPO / "scripts" / "services"), "start"], check=True)
    client = redis.Redis.from_url(REDIS_URL)
    lines = count_lines(args.data)
    results: dict[str, list[tuple[float, float]]] = {}
    for run in range(args.runs):
        tag = uuid.uuid4().hex[:8]
        env = {
            **os.environ,
            "INSIDERS_REDIS_URL": REDIS_URL,
            "INSIDERS_TOPIC": f"bench-{tag}",
            "INSIDERS_EVENTS_TOPIC": f"bench-events-{tag}",
            "INSIDERS_REDIS_PREFIX": f"bench:{tag}:",
        }
        if "embedded" in modes:
            replay = insiders("replay", str(args.data))
            results.setdefault("embedded", []).append(timed(replay, env))
        if "publish" in modes:
            publish = insiders("publish", str(args.data))
            results.setdefault("publish", []).append(timed(publish, env))
        if "consume" in modes:
            consume = insiders("consume", "--group", "bench", "--exit-at-end")
            results.setdefault("consume", []).append(timed(consume, env))
        for key in client.scan_iter(match=f"bench:{tag}:*", count=1000):
            client.unlink(key)
        if "end-to-end" not in modes:
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
            continue
        e2e_env = {
            **env,
            "INSIDERS_TOPIC": f"bench-e2e-{tag}",
            "INSIDERS_REDIS_PREFIX": f"bench:e2e-{tag}:",
        }
        results.setdefault("end-to-end", []).append(
            (end_to_end(e2e_env, args.data, lines, client), float("nan"))
        )
        for key in client.scan_iter(match=f"bench:e2e-{tag}:*", count=1000):
            client.unlink(key)
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    print(f"\n{lines:,} lines of {args.data.name}, {args.runs} runs, median (min-max)\n")
    print(f"{'mode':<12} {'lines/s':>10} {'range':>19} {'seconds':>8} {'peak RSS MiB':>13}")
    for mode, runs in results.items():
        rates = [lines / secs for secs, _ in runs]
        secs = statistics.median(s for s, _ in runs)
        rss = statistics.median(r for _, r in runs)
        rss_text = "-" if rss != rss else f"{rss:.0f}"
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
        rate = statistics.median(rates)
        print(f"{mode:<12} {rate:>10,.0f} {spread:>19} {secs:>8.1f} {rss_text:>13}")


if __name__ == "__main__":
    main()
