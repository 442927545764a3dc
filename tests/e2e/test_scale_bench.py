"""The scale bench at a small size, on the real Kafka and Redis: every row it reports is there,
and the counts it reports are those of the generated files, counted here with pandas."""

from __future__ import annotations

import re

import pandas as pd

from tests.conftest import run_bench

SIZES = (150, 300)


def test_the_scale_bench_runs_every_check_at_a_small_size(kafka_bootstrap, tmp_path):
    args = ["--sizes", *map(str, SIZES), "--work", str(tmp_path), "--requests", "5"]
    stdout = run_bench("scale.py", args, kafka_bootstrap)
    table = stdout.split("\nseed 1,")[-1]  # the last table holds every size
    rows = {
        cells[0]: cells[1:]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    for name in (
        "replay lines/s (pipeline)",
        "replay peak RSS MiB",
        "consume lines/s (consume phase)",
        "consume peak RSS MiB",
        "Redis bytes per customer",
        "sweep: rank them s",
        "`/report` p50 / p99 ms (5 requests)",
        "`/dashboard` p50 / p99 ms (5 requests)",
        "`/customers/{id}` p50 / p99 ms, 4 clients on `/dashboard`",
    ):
        assert name in rows, sorted(rows)
        assert all(re.match(r"[\d,.]+", cell) for cell in rows[name]), (name, rows[name])
    for size, lines, customers in zip(
        SIZES, rows["lines"], rows["customers (with a purchase)"], strict=True
    ):
        frame = pd.read_csv(tmp_path / f"synthetic-{size}-seed1.csv.gz", dtype={"CustomerID": str})
        assert int(lines.replace(",", "")) == len(frame)
        bought = frame[
            (frame["Quantity"] > 0)
            & (frame["UnitPrice"] > 0)
            & frame["CustomerID"].notna()
            & frame["StockCode"].astype(str).str.fullmatch(r"\d{5}[A-Za-z]{0,2}")
        ]
        assert int(customers.replace(",", "")) == bought["CustomerID"].nunique()
    for key in ("replay lines/s (pipeline)", "consume lines/s (consume phase)"):
        assert re.search(rf"^{re.escape(key)}: [\d.]+ of the smallest size's: ", stdout, re.M)
