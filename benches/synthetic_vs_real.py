"""The synthetic history beside the real one: one markdown table, the same pandas code for both.

    .venv/bin/python benches/synthetic_vs_real.py [--customers 4372] [--seed 1] [--data PATH]
        [--synthetic PATH] [--replay]

Generates ``--customers`` customers with ``--seed`` (``insiders generate``, in-process, into a
temporary file unless ``--synthetic`` names one to reuse or write), reads both files with
pandas and prints, for each statistic, the real file's value and the synthetic one's.
Lines are classified as the service's feature spec v1 classifies them (a negative price is
rejected; then no customer, not a product, zero price are ignored). ``--replay`` also runs
``insiders replay`` on both files and adds what the service itself counted.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumer.synthetic import write_history  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
PRODUCT = r"\d{5}[A-Za-z]{0,2}"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def load(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(
        path,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str, "Description": str},
        keep_default_na=False,
        na_values={"CustomerID": [""]},
    )
    frame["t"] = pd.to_datetime(frame["InvoiceDate"])
    return frame


def statistics(frame: pd.DataFrame) -> dict[str, str]:
    """Every row of the table for one file, formatted."""
    out: dict[str, str] = {}
    cancel = frame["InvoiceNo"].str.startswith("C")
    known = frame["CustomerID"].notna()
    product = frame["StockCode"].str.fullmatch(PRODUCT)
    amount = frame["Quantity"] * frame["UnitPrice"]
    lines = len(frame)

    out["customers (distinct ids)"] = f"{frame['CustomerID'].nunique():,}"
    out["lines"] = f"{lines:,}"
    out["invoices"] = f"{frame['InvoiceNo'].nunique():,}"
    out["cancellation invoices, share of invoices"] = pct(
        frame.loc[cancel, "InvoiceNo"].nunique() / frame["InvoiceNo"].nunique()
    )
    per_invoice = frame.groupby("InvoiceNo").size()
    out["lines per invoice: median / p90"] = (
        f"{per_invoice.median():.0f} / {q(per_invoice, 0.9):.0f}"
    )

    purchases = frame[known & ~cancel]
    value = (purchases["Quantity"] * purchases["UnitPrice"]).groupby(purchases["InvoiceNo"]).sum()
    out["invoice value £ (customers' purchases): median / p90"] = (
        f"{value.median():,.0f} / {q(value, 0.9):,.0f}"
    )
    invoices = purchases.drop_duplicates("InvoiceNo")
    per_customer = invoices.groupby("CustomerID").size()
    out["invoices per customer: mean / median / p90 / p99 / max"] = (
        f"{per_customer.mean():.2f} / {per_customer.median():.0f} / {q(per_customer, 0.9):.0f} / "
        f"{q(per_customer, 0.99):.0f} / {per_customer.max():,}"
    )
    out["customers with one invoice"] = pct((per_customer == 1).mean())
    ordered = invoices.sort_values(["CustomerID", "t"])
    gap = ordered.groupby("CustomerID")["t"].diff().dt.total_seconds() / 86400
    out["days between a customer's invoices: median (p25-p75)"] = (
        f"{gap.median():.1f} ({q(gap, 0.25):.1f}-{q(gap, 0.75):.1f})"
    )
    end = frame["t"].max()
    first = invoices.groupby("CustomerID")["t"].min()
    last = invoices.groupby("CustomerID")["t"].max()
    watched = first <= end - pd.Timedelta(days=90)
    out["silent for the last 90 days (of customers first seen before)"] = pct(
        (last[watched] <= end - pd.Timedelta(days=90)).mean()
    )
    first_month = first.dt.month.value_counts(normalize=True)
    out["customers first seen in Dec / Nov"] = (
        f"{pct(first_month.get(12, 0.0))} / {pct(first_month.get(11, 0.0))}"
    )

    counted = known & product & (frame["UnitPrice"] > 0)
    bought = amount[counted & (frame["Quantity"] > 0)]
    returned = -amount[counted & (frame["Quantity"] < 0)]
    out["returned share of revenue"] = pct(returned.sum() / bought.sum())
    out["lines without a customer id"] = pct((~known).mean())
    rejected = frame["UnitPrice"] < 0
    reason = np.select(
        [rejected, ~known, ~product, frame["UnitPrice"] <= 0],
        [
            "rejected: negative_price",
            "ignored: no_customer",
            "ignored: not_a_product",
            "ignored: zero_price",
        ],
        default="applied",
    )
    reasons = pd.Series(reason).value_counts()
    for name in (
        "ignored: no_customer",
        "ignored: not_a_product",
        "ignored: zero_price",
        "rejected: negative_price",
    ):
        out[f"lines {name}"] = f"{pct(reasons.get(name, 0) / lines, 3)} ({reasons.get(name, 0):,})"
    out["exact duplicate lines"] = pct(frame.duplicated(subset=list(frame.columns[:8])).mean())

    month = frame["t"].dt.month.value_counts(normalize=True)
    for number, name in enumerate(MONTHS, start=1):
        out[f"lines in {name}"] = pct(month.get(number, 0.0))
    weekday = frame["t"].dt.day_of_week.value_counts(normalize=True)
    for number, name in enumerate(WEEKDAYS):
        out[f"lines on {name}"] = pct(weekday.get(number, 0.0))
    hour = frame.drop_duplicates("InvoiceNo")["t"].dt.hour
    out["invoices from 10:00 to 15:59"] = pct(((hour >= 10) & (hour < 16)).mean())

    revenue = bought.groupby(frame.loc[bought.index, "CustomerID"]).sum().sort_values()
    top = revenue.iloc[-max(1, len(revenue) // 10) :].sum() / revenue.sum()
    out["revenue per customer £: median / p90"] = (
        f"{revenue.median():,.0f} / {q(revenue, 0.9):,.0f}"
    )
    out["revenue of the top 10% of customers"] = pct(top)
    country = frame[known].groupby("CustomerID")["Country"].first()
    out["customers in the United Kingdom"] = pct((country == "United Kingdom").mean())
    out["countries"] = f"{frame['Country'].nunique()}"
    out["distinct stock codes"] = f"{frame['StockCode'].nunique():,}"
    return out


def q(values: pd.Series, quantile: float) -> float:
    return float(values.quantile(quantile))


def pct(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f}%"


def replay_counts(path: Path) -> dict[str, str]:
    """What ``insiders replay`` counted: rejected and ignored lines by reason, customers."""
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "replay", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    text = done.stderr + done.stdout
    out: dict[str, str] = {}
    records = int(re.search(r"([\d,]+) records:", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    for label, name in (
        ("rejected by reason", "rejected"),
        ("valid but ignored by spec v1", "ignored"),
    ):
        found = re.search(label + r": (\{.*\})", text)
        counts: dict[str, int] = ast.literal_eval(found.group(1)) if found else {}
        for reason, count in sorted(counts.items()):
            out[f"replay: {name} {reason}"] = f"{pct(count / records, 3)} ({count:,})"
    found = re.search(r"([\d,]+) customers, ([\d,]+) Insiders", text)
    if found:
        customers, insiders = (int(g.replace(",", "")) for g in found.groups())
        out["replay: customers / Insiders"] = (
            f"{customers:,} / {insiders:,} ({pct(insiders / customers)})"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=4372, help="default: UCI's 4,372 ids")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA, help="the real file")
    parser.add_argument(
        "--synthetic", type=Path, help="the synthetic file: reused if present, else written"
    )
    parser.add_argument("--replay", action="store_true", help="also count with insiders replay")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} is absent: pass --data PATH to the full Online Retail file")
    with tempfile.TemporaryDirectory() as scratch:
        synthetic = args.synthetic or Path(scratch) / "synthetic.csv.gz"
        if not synthetic.exists():
            started = time.perf_counter()
            written = write_history(synthetic, args.customers, args.seed)
            print(
                f"generated {written.lines:,} lines in {time.perf_counter() - started:.1f}s",
                file=sys.stderr,
            )
        columns: list[tuple[str, Path]] = [
            ("real (UCI Online Retail)", args.data),
            (f"synthetic ({args.customers:,} customers, seed {args.seed})", synthetic),
        ]
        results: list[dict[str, str]] = []
        for _, path in columns:
            print(f"reading {path.name}...", file=sys.stderr)
            stats = statistics(load(path))
            if args.replay:
                print(f"replaying {path.name}...", file=sys.stderr)
                stats.update(replay_counts(path))
            results.append(stats)
    emit(columns, results)


def emit(columns: list[tuple[str, Path]], results: list[dict[str, str]]) -> None:
    names: Callable[[int], str] = lambda k: columns[k][0]  # noqa: E731
    print(f"\n| statistic | {names(0)} | {names(1)} |\n| --- | ---: | ---: |")
    for key in results[0]:
        print(f"| {key} | {results[0][key]} | {results[1].get(key, '-')} |")


if __name__ == "__main__":
    main()
