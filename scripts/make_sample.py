"""Build the shipped sample: complete histories of every customer whose id is a multiple of 12,
plus the lines without a customer id of every 40th invoice, from the full Online Retail file.

    python scripts/make_sample.py online_retail.csv.gz consumer/data/online_retail_sample.csv.gz

Deterministic: same input, same bytes (gzip mtime 0, rows in file order).
"""

from __future__ import annotations

import csv
import gzip
import io
import sys


def keep(row: list[str]) -> bool:
    invoice, customer = row[0], row[6]
    if customer:
        return int(float(customer)) % 12 == 0
    digits = "".join(ch for ch in invoice if ch.isdigit())
    return bool(digits) and int(digits) % 40 == 0


def main(src: str, dst: str) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    with gzip.open(src, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        writer.writerow(next(reader))
        for row in reader:
            if keep(row):
                writer.writerow(row)
    with (
        open(dst, "wb") as raw,
        gzip.GzipFile(
            filename="online_retail_sample.csv", mode="wb", fileobj=raw, mtime=0, compresslevel=9
        ) as gz,
    ):
        gz.write(out.getvalue().encode("utf-8"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
