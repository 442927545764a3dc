"""`insiders evaluate` on the shipped sample: the Size line, and cuts it cannot evaluate.

These run the command as a user would (a subprocess), on the sample that ships with the
code, so they run where the full Online Retail file is absent (unlike test_evaluate.py).
Expected counts come from pandas on the same file (tests/reference.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import SAMPLE
from tests.reference import load_lines, spec_v1

CUT = "2011-09-08"  # the cut; the sample knows some 270 customers by then


def evaluate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    settings = {k: v for k, v in os.environ.items() if not k.startswith("INSIDERS_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", "evaluate", str(SAMPLE), "--draws", "50", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**settings, **env},
    )


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        # The sample runs from 2010-12-01 to 2011-12-09.
        ("2010-11-01", "no purchase in online_retail_sample.csv.gz is dated before the cut"),
        ("2011-12-31", "the cut 2011-12-31 is at or after the last purchase"),
        # A week in: a handful of customers, a share of them means nothing.
        ("2010-12-05", "customers are known at the cut 2010-12-05"),
        # Three months in: enough customers, but the model has not left its warm-up.
        ("2011-03-01", "the model is still warming up at the cut 2011-03-01"),
    ],
)
def test_a_cut_that_cannot_be_evaluated_is_a_one_line_error(cut, message):
    done = evaluate("--cut", cut)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("insiders: error: ") and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(("target", "band"), [("0.12", "0.015"), ("0.2", "0.02")])
def test_the_size_at_the_cut_is_the_target_share(target, band):
    """The Size line gives the Insiders' share of the customers known at the cut; it is
    the target (whatever it is set to) within 2 points, not what the clustering makes it."""
    done = evaluate("--cut", CUT, INSIDERS_TARGET_SHARE=target, INSIDERS_SHARE_BAND=band)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Size: target {float(target):.1%} of the customers known")
    found = re.match(r"at the cut: ([\d.]+)% \(([\d,]+) of ([\d,]+)\)", lines[1])
    assert found, lines[1]
    percent, insiders, customers = (float(g.replace(",", "")) for g in found.groups())
    # Everyone with a purchase at or before the cut (midnight starting the 8th: the
    # source stops at the first line past it).
    every = load_lines(SAMPLE)
    known = spec_v1(every[every["InvoiceDate"] <= pd.Timestamp(CUT)])
    assert customers == len(known) > 200
    assert percent == pytest.approx(100 * insiders / customers, abs=0.05)
    assert abs(insiders / customers - float(target)) <= 0.02, lines[1]
