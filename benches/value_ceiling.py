"""How much of the next quarter's revenue can any ranking of the past capture?

    .venv/bin/python benches/value_ceiling.py [--data PATH] [--cut 2011-09-08] [--share 0.12]

Issue 4 asks the Insiders at the 2011-09-08 cut to hold at least 60% of the revenue
that follows, with at most 12% of customers. This bench asks whether *any* selection
made from the history up to the cut can do that, whatever the model. It is plain
pandas on the file and shares no code with the service, so it also checks the
reference points `insiders evaluate` prints.

Each row ranks the customers known at the cut by one score and takes the top share:
past revenue, recent windows of it, revenue per day, and the textbook customer-lifetime
model (BG/NBD expected purchase days times Gamma-Gamma expected spend, fitted by
maximum likelihood here), and a supervised model: gradient boosting trained on four
earlier quarters to predict the next quarter's purchases from 19 features, more than
spec v1 holds (recent windows, product breadth, basket shape, country). Hindsight
ranks by the future itself: no model can beat it.
Future revenue is counted both as the issue defines it (purchases) and net of the
returns made in the same window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
DAY = pd.Timedelta(days=1)


def in_days(span: pd.Series) -> pd.Series:
    return span.dt.total_seconds() / 86400.0


HORIZON_DAYS = 92.0  # 2011-09-09 .. 2011-12-09: the rest of the data


def counted_lines(path: Path) -> pd.DataFrame:
    """Lines that count under feature spec v1, with their value."""
    f = pd.read_csv(
        path,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str},
        parse_dates=["InvoiceDate"],
        keep_default_na=False,
        na_values={"CustomerID": [""]},
    )
    f = f[
        f["CustomerID"].notna()
        & f["StockCode"].str.fullmatch(r"\d{5}[A-Za-z]{0,2}")
        & (f["UnitPrice"] > 0)
        & (f["Quantity"] != 0)
    ]
    return f.assign(value=f["Quantity"] * f["UnitPrice"])


def bg_nbd_gamma_gamma(buys: pd.DataFrame, cut: pd.Timestamp, horizon: float) -> pd.Series:
    """Expected spend over `horizon` days: BG/NBD (Fader, Hardie & Lee 2005) on purchase
    days times the Gamma-Gamma (Fader & Hardie 2013) posterior mean spend per day."""
    daily = buys.assign(day=buys["InvoiceDate"].dt.normalize()).groupby(["CustomerID", "day"])
    spend = daily["value"].sum()
    days = spend.reset_index().groupby("CustomerID")["day"].agg(["size", "min", "max"])
    x = (days["size"] - 1).to_numpy(float)  # repeat purchase days
    t_x = in_days(days["max"] - days["min"]).to_numpy()
    t_cal = in_days(cut.normalize() - days["min"]).to_numpy()

    def bg_nbd_nll(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(log_params)
        common = (
            gammaln(r + x)
            - gammaln(r)
            + r * np.log(alpha)
            + gammaln(a + b)
            + gammaln(b + x)
            - gammaln(b)
            - gammaln(a + b + x)
        )
        alive = -(r + x) * np.log(alpha + t_cal)
        dropped = np.where(
            x > 0,
            np.log(a) - np.log(b + np.maximum(x, 1) - 1) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
        return float(-np.sum(common + np.logaddexp(alive, dropped)))

    fit = minimize(
        bg_nbd_nll,
        np.log([0.5, 10.0, 0.5, 2.0]),
        method="Nelder-Mead",
        options={"maxiter": 10_000, "xatol": 1e-6, "fatol": 1e-6},
    )
    r, alpha, a, b = np.exp(fit.x)
    ratio = (alpha + t_cal) / (alpha + t_cal + horizon)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, horizon / (alpha + t_cal + horizon))
    numerator = (a + b + x - 1) / (a - 1) * (1 - ratio ** (r + x) * hyp)
    denominator = 1 + (x > 0) * a / (b + x - 1) * ((alpha + t_cal) / (alpha + t_x)) ** (r + x)
    purchase_days = numerator / denominator

    n = x + 1
    mean_spend = spend.groupby("CustomerID").mean().reindex(days.index).to_numpy()

    def gamma_gamma_nll(log_params: np.ndarray) -> float:
        p, q, v = np.exp(log_params)
        return float(
            -np.sum(
                gammaln(p * n + q)
                - gammaln(p * n)
                - gammaln(q)
                + q * np.log(v)
                + (p * n - 1) * np.log(mean_spend)
                + p * n * np.log(n)
                - (p * n + q) * np.log(n * mean_spend + v)
            )
        )

    gg = minimize(
        gamma_gamma_nll,
        np.log([2.0, 3.0, 100.0]),
        method="Nelder-Mead",
        options={"maxiter": 10_000},
    )
    p, q, v = np.exp(gg.x)
    weight = p * n / (p * n + q - 1)
    expected_spend = (1 - weight) * v * p / (q - 1) + weight * mean_spend
    return pd.Series(purchase_days * expected_spend, index=days.index)


def rich_features(lines: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """More than spec v1 knows: recent windows, product breadth, basket shape, country."""
    past = lines[lines["InvoiceDate"] <= cut]
    buys = past[past["Quantity"] > 0]
    groups = buys.groupby("CustomerID")
    x = pd.DataFrame(
        {
            "revenue": groups["value"].sum(),
            "invoices": groups["InvoiceNo"].nunique(),
            "lines": groups.size(),
            "units": groups["Quantity"].sum(),
            "products": groups["StockCode"].nunique(),
            "recency": in_days(cut - groups["InvoiceDate"].max()),
            "tenure": in_days(cut - groups["InvoiceDate"].min()),
            "uk": groups["Country"].first().eq("United Kingdom").astype(float),
            "median_price": groups["UnitPrice"].median(),
            "median_quantity": groups["Quantity"].median(),
            "days": buys.assign(day=buys["InvoiceDate"].dt.normalize())
            .groupby("CustomerID")["day"]
            .nunique(),
        }
    )
    for window in (30, 90, 180):
        recent = buys[buys["InvoiceDate"] > cut - window * DAY].groupby("CustomerID")
        x[f"revenue_{window}"] = recent["value"].sum().reindex(x.index).fillna(0.0)
        x[f"invoices_{window}"] = recent["InvoiceNo"].nunique().reindex(x.index).fillna(0.0)
    returns = past[past["Quantity"] < 0]
    x["returned"] = -returns.groupby("CustomerID")["value"].sum().reindex(x.index).fillna(0.0)
    x["gap"] = x["tenure"] / x["days"]
    return x


def supervised(lines: pd.DataFrame, cut: pd.Timestamp, horizon: float) -> pd.Series:
    """Gradient boosting (Poisson loss) trained on four earlier quarters to predict the
    next quarter's purchases from `rich_features`, then applied at the cut."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    frames, targets = [], []
    for months in (6, 5, 4, 3):
        start = cut - pd.DateOffset(months=months)
        x = rich_features(lines, start)
        window = lines[
            (lines["InvoiceDate"] > start)
            & (lines["InvoiceDate"] <= start + horizon * DAY)
            & (lines["Quantity"] > 0)
        ]
        frames.append(x)
        targets.append(window.groupby("CustomerID")["value"].sum().reindex(x.index).fillna(0.0))
    model = HistGradientBoostingRegressor(
        loss="poisson", max_iter=300, learning_rate=0.05, min_samples_leaf=40, random_state=0
    )
    model.fit(pd.concat(frames), pd.concat(targets))
    at_cut = rich_features(lines, cut)
    return pd.Series(model.predict(at_cut), index=at_cut.index)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the full Online Retail file")
    parser.add_argument("--cut", default="2011-09-08", help="last day of the history")
    parser.add_argument("--share", type=float, default=0.12, help="share of customers selected")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"value_ceiling: {args.data} not found (pass --data)", file=sys.stderr)
        return 2

    lines = counted_lines(args.data)
    cut = pd.Timestamp(args.cut) + pd.Timedelta(hours=23, minutes=59, seconds=59)
    past, after = lines[lines["InvoiceDate"] <= cut], lines[lines["InvoiceDate"] > cut]
    buys = past[past["Quantity"] > 0]
    per = buys.groupby("CustomerID").agg(revenue=("value", "sum"), first=("InvoiceDate", "min"))
    known = per.index

    def per_customer(frame: pd.DataFrame, sign: int) -> pd.Series:
        rows = frame[np.sign(frame["Quantity"]) == sign]
        return rows.groupby("CustomerID")["value"].sum().abs().reindex(known).fillna(0.0)

    future = per_customer(after, +1)
    future_net = (future - per_customer(after, -1)).clip(lower=0)
    n = round(args.share * len(known))

    def captured(score: pd.Series, target: pd.Series, count: int = n) -> float:
        top = score.sort_values(ascending=False, kind="stable").index[:count]
        return float(target[top].sum() / target.sum())

    tenure = in_days(cut - per["first"]).clip(lower=30)
    scores: dict[str, pd.Series] = {"past revenue": per["revenue"]}
    for window in (90, 180, 270):
        recent = buys[buys["InvoiceDate"] > cut - window * DAY]
        scores[f"revenue of the last {window} days"] = (
            recent.groupby("CustomerID")["value"].sum().reindex(known).fillna(0.0)
        )
    scores["revenue per day since first purchase"] = per["revenue"] / tenure
    scores["BG/NBD x Gamma-Gamma expected spend"] = bg_nbd_gamma_gamma(buys, cut, HORIZON_DAYS)
    scores["gradient boosting on 19 features, trained on earlier quarters"] = supervised(
        lines, cut, HORIZON_DAYS
    ).reindex(known)
    scores["hindsight: future revenue itself"] = future

    print(f"{len(known):,} customers known at {args.cut}; top {args.share:.0%} = {n:,} of them")
    print(f"future revenue: £{future.sum():,.0f} of purchases, £{future_net.sum():,.0f} net\n")
    print("| ranking | future revenue | net of returns |\n| --- | ---: | ---: |")
    for name, score in scores.items():
        print(f"| {name} | {captured(score, future):.1%} | {captured(score, future_net):.1%} |")

    ranked = per["revenue"].sort_values(ascending=False, kind="stable")
    share_of_future = (future[ranked.index].cumsum() / future.sum()).to_numpy()
    needed = int(np.searchsorted(share_of_future, 0.60)) + 1
    print(f"\npast revenue needs {needed / len(known):.1%} of customers to reach 60%")
    small = per["revenue"] < 100
    print(
        f"customers with under £100 of past revenue hold {future[small].sum() / future.sum():.1%}"
        " of the future revenue; the largest of them:"
    )
    largest = future[small].nlargest(3)
    for customer, before, after_cut in zip(
        largest.index, per.loc[largest.index, "revenue"], largest, strict=True
    ):
        print(f"  {customer}: £{float(before):,.2f} before, £{float(after_cut):,.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
