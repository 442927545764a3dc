"""What looking up applied ids costs in the embedded store as they grow to a year of a big retailer.

    .venv/bin/python benches/applied_ids.py [--held 1000000 10000000 40000000] [--blocks 20]

The embedded replay asks, for each block of 5,000 lines, which of their event ids were
applied, then adds the new ones (``consumer/applied_ids.py``). A million customers' year is
about 125 million ids. This fills one ``AppliedIds`` with ``--held`` ids (each size on top of
the one before), then times ``--blocks`` blocks: 2,500 ids held, drawn at random, and 2,500 new
ones, asked and the new ones added, as ``MemoryFeatureStore.apply`` does. It prints the
median and range per block, the sorted runs a lookup may ask, and the process's peak RSS.
Flat means the per-block time does not grow with the ids held.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consumer.applied_ids import AppliedIds, digests  # noqa: E402

BLOCK = 5000
DAY = 15_000 << 32  # a day's value, fingerprint 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held", type=int, nargs="+", default=[1_000_000, 10_000_000, 40_000_000])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    ids, held = AppliedIds(), 0
    print("| ids held | runs | fill s | one block (5,000 asked, 2,500 added), ms | peak RSS MiB |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for target in args.held:
        started = time.perf_counter()
        while held < target:
            step = min(1_000_000, target - held)
            ids.add_many((f"{i}:0" for i in range(held, held + step)), [DAY] * step)
            held += step
        fill = time.perf_counter() - started
        times = []
        for block in range(args.blocks):
            old = [f"{i}:0" for i in rng.integers(0, held, BLOCK // 2).tolist()]
            new = [f"new-{target}-{block}-{i}" for i in range(BLOCK // 2)]
            started = time.perf_counter()
            keys = digests(old + new)
            found = ids.get_digests(keys)
            ids.add_digests(keys[BLOCK // 2 :], [DAY + 1] * (BLOCK // 2))
            times.append(time.perf_counter() - started)
            if None in found[: BLOCK // 2] or any(v is not None for v in found[BLOCK // 2 :]):
                raise SystemExit("a lookup answered wrong")
        ms = [t * 1000 for t in times]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"| {len(ids):,} | {ids.runs} | {fill:.0f} | {statistics.median(ms):.1f}"
            f" ({min(ms):.1f}-{max(ms):.1f}) | {rss:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
