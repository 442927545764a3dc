"""A retailer ten times UCI's size: the UCI file replicated with disjoint ids, interleaved in time.

    .venv/bin/python benches/replicated.py [--copies 10] [--data PATH] [--out PATH] [--cut DATE]

Copy ``k`` of each line gets customer id ``<id>-<k>`` and invoice ``<invoice>-<k>``; the
copies of a line follow it at the same time, so the copies' histories interleave as if
ten retailers' customers shopped side by side. The file is written once (``--out``), then
``insiders evaluate`` runs on it at the cut and its report is printed: the share held, the
capture against the same number of top customers by past value, and the flaps.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "online_retail.csv.gz"


def replicate(source: Path, out: Path, copies: int) -> int:
    """Write ``copies`` disjoint copies of ``source`` into ``out``; return the lines written."""
    written = 0
    with (
        gzip.open(source, "rt", encoding="utf-8", errors="replace", newline="") as src,
        gzip.open(out, "wt", encoding="utf-8", newline="", compresslevel=1) as dst,
    ):
        reader, writer = csv.reader(src), csv.writer(dst)
        header = next(reader)
        writer.writerow(header)
        invoice, customer = header.index("InvoiceNo"), header.index("CustomerID")
        for row in reader:
            for k in range(copies):
                copy = list(row)
                copy[invoice] = f"{row[invoice]}-{k}"
                if row[customer].strip():
                    copy[customer] = f"{row[customer].strip().removesuffix('.0')}-{k}"
                writer.writerow(copy)
                written += 1
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "insiders-replicated.csv.gz",
        help="where to write the file (kept: a second run reuses it)",
    )
    parser.add_argument("--cut", default="2011-09-08")
    args = parser.parse_args()
    if not args.out.exists():
        started = time.perf_counter()
        lines = replicate(args.data, args.out, args.copies)
        print(f"wrote {lines:,} lines to {args.out} in {time.perf_counter() - started:.0f} s")
    command = [sys.executable, "-m", "consumer.cli", "evaluate", str(args.out), "--cut", args.cut]
    return subprocess.call(command, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
