"""The ids of applied lines in the embedded store, in 24 bytes each.

Exactly-once needs every applied event id within the retention: a year of a retailer's
history is a year of lines. Held as a dict of strings, that was about 130 bytes a line, and
the embedded replay's memory grew with lines, not customers. Here each id is a 128-bit hash
(BLAKE2b), kept with its value (the line's invoice day * 2^32 + its content fingerprint,
as in Redis) in sorted numpy runs, as a log-structured merge tree keeps keys: new ids go to
a small dict; when it fills it becomes a sorted run, and runs of like size merge (up to
``MAX_RUN`` ids). That is 24 bytes an id in the runs.

Two ids share a 128-bit hash with a probability of about n^2 / 2^129: for 10^9 ids held at
once, about 10^-21.

Ids dated before the cutoff are forgotten: a lookup no longer finds them, and the next
compaction drops them.

>>> ids = AppliedIds()
>>> ids.add_many(["536365:0", "536365:1"], [(15_000 << 32) | 7, (15_001 << 32) | 8])
>>> def days(values):
...     return [None if v is None else (v >> 32, v & 0xFFFF_FFFF) for v in values]
>>> days(ids.get_many(["536365:1", "536366:0"]))
[(15001, 8), None]
>>> ids.forget_before(15_001)
>>> days(ids.get_many(["536365:0", "536365:1"])), len(ids)
([None, (15001, 8)], 1)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

# Ids gathered in a dict before they become a sorted run (a few MiB of Python objects).
BUFFER = 1 << 15
# Runs grow by merging up to this many ids (192 MiB), so that a merge never needs more than
# a few hundred MiB at once; past it, runs are only added (a lookup asks each run).
MAX_RUN = 1 << 23
DAY_SHIFT = 32
# "Not held", where a lookup's values are gathered (no value is this: days are past -2^31).
ABSENT = np.iinfo(np.int64).min


def digest(event_id: str) -> tuple[int, int]:
    """The id's 128-bit hash as two unsigned 64-bit halves."""
    raw = hashlib.blake2b(event_id.encode(), digest_size=16).digest()
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


