"""Python's garbage collector, set for a growing state: fewer walks, and cycles still freed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SAMPLE

TUNED_LINE = "garbage collector:"


def python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (the collector is process-wide): its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def replay(young: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INSIDERS_GC_YOUNG"}
    if young is not None:
        env["INSIDERS_GC_YOUNG"] = young
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", "-v", "replay", str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )


def cycles_left(setup: str) -> str:
    """After ``setup``: 1,000 pairs of objects that point at each other (only the cyclic
    collector frees them), then 200,000 new lists, four young collections' worth at 50,000,
    kept alive meanwhile. Prints the pairs alive before the lists and after, and the young
    threshold and whether anything is frozen."""
    return python(
        f"""
import gc, weakref
{setup}
class Node: pass
refs = []
for _ in range(1000):
    a, b = Node(), Node()
    a.other, b.other = b, a
    refs.append(weakref.ref(a))
del a, b
before = sum(r() is not None for r in refs)
junk = [[] for _ in range(200_000)]
after = sum(r() is not None for r in refs)
print(before, after, gc.get_threshold()[0], gc.get_freeze_count() > 0)
"""
    )


def test_cycles_made_after_tuning_are_still_freed_without_an_explicit_collection():
    setup = "from consumer.gc_tuning import tune_collector; tune_collector(50_000)"
    assert cycles_left(setup) == "1000 0 50000 True"


def test_with_the_collector_off_the_same_cycles_would_stay():
    # The check above can fail: without young collections the pairs outlive the lists.
    assert cycles_left("gc.disable()") == "1000 1000 700 False"


def test_a_replay_tunes_the_collector_by_default_and_the_setting_turns_it_off():
    tuned = replay(None)
    assert tuned.returncode == 0, tuned.stderr
    said = [line for line in tuned.stderr.splitlines() if TUNED_LINE in line]
    assert len(said) == 1, said
    assert said[0].endswith("thresholds (50000, 10, 10)"), said[0]

    default = replay("0")
    assert default.returncode == 0, default.stderr
    assert TUNED_LINE not in default.stderr
    # The same state either way: the collector frees memory, it changes no result.
    assert (
        default.stdout.splitlines()[-1].split(": ")[-1]
        == (tuned.stdout.splitlines()[-1].split(": ")[-1])
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-1", "Input should be greater than or equal to 0"),
        ("99999999999999999999", "Input should be less than or equal to 2147483647"),
    ],
)
def test_a_young_threshold_out_of_range_is_refused_in_one_line(value, problem):
    done = replay(value)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"insiders: error: setting INSIDERS_GC_YOUNG={value!r}: {problem}"
    ]
