"""What looking up applied ids costs in the embedded store as they grow to a year of a big retailer.

    .venv/bin/python benches/applied_ids.py [--held 1000000 10000000 40000000] [--blocks 20]

The embedded replay asks, for each block of 5,000 lines, which of their event ids were
applied, then adds the new ones (``consumer/applied_ids.py``). A million customers' year is
about 125 million ids. This fills one ``AppliedIds`` with ``--held`` ids (each size on top of
the one before), then times ``--blocks`` blocks of two kinds, asked and the new ids added, as
``MemoryFeatureStore.apply`` does: 5,000 new ids (a replay: nearly every id it asks about is
new), and 2,500 held ids drawn at random with 2,500 new ones (a redelivery). It prints the
median and range per block of each kind, the sorted runs a lookup may ask, and the process's
peak RSS. Flat means the per-block time does not grow with the ids held.
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
    print(
        "| ids held | runs | fill s | 5,000 new, ms | 2,500 held + 2,500 new, ms | peak RSS MiB |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for target in args.held:
        started = time.perf_counter()
        while held < target:
            step = min(1_000_000, target - held)
            ids.add_many((f"{i}:0" for i in range(held, held + step)), [DAY] * step)
            held += step
        fill = time.perf_counter() - started
        times: dict[int, list[float]] = {0: [], BLOCK // 2: []}  # by the held ids asked
        for block in range(args.blocks):
            for old_ids in times:
                old = [f"{i}:0" for i in rng.integers(0, held, old_ids).tolist()]
                new = [f"new-{target}-{block}-{old_ids}-{i}" for i in range(BLOCK - old_ids)]
                started = time.perf_counter()
                keys = digests(old + new)
                found = ids.get_digests(keys)
                ids.add_digests(keys[old_ids:], [DAY + 1] * len(new))
                times[old_ids].append(time.perf_counter() - started)
                if None in found[:old_ids] or any(v is not None for v in found[old_ids:]):
                    raise SystemExit("a lookup answered wrong")
        cells = []
        for kind in times.values():
            ms = [t * 1000 for t in kind]
            cells.append(f"{statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"| {len(ids):,} | {ids.runs} | {fill:.0f} | {cells[0]} | {cells[1]} | {rss:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
