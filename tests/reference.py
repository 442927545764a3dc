"""An independent batch computation of feature spec v1 with pandas, for parity tests.

It shares no code with the project on purpose: it reads the CSV itself and
applies the spec as written in the design, so a bug in the streaming code
cannot hide in both.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "online_retail.csv.gz"
MISSING_DATA = f"the full Online Retail file is absent ({DATA.name} is not in ../shared/data)"


def load_lines(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(
        path,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str, "Description": str},
        parse_dates=["InvoiceDate"],
        keep_default_na=False,
        na_values={"CustomerID": [""]},
    )
    # Records the pipeline rejects (dead-letter) never count: negative prices, zero quantities.
    return frame[(frame["UnitPrice"] >= 0) & (frame["Quantity"] != 0)]


def spec_v1(frame: pd.DataFrame, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Spec v1 features per customer with at least one purchase, indexed by customer id."""
    if now is None:
        now = frame["InvoiceDate"].max()
    counted = frame[
        frame["CustomerID"].notna()
        & frame["StockCode"].str.fullmatch(r"\d{5}[A-Za-z]{0,2}")
        & (frame["UnitPrice"] > 0)
    ]
    buys = counted[counted["Quantity"] > 0].assign(value=lambda d: d["Quantity"] * d["UnitPrice"])
    returns = counted[counted["Quantity"] < 0].assign(
        value=lambda d: -d["Quantity"] * d["UnitPrice"], units=lambda d: -d["Quantity"]
    )
    per = buys.groupby("CustomerID").agg(
        revenue=("value", "sum"),
        invoices=("InvoiceNo", "nunique"),
        lines=("InvoiceNo", "size"),
        units=("Quantity", "sum"),
        first_purchase_at=("InvoiceDate", "min"),
        last_purchase_at=("InvoiceDate", "max"),
    )
    back = returns.groupby("CustomerID").agg(
        returned_value=("value", "sum"), returned_units=("units", "sum")
    )
    per = per.join(back, how="left").fillna({"returned_value": 0.0, "returned_units": 0})
    per["returned_units"] = per["returned_units"].astype(int)
    day = pd.Timedelta(days=1)
    per["recency_days"] = (now - per["last_purchase_at"]) / day
    tenure = (now - per["first_purchase_at"]) / day
    per["frequency"] = per["invoices"] * 30 / tenure.clip(lower=30)
    per["avg_ticket"] = per["revenue"] / per["invoices"]
    per.index.name = "customer_id"
    return per
