"""Replay lines/s of a big history against a small one, on a machine whose speed drifts.

    .venv/bin/python benches/paired_replay.py BIG SMALL [--every 5] [--logs DIR]

Two replays run one after the other compare badly here: the same replay of the same file
ran a third faster at the end of a two-hour sitting than at its start (README, "The replay
at a million customers, one sitting"). So this bench runs them at the same time: ``insiders
replay BIG`` once and, while it runs, ``insiders replay SMALL`` again and again, each in a
process of its own (one core each on a two-core machine), each logging its progress every
``--every`` seconds (``INSIDERS_PROGRESS_EVERY``: exact line counts, stamped with the wall
clock). Each small run makes a pair: its window is from its first progress line past zero
lines (after its first read, which checks the file's time order) to its last; the small
run's rate is its lines over that window, and the big run's is its own lines over the same
window, read off its progress lines by linear interpolation. A window the big run's
progress lines do not cover (its first read, its end) is cut to what they do cover, and
dropped if that is less than three progress intervals. Whatever slows the machine in a
window slows both runs alike, so the ratio of a pair says how the big history's rate
compares with the small one's, whatever the hour.

Small runs start once the big one has passed its first read, and stop when it ends (the run
under way then is waited for, and counts only where the two overlap). Prints a line to
stderr as each pair is made, then one markdown table (a row a pair) and a summary: the
median ratio with its range, the big run's whole rate as ``insiders replay`` reports it, and
the peak RSS of each. Ctrl-C or TERM stops both replays and prints the pairs made so far.
``--logs DIR`` keeps every replay's log there (``big.log``, ``small-1.log``, ...), to check
the pairs by hand; else they go to a temporary directory.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]

# A progress line of the replay's log (consumer/progress.py, logging's default asctime):
# "2026-12-01 11:40:01,123 INFO insiders: progress: 1,234,000 of 9,000,000 lines (14%) ..."
PROGRESS = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO insiders: progress: "
    r"(?:.*?: )?([\d,]+)(?: of [\d,]+)? lines"
)
SUMMARY = re.compile(r"^replayed ([\d,]+) lines in ([\d.]+)s \(([\d,]+) lines/s\)")

Points = list[tuple[float, int]]  # (wall-clock seconds, lines so far), in time order


def parse_progress(text: str) -> Points:
    """The (time, lines) of each progress line of a replay's log."""
    points = []
    for line in text.splitlines():
        match = PROGRESS.match(line)
        if match:
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            points.append((stamp, int(match[2].replace(",", ""))))
    return points


def lines_at(points: Points, at: float) -> float:
    """Lines done at time ``at``, interpolated between the progress lines around it."""
    for (t0, n0), (t1, n1) in itertools.pairwise(points):
        if t0 <= at <= t1:
            return n0 + (n1 - n0) * (at - t0) / (t1 - t0) if t1 > t0 else float(n1)
    raise ValueError(f"{at} is outside the progress lines ({points[0][0]}-{points[-1][0]})")


@dataclass(frozen=True)
class Pair:
    start: float
    end: float
    small: float  # lines/s of the small run over [start, end]
    big: float  # lines/s of the big run over the same window

    @property
    def ratio(self) -> float:
        return self.big / self.small


def pair(big: Points, small: Points, every: float) -> Pair | None:
    """The small run's window (past its first read) and both rates over it, or None."""
    running = [point for point in small if point[1] > 0]
    if len(running) < 2 or len(big) < 2:
        return None
    start, end = max(running[0][0], big[0][0]), min(running[-1][0], big[-1][0])
    if end - start < 3 * every:
        return None
    seconds = end - start
    return Pair(
        start,
        end,
        (lines_at(running, end) - lines_at(running, start)) / seconds,
        (lines_at(big, end) - lines_at(big, start)) / seconds,
    )


def replay(path: Path, every: float, log: IO[str], out: IO[str] | int) -> subprocess.Popen[str]:
    env = {**os.environ, "INSIDERS_PROGRESS_EVERY": str(every)}
    return subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "replay", str(path)],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=log,
        text=True,
    )


def reap(process: subprocess.Popen[str], wait: bool = True) -> float | None:
    """Its peak RSS in MiB (``wait4``'s ``ru_maxrss``) once ``process`` has ended, else None
    (``wait=False`` does not wait)."""
    pid, status, usage = os.wait4(process.pid, 0 if wait else os.WNOHANG)
    if pid == 0:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024


def clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


def table(pairs: Sequence[Pair]) -> list[str]:
    rows = [
        "| pair | window | seconds | small lines/s | big lines/s | big / small |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for number, made in enumerate(pairs, 1):
        rows.append(
            f"| {number} | {clock(made.start)}-{clock(made.end)} | {made.end - made.start:.0f} "
            f"| {made.small:,.0f} | {made.big:,.0f} | {made.ratio:.3f} |"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Replay lines/s of a big history against a small one replayed beside it "
        "again and again (each small run and the big one over the same seconds)."
    )
    parser.add_argument("big", type=Path, help="the big history (replayed once)")
    parser.add_argument("small", type=Path, help="the small history (replayed in a loop)")
    parser.add_argument(
        "--every",
        type=float,
        default=5.0,
        help="seconds between progress lines of each replay (default 5)",
    )
    parser.add_argument(
        "--logs", type=Path, help="keep each replay's log in this directory (created)"
    )
    args = parser.parse_args(argv)
    for path in (args.big, args.small):
        if not path.is_file():
            parser.exit(2, f"paired_replay: error: no such file: {path}\n")
    if args.every <= 0:
        parser.exit(2, f"paired_replay: error: --every must be above 0, not {args.every}\n")
    for stop in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(stop, signal.default_int_handler)

    pairs: list[Pair] = []
    small_peaks: list[float] = []
    big_peak: float | None = None
    summary = None
    with tempfile.TemporaryDirectory(prefix="paired-replay-") as temporary:
        work = args.logs or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        big_log, big_out = work / "big.log", work / "big.out"
        with big_log.open("w") as log, big_out.open("w") as out:
            big = replay(args.big, args.every, log, out)
        small: subprocess.Popen[str] | None = None
        try:
            print(f"replaying {args.big.name} (pid {big.pid})", file=sys.stderr)
            while (big_peak := reap(big, wait=False)) is None and not any(
                n > 0 for _, n in parse_progress(big_log.read_text())
            ):
                time.sleep(1)
            while big_peak is None:
                small_log = work / f"small-{len(small_peaks) + 1}.log"
                with small_log.open("w") as log:
                    small = replay(args.small, args.every, log, subprocess.DEVNULL)
                small_peaks.append(reap(small) or 0.0)
                small = None
                big_peak = reap(big, wait=False)
                made = pair(
                    parse_progress(big_log.read_text()),
                    parse_progress(small_log.read_text()),
                    args.every,
                )
                if made is None:
                    print("a small run too short to pair, or past the big one", file=sys.stderr)
                    continue
                pairs.append(made)
                print(
                    f"pair {len(pairs)} at {clock(made.start)}: small {made.small:,.0f} "
                    f"lines/s, big {made.big:,.0f} ({made.ratio:.3f})",
                    file=sys.stderr,
                )
            summary = next(filter(None, map(SUMMARY.match, big_out.read_text().splitlines())), None)
            if big.returncode != 0:
                tail = big_log.read_text().splitlines()[-1:]
                print(f"the big replay exited {big.returncode}: {' '.join(tail)}", file=sys.stderr)
        except KeyboardInterrupt:
            print("stopped: the pairs made so far", file=sys.stderr)
            for child in (small, big):
                if child is not None and child.returncode is None:
                    child.terminate()
                    reap(child)

    print(
        f"\n{args.big.name} (big) beside {args.small.name} (small), replayed by `insiders replay`\n"
    )
    print("\n".join(table(pairs)))
    if pairs:
        ratios = [made.ratio for made in pairs]
        print(
            f"\nbig / small: median {statistics.median(ratios):.3f} "
            f"({min(ratios):.3f}-{max(ratios):.3f}) over {len(pairs)} pairs"
        )
    if summary is not None:
        print(
            f"big run: {summary[1]} lines in {float(summary[2]):,.0f} s, {summary[3]} lines/s "
            f"(its first read included), peak RSS {big_peak or 0:,.0f} MiB"
        )
    if small_peaks:
        print(f"small runs: peak RSS {statistics.median(small_peaks):,.0f} MiB (median)")
    return 0 if pairs and summary is not None else 1


if __name__ == "__main__":
    sys.exit(main())
