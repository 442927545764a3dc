"""The applied-id bytes bench, on the real Redis and the sample."""

from __future__ import annotations

import pandas as pd

from tests.conftest import SAMPLE, run_bench
from tests.e2e.test_redis_footprint_bench import table_rows


def test_ids_cost_bytes_by_length_and_a_customer_holds_what_pandas_counts(
    kafka_bootstrap, redis_client
):
    before = redis_client.dbsize()
    args = ["--smallest", "38", "--largest", "42", "--data", str(SAMPLE)]
    args += ["--days", "2011-06-01", "2011-12-09", "--dedupe-days", "30"]
    stdout = run_bench("id_bytes.py", args, kafka_bootstrap, timeout=300)
    costs, _, window = stdout.partition("\nLines within")
    header, *rows = table_rows(costs)
    assert header == ["ids a bucket", "6-digit invoices", "7-digit invoices"]
    assert [row[0] for row in rows] == ["38", "42", "mean, 38-42"]
    for row in rows:  # a longer id never costs fewer bytes; a listpack entry is 10 or more
        six, seven = (float(cell.strip("*")) for cell in row[1:])
        assert 10 <= six <= seven < 100
    assert redis_client.dbsize() == before  # its buckets deleted

    frame = pd.read_csv(SAMPLE, dtype={"CustomerID": str}, parse_dates=["InvoiceDate"])
    day = frame["InvoiceDate"].dt.normalize()
    bought = frame[(frame["Quantity"] > 0) & (frame["UnitPrice"] > 0)].dropna(subset=["CustomerID"])
    first = bought.groupby("CustomerID")["InvoiceDate"].min().dt.normalize()
    expected = []
    for end in (pd.Timestamp("2011-06-01"), pd.Timestamp("2011-12-09")):
        held = ((day >= end - pd.Timedelta(days=30)) & (day <= end)).sum()
        expected.append(f"{held / (first <= end).sum():.2f}")
    _, *files = table_rows(window)
    assert files == [[SAMPLE.name, *expected]]
