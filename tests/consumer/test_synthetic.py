"""The synthetic generator: deterministic, read by the service as a real file is, and with the
real file's statistics within what sampling noise allows.

The real statistics are computed here, with pandas, from ``online_retail.csv.gz``; nothing is
taken from the generator's fitted profile. Each comparison is a two-sample test: the
synthetic file and the real one are both taken as samples of one process, each statistic's
standard error is computed from each file's own spread, clustered by customer (a customer's
lines are not independent; a line without a customer is its invoice's cluster), and the two
may differ by at most 4 combined standard errors. That bound is the noise of a 2,000-customer
sample, not a fit to what the generator gives: a true statistic passes it by chance 99.994%
of the time, and a model that misses by more fails.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from consumer.cli import main, replay_embedded
from consumer.files import read_records
from consumer.records import parse_record
from consumer.settings import ConsumerSettings
from consumer.synthetic import GenerateError, write_history
from segmenter.errors import InvalidRecord
from segmenter.lines import classify
from tests.reference import DATA, MISSING_DATA

CUSTOMERS = 2_000
PRODUCT = r"\d{5}[A-Za-z]{0,2}"
UCI_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
Z = 4.0  # standard errors allowed


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "synthetic.csv.gz"
    write_history(path, CUSTOMERS, seed=1)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "small.csv.gz"
    write_history(path, 300, seed=2)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_ones(tmp_path):
    first, again, other = (tmp_path / f"{name}.csv.gz" for name in ("a", "b", "c"))
    write_history(first, 300, seed=5)
    write_history(again, 300, seed=5)
    write_history(other, 300, seed=6)
    assert digest(first) == digest(again)
    assert digest(first) != digest(other)
    # The plain text too, and a .csv holds the same text as the .csv.gz.
    plain = tmp_path / "a.csv"
    write_history(plain, 300, seed=5)
    assert plain.read_bytes() == gzip.decompress(first.read_bytes())


def test_the_file_has_the_uci_layout_in_time_order(synthetic):
    with gzip.open(synthetic, "rt", encoding="utf-8") as text:
        header = text.readline().rstrip("\n")
        dates = [line.rsplit(",", 4)[1] for line in text.readlines()[:50_000]]
    assert header == UCI_HEADER
    assert dates == sorted(dates)
    assert all(len(d) == 19 and d.endswith(":00") for d in dates)


def test_the_service_reads_every_line_as_it_reads_real_ones(small):
    """Every line parses, or is rejected for the one reason real lines are (the bad-debt
    lines' negative price); the ignored ones are ignored for spec v1's reasons."""
    reasons: Counter[str] = Counter()
    for record in read_records(small):
        try:
            line = parse_record(orjson.dumps(record))
        except InvalidRecord as error:
            reasons[f"rejected {error.reason}"] += 1
            continue
        kind, why = classify(line)
        reasons[why.value if why is not None else kind.value] += 1
    assert set(reasons) <= {
        "purchase",
        "return",
        "no_customer",
        "not_a_product",
        "zero_price",
        "rejected negative_price",
    }
    assert reasons["purchase"] > 0 and reasons["return"] > 0 and reasons["no_customer"] > 0


def test_replay_takes_it_in_order_and_finds_insiders(small, caplog):
    with caplog.at_level(logging.INFO):
        store, stats, _, _ = replay_embedded(small, ConsumerSettings(), None)
    assert "not in time order" not in caplog.text  # streamed as written, never sorted
    assert store.customer_count() == 300
    assert 0 < store.insiders(0, 0)[1] < 300
    assert set(stats.rejected) <= {"negative_price"}
    assert set(store.ignored_counts()) <= {"no_customer", "not_a_product", "zero_price"}


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["generate", "--customers", "0", "--seed", "1", str(tmp_path / "a.csv")]) == 2
    assert main(["generate", "--customers", "5", "--seed", "1", str(tmp_path / "a.txt")]) == 2
    assert main(["generate", "--customers", "5", "--seed", "1", "--start", "2010-13-01",
                 str(tmp_path / "a.csv")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and err.count("insiders: error: ") == 3, err
    with pytest.raises(GenerateError, match=r"must end in \.csv or \.csv\.gz"):
        write_history(tmp_path / "a.parquet", 5, seed=1)
    assert not list(tmp_path.iterdir())  # no partial file left behind


# --- the statistics ---------------------------------------------------------------------------


def load(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(
        path,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str, "Description": str},
        keep_default_na=False,
        na_values={"CustomerID": [""]},
    )
    frame["t"] = pd.to_datetime(frame["InvoiceDate"])
    frame["cluster"] = frame["CustomerID"].fillna("invoice " + frame["InvoiceNo"])
    return frame


def ratio(num: pd.Series, den: pd.Series, cluster: pd.Series) -> tuple[float, float]:
    """Σ num / Σ den, and its standard error with the units clustered (linearisation)."""
    by = pd.DataFrame({"num": num.to_numpy(), "den": den.to_numpy()}).groupby(cluster.to_numpy())
    sums = by.sum()
    value = sums["num"].sum() / sums["den"].sum()
    residual = sums["num"] - value * sums["den"]
    return float(value), float(np.sqrt((residual**2).sum()) / sums["den"].sum())


def statistics(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    one = pd.Series(1.0, index=frame.index)
    cluster = frame["cluster"]
    known = frame["CustomerID"].notna()
    product = frame["StockCode"].str.fullmatch(PRODUCT)
    out = {
        "lines without a customer id": ratio((~known).astype(float), one, cluster),
        "lines not a product (with a customer)": ratio(
            (known & ~product).astype(float), one, cluster
        ),
        "lines in November": ratio((frame["t"].dt.month == 11).astype(float), one, cluster),
        "lines on Sunday": ratio((frame["t"].dt.day_of_week == 6).astype(float), one, cluster),
    }
    counted = known & product & (frame["UnitPrice"] > 0)
    amount = frame["Quantity"] * frame["UnitPrice"]
    out["returned share of revenue"] = ratio(
        (-amount).where(counted & (amount < 0), 0.0),
        amount.where(counted & (amount > 0), 0.0),
        cluster,
    )
    invoices = frame.drop_duplicates("InvoiceNo")
    out["cancellation invoices"] = ratio(
        invoices["InvoiceNo"].str.startswith("C").astype(float),
        pd.Series(1.0, index=invoices.index),
        invoices["cluster"],
    )
    bought = invoices[invoices["CustomerID"].notna() & ~invoices["InvoiceNo"].str.startswith("C")]
    per = bought.groupby("CustomerID").agg(k=("t", "size"), country=("Country", "first"))
    ones = pd.Series(1.0, index=per.index)
    ids = pd.Series(per.index, index=per.index)
    out["invoices per customer"] = ratio(per["k"].astype(float), ones, ids)
    out["customers with one invoice"] = ratio((per["k"] == 1).astype(float), ones, ids)
    out["customers in the United Kingdom"] = ratio(
        (per["country"] == "United Kingdom").astype(float), ones, ids
    )
    ordered = bought.sort_values(["CustomerID", "t"])
    gap = (ordered.groupby("CustomerID")["t"].diff().dt.total_seconds() / 86400).dropna()
    out["gaps between invoices under 7 days"] = ratio(
        (gap < 7).astype(float),
        pd.Series(1.0, index=gap.index),
        ordered.loc[gap.index, "CustomerID"],
    )
    return out


@pytest.fixture(scope="module")
def real_statistics() -> dict[str, tuple[float, float]]:
    if not DATA.exists():
        pytest.skip(MISSING_DATA)
    return statistics(load(DATA))


STATISTICS = (
    "lines without a customer id",
    "lines not a product (with a customer)",
    "lines in November",
    "lines on Sunday",
    "returned share of revenue",
    "cancellation invoices",
    "invoices per customer",
    "customers with one invoice",
    "customers in the United Kingdom",
    "gaps between invoices under 7 days",
)


@pytest.fixture(scope="module")
def synthetic_statistics(synthetic: Path) -> dict[str, tuple[float, float]]:
    return statistics(load(synthetic))


@pytest.mark.parametrize("name", STATISTICS)
def test_a_statistic_matches_the_real_file_within_sampling_noise(
    name, real_statistics, synthetic_statistics
):
    real, real_se = real_statistics[name]
    mine, mine_se = synthetic_statistics[name]
    bound = Z * math.hypot(real_se, mine_se)
    assert abs(mine - real) <= bound, (
        f"{name}: synthetic {mine:.4f}, real {real:.4f}, allowed ±{bound:.4f}"
    )
