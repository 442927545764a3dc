"""The consume-at-size bench at a small size, on the real Kafka and Redis: it runs, its own
check passes (each copy ends with the totals of the whole file replayed at once), and the
lines and customers it reports are those of the file, counted here with pandas."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from tests.conftest import SAMPLE, run_bench

COPIES = (1, 3)
TAIL_DAYS = 3


def test_the_consume_at_size_bench_runs_at_a_small_size(kafka_bootstrap, tmp_path):
    args = ["--data", str(SAMPLE), "--copies", *map(str, COPIES)]
    args += ["--tail-days", str(TAIL_DAYS), "--work", str(tmp_path)]
    stdout = run_bench("consume_at_size.py", args, kafka_bootstrap, timeout=600)
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in stdout.splitlines()
        if line.startswith("| ") and line[2].isdigit()
    ]
    assert len(rows) == len(COPIES), stdout

    frame = pd.read_csv(SAMPLE, dtype={"CustomerID": str, "InvoiceNo": str})
    dates = pd.to_datetime(frame["InvoiceDate"])
    cut = dates.max().normalize() - timedelta(days=TAIL_DAYS)
    before = frame[dates < cut]
    bought = before[
        (before["Quantity"] > 0)
        & (before["UnitPrice"] > 0)
        & before["CustomerID"].notna()
        & before["StockCode"].astype(str).str.fullmatch(r"\d{5}[A-Za-z]{0,2}")
    ]
    for copies, row in zip(COPIES, rows, strict=True):
        customers, lines = (int(cell.replace(",", "")) for cell in row[:2])
        assert customers == copies * bought["CustomerID"].nunique()
        assert lines == copies * int((dates >= cut).sum())
        assert float(row[3].replace(",", "")) > 0  # consume lines/s
