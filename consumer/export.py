"""One row per customer: id, spec v1 features, segment and Insider flag (for BI tools)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from consumer.ports import FeatureStore
from segmenter.errors import InsidersError
from segmenter.features import FEATURE_NAMES, features_of

COLUMNS = ("customer_id", *FEATURE_NAMES, "segment", "insider")


def export_frame(store: FeatureStore, now_ts: int | None) -> pd.DataFrame:
    """Every customer with a purchase, sorted by id; time features as of ``now_ts``."""
    rows = []
    now = now_ts or 0
    for customer in store.customers():
        features = features_of(customer.state, now)
        rows.append(
            {
                "customer_id": customer.customer_id,
                **features.as_dict(),
                "segment": customer.status.segment,
                "insider": customer.status.insider,
            }
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["segment"] = frame["segment"].astype("Int64")
    frame["insider"] = frame["insider"].astype(bool)
    return frame.sort_values("customer_id", ignore_index=True)


def write_export(frame: pd.DataFrame, out: Path, fmt: str) -> None:
    try:
        if fmt == "parquet":
            frame.to_parquet(out, index=False)
        else:
            frame.to_csv(out, index=False)
    except OSError as exc:
        raise InsidersError(f"cannot write {out}: {exc.strerror or exc}") from None