class _Run:
    """Hashes sorted by their high half, with their low half and their values."""

    __slots__ = ("high", "low", "values")

    def __init__(
        self, high: np.ndarray, low: np.ndarray, values: np.ndarray, ordered: bool = False
    ) -> None:
        if not ordered:
            order = np.argsort(high, kind="stable")
            high, low, values = high[order], low[order], values[order]
        self.high, self.low, self.values = high, low, values

    def kept(self, keep: np.ndarray) -> _Run:
        """The entries where ``keep`` holds (still in order)."""
        return _Run(self.high[keep], self.low[keep], self.values[keep], ordered=True)

    def __len__(self) -> int:
        return len(self.high)

    def find(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        """Each query's value, or ``ABSENT`` where this run does not hold it."""
        found = np.full(len(high), ABSENT, dtype=np.int64)
        if not len(self.high):
            return found
        at = np.searchsorted(self.high, high)
        inside = at < len(self.high)
        hit = inside.copy()
        hit[inside] = self.high[at[inside]] == high[inside]
        for i in np.flatnonzero(hit).tolist():
            # Equal high halves: walk them (two ids sharing 64 bits: about never).
            j = int(at[i])
            while j < len(self.high) and self.high[j] == high[i]:
                if self.low[j] == low[i]:
                    found[i] = self.values[j]
                    break
                j += 1
        return found


class AppliedIds:
    """Applied event ids with their values (``day << 32 | fingerprint``), by 128-bit hash."""

    def __init__(self) -> None:
        self._buffer: dict[tuple[int, int], int] = {}
        self._runs: list[_Run] = []
        self._cut: int | None = None  # ids dated before this day are forgotten
        self._per_day: dict[int, int] = {}  # ids held (forgotten or not) by day

    def __len__(self) -> int:
        """Ids held and not forgotten."""
        cut = self._cut
        return sum(n for day, n in self._per_day.items() if cut is None or day >= cut)

    def get_many(self, event_ids: Sequence[str]) -> list[int | None]:
        """Each id's value, or None if it was never applied (or is forgotten)."""
        keys = [digest(event_id) for event_id in event_ids]
        found = np.full(len(keys), ABSENT, dtype=np.int64)
        if self._runs and keys:
            high = np.fromiter((k[0] for k in keys), dtype=np.uint64, count=len(keys))
            low = np.fromiter((k[1] for k in keys), dtype=np.uint64, count=len(keys))
            for run in reversed(self._runs):  # the newest first: a re-applied id's value wins
                missing = found == ABSENT
                if not missing.any():
                    break
                found[missing] = run.find(high[missing], low[missing])
        out: list[int | None] = []
        for key, value in zip(keys, found.tolist(), strict=True):
            held = self._buffer.get(key, value)
            out.append(held if held != ABSENT and self._live(held) else None)
        return out

    def _live(self, value: int) -> bool:
        return self._cut is None or value >> DAY_SHIFT >= self._cut

    def add_many(self, event_ids: Iterable[str], values: Iterable[int]) -> None:
        """Record ids not held (never applied, or forgotten) with their values: an invoice
        day (from -2^31 to 2^31) times 2^32 plus a 32-bit fingerprint."""
        for event_id, value in zip(event_ids, values, strict=True):
            self._add(digest(event_id), value)

    def _add(self, key: tuple[int, int], value: int) -> None:
        self._buffer[key] = value
        day = value >> DAY_SHIFT
        self._per_day[day] = self._per_day.get(day, 0) + 1
        if len(self._buffer) >= BUFFER:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        keys = list(self._buffer)
        run = _Run(
            np.fromiter((k[0] for k in keys), dtype=np.uint64, count=len(keys)),
            np.fromiter((k[1] for k in keys), dtype=np.uint64, count=len(keys)),
            np.fromiter(self._buffer.values(), dtype=np.int64, count=len(keys)),
        )
        self._buffer = {}
        self._runs.append(run)
        # Runs of like size merge (each id is sorted again about log2(n / BUFFER) times).
        while (
            len(self._runs) > 1
            and len(self._runs[-2]) <= 2 * len(self._runs[-1])
            and len(self._runs[-2]) + len(self._runs[-1]) <= MAX_RUN
        ):
            newer, older = self._runs.pop(), self._runs.pop()
            self._runs.append(self._merged([older, newer]))

    def _merged(self, runs: list[_Run]) -> _Run:
        high = np.concatenate([r.high for r in runs])
        low = np.concatenate([r.low for r in runs])
        values = np.concatenate([r.values for r in runs])
        if self._cut is not None:
            keep = (values >> DAY_SHIFT) >= self._cut
            high, low, values = high[keep], low[keep], values[keep]
        return _Run(high, low, values)

    def forget_before(self, cut: int) -> None:
        """Forget the ids dated before day ``cut`` (a cutoff never moves back)."""
        if self._cut is not None and cut <= self._cut:
            return
        self._cut = cut
        dead = sum(n for day, n in self._per_day.items() if day < cut)
        if dead and dead * 4 >= sum(self._per_day.values()):
            self.compact()

    def compact(self) -> None:
        """Drop the forgotten ids now, one run at a time (each replaced as it is filtered, to
        keep the peak of memory low)."""
        cut = self._cut
        if cut is None:
            return
        self._buffer = {k: v for k, v in self._buffer.items() if v >> DAY_SHIFT >= cut}
        self._per_day = {day: n for day, n in self._per_day.items() if day >= cut}
        for i, run in enumerate(self._runs):
            self._runs[i] = run.kept((run.values >> DAY_SHIFT) >= cut)
        self._runs = [run for run in self._runs if len(run)]

    def values(self) -> Iterator[int]:
        """Every value held and not forgotten, in no particular order."""
        for run in self._runs:
            yield from (v for v in run.values.tolist() if self._live(v))
        yield from (v for v in self._buffer.values() if self._live(v))

    def hashes(self) -> Iterator[tuple[str, int]]:
        """Every (hash as 32 hex digits, value) held and not forgotten: the snapshot's form."""
        for run in self._runs:
            for high, low, value in zip(
                run.high.tolist(), run.low.tolist(), run.values.tolist(), strict=True
            ):
                if self._live(value):
                    yield _hex(high, low), value
        for (high, low), value in self._buffer.items():
            if self._live(value):
                yield _hex(high, low), value

    def add_hash(self, hexed: str, value: int) -> None:
        """Record a hash as :meth:`hashes` wrote it (a snapshot being read)."""
        raw = bytes.fromhex(hexed)
        if len(raw) != 16:
            raise ValueError(f"{hexed!r} is not 32 hex digits")
        self._add((int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")), value)


def _hex(high: int, low: int) -> str:
    return (high.to_bytes(8, "little") + low.to_bytes(8, "little")).hex()
