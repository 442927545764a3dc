"""`insiders replay FILE --export out.csv` gives the spec v1 features pandas computes."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tests.reference import DATA, MISSING_DATA, load_lines, spec_v1


@pytest.mark.skipif(not DATA.exists(), reason=MISSING_DATA)
def test_replay_export_equals_pandas(tmp_path):
    out = tmp_path / "out.csv"
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "replay", str(DATA), "--export", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(
        out, dtype={"customer_id": str}, parse_dates=["first_purchase_at", "last_purchase_at"]
    ).set_index("customer_id")
    want = spec_v1(load_lines(DATA))
    assert len(got) == len(want) == 4334
    assert round(want["revenue"].sum(), 2) == 8_761_066.65
    got = got.loc[want.index]
    for money in ("revenue", "returned_value", "avg_ticket"):
        assert (got[money] - want[money]).abs().max() < 0.005, money
    for count in ("invoices", "lines", "units", "returned_units"):
        assert (got[count].to_numpy() == want[count].to_numpy()).all(), count
    for when in ("first_purchase_at", "last_purchase_at"):
        assert (got[when] == want[when]).all(), when
    for derived in ("recency_days", "frequency"):
        assert (got[derived] - want[derived]).abs().max() < 1e-9, derived
