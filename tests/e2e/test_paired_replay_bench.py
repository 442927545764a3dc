"""The paired replay bench: each small run against the big run's lines over the same seconds."""

from __future__ import annotations

import gzip
import importlib.util
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

GENERATE = [sys.executable, "-m", "consumer.cli", "generate"]
BENCH = [sys.executable, "benches/paired_replay.py"]


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "paired_replay", REPO / "benches" / "paired_replay.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["paired_replay"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def log(*points: tuple[str, str]) -> str:
    """A replay's log with a progress line at each (clock, lines), and other lines between."""
    text = ["2026-12-01 10:00:00,000 INFO insiders: checking the file is in time order"]
    for clock, lines in points:
        text.append(
            f"2026-12-01 {clock},000 INFO insiders: progress: {lines} of 10,000 lines "
            f"(10%) in 00:20, 250 lines/s, 00:40 left, insiders=3"
        )
    return "\n".join(text)


def stamp(clock: str) -> float:
    return datetime.fromisoformat(f"2026-12-01 {clock}").timestamp()


def test_a_pair_is_both_runs_over_the_small_runs_window_worked_by_hand():
    paired = bench()
    small = paired.parse_progress(
        log(("10:00:10", "0"), ("10:00:20", "2,000"), ("10:00:30", "4,500"), ("10:00:40", "7,000"))
    )
    assert small[1] == (stamp("10:00:20"), 2000)
    big = paired.parse_progress(
        log(("10:00:00", "1,000"), ("10:00:30", "7,000"), ("10:01:00", "10,000"))
    )

    made = paired.pair(big, small, every=5)
    # The small run's window starts past its first read (its first line above 0): 10:00:20 to
    # 10:00:40, 5,000 lines in 20 s. The big run at 10:00:20 is 2/3 of the way from 1,000 to
    # 7,000, 5,000; at 10:00:40 a third of the way from 7,000 to 10,000, 8,000: 3,000 in 20 s.
    assert (made.start, made.end) == (stamp("10:00:20"), stamp("10:00:40"))
    assert made.small == pytest.approx(250) and made.big == pytest.approx(150)
    assert made.ratio == pytest.approx(0.6)

    ended = big[:2]  # the big run ended at 10:00:30: the window is cut to 10:00:20-10:00:30
    assert paired.pair(ended, small, every=5) is None  # 10 s, under three intervals of 5 s
    cut = paired.pair(ended, small, every=2)
    assert (cut.start, cut.end) == (stamp("10:00:20"), stamp("10:00:30"))
    assert cut.small == pytest.approx(250) and cut.big == pytest.approx(200)


def test_the_bench_pairs_small_runs_inside_the_big_one(tmp_path: Path):
    files = {}
    # About 378,000 and 1,218,000 lines: a small run lasts more than the three progress
    # intervals a pair needs even on a fast day (6 s at 60,000 lines/s), and several fit
    # inside the big one. 1,000 customers ran in under three seconds on a fast day: no pair.
    for customers in (3000, 10000):
        files[customers] = tmp_path / f"g{customers}.csv.gz"
        subprocess.run(
            [*GENERATE, str(files[customers]), "--customers", str(customers), "--seed", "1"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
    logs = tmp_path / "logs"
    done = subprocess.run(
        [*BENCH, str(files[10000]), str(files[3000]), "--every", "1", "--logs", str(logs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if re.match(r"\| \d+ \|", line)]
    assert rows, done.stdout
    with gzip.open(files[10000], "rt") as lines:
        big_lines = sum(1 for _ in lines) - 1  # the header
    summary = re.search(r"big run: ([\d,]+) lines", done.stdout)
    assert summary is not None and int(summary[1].replace(",", "")) == big_lines
    big = re.findall(
        r"^\S+ (\d\d:\d\d:\d\d),\d+ INFO insiders: progress: ", (logs / "big.log").read_text(), re.M
    )
    for row in rows:  # each window lies within the big run's progress lines
        start, end = row.split("|")[2].strip().split("-")
        assert big[0] <= start < end <= big[-1]
    assert len(list(logs.glob("small-*.log"))) >= len(rows)
