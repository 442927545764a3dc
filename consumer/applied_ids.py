"""The ids of applied lines in the embedded store, in 24 bytes each.

Exactly-once needs every applied event id within the retention: a year of a retailer's
history is a year of lines. Held as a dict of strings, that was about 130 bytes a line, and
the embedded replay's memory grew with lines, not customers. Here each id is a 128-bit hash
(BLAKE2b), kept with its value (the line's invoice day * 2^32 + its content fingerprint,
as in Redis) in sorted numpy runs, as a log-structured merge tree keeps keys: new ids go to
a small dict; when it fills it becomes sorted runs, and runs of like size merge. That is 24
bytes an id in the runs.

The hashes are split by their top bits into ``2^SHARD_BITS`` shards, each its own set of
runs, so that runs keep merging as the ids grow (a merge never holds more than one shard's
ids, up to ``MAX_RUN``) and a lookup asks a few small runs, not every large one. From a
million ids to 40 million, a block's lookups went from 10.8 to 19.2 ms this way, against
16.6 to 62.1 ms with runs of all the ids (a one-off comparison; ``benches/applied_ids.py``).

Nearly every id a replay asks about is new, and proving it absent asked every run of its
shard, a few numpy calls each: thousands of calls a block once the runs number in the
hundreds. A Bloom filter over the runs' hashes answers "never seen" first, in one 64-bit
word per id, for 2 to 4 bytes an id more (16 to 32 bits: the filter is rebuilt twice as big
when its ids outgrow it); only the ids it may hold are looked up in the runs. It can be
wrong only in that direction (a new id sent to the runs, under 0.5% of them), never the
other: an id held is always in the filter.

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

# Ids gathered in a dict before they become sorted runs (a few MiB of Python objects).
BUFFER = 1 << 15
# Shards by the hashes' top bits: each flush gives every shard a run of about BUFFER / 64.
SHARD_BITS = 6
# A shard's runs grow by merging up to this many ids (192 MiB), so that a merge never needs
# more than a few hundred MiB at once; past it (half a billion ids in all), runs are only
# added, and a lookup asks each of them.
MAX_RUN = 1 << 23
# The Bloom filter: bits an id gets when the filter is full (twice as many right after it
# doubles), bits it sets in its word, and the ids the first filter is sized for. At 16 bits
# and 5 probes, about 0.4% of new ids are sent to the runs when the filter is full (0.1%
# at half full); a one-off count over a million random hashes.
BLOOM_BITS = 16
BLOOM_PROBES = 5
BLOOM_MIN = 1 << 16
DAY_SHIFT = 32
# "Not held", where a lookup's values are gathered (no value is this: days are past -2^31).
ABSENT = np.iinfo(np.int64).min


def digests(event_ids: Iterable[str]) -> list[bytes]:
    """Each id's 128-bit hash (two little-endian unsigned 64-bit halves, high then low):
    hash once, then ask and add by hash."""
    return [hashlib.blake2b(e.encode(), digest_size=16).digest() for e in event_ids]


def _halves(keys: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The keys' high and low halves, as uint64 arrays."""
    both = np.frombuffer(b"".join(keys), dtype="<u8").reshape(len(keys), 2)
    return both[:, 0].astype(np.uint64), both[:, 1].astype(np.uint64)


def _shard_bounds(high: np.ndarray, shards: int) -> np.ndarray:
    """Where each shard's hashes start in ``high`` (sorted), and where the last one ends."""
    top = high >> np.uint64(64 - SHARD_BITS)
    return np.searchsorted(top, np.arange(shards + 1, dtype=np.uint64))


class _Run:
    """Hashes sorted by their high half, with their low half and their values."""

    __slots__ = ("high", "low", "values")

    def __init__(
        self, high: np.ndarray, low: np.ndarray, values: np.ndarray, ordered: bool = False
    ) -> None:
        if not ordered:
            order = np.argsort(high, kind="stable")  # two sorted runs merge in linear time
            high, low, values = high[order], low[order], values[order]
        self.high, self.low, self.values = high, low, values

    def kept(self, keep: np.ndarray) -> _Run:
        """The entries where ``keep`` holds (still in order)."""
        return _Run(self.high[keep], self.low[keep], self.values[keep], ordered=True)

    def __len__(self) -> int:
        return len(self.high)

    def find(self, high: np.ndarray, low: np.ndarray, found: np.ndarray) -> None:
        """Write each query's value into ``found`` where this run holds it."""
        size = len(self.high)
        if not size:
            return
        at = np.minimum(np.searchsorted(self.high, high), size - 1)
        same_high = self.high[at] == high
        exact = same_high & (self.low[at] == low)
        found[exact] = self.values[at[exact]]
        for i in np.flatnonzero(same_high & ~exact).tolist():
            # Equal high halves, another low one: walk them (two ids sharing 64 bits: about
            # never).
            j = int(at[i]) + 1
            while j < size and self.high[j] == high[i]:
                if self.low[j] == low[i]:
                    found[i] = self.values[j]
                    break
                j += 1


class _Bloom:
    """A register-blocked Bloom filter of hashes: each sets ``BLOOM_PROBES`` bits in one
    64-bit word, so adding or asking is one word an id (one numpy gather or scatter for a
    whole batch), for a few times the false positives of bits spread over the filter."""

    __slots__ = ("added", "capacity", "words")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.added = 0  # hashes added, forgotten ones too: their bits stay set
        self.words = np.zeros(max(1, capacity * BLOOM_BITS // 64), dtype=np.uint64)

    def _word_and_mask(self, high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each hash's word (by its low half) and bits in it (six bits of its high half each)."""
        mask = np.zeros(len(high), dtype=np.uint64)
        for probe in range(BLOOM_PROBES):
            mask |= np.uint64(1) << ((high >> np.uint64(6 * probe)) & np.uint64(63))
        return low % np.uint64(len(self.words)), mask

    def add(self, high: np.ndarray, low: np.ndarray) -> None:
        word, mask = self._word_and_mask(high, low)
        np.bitwise_or.at(self.words, word, mask)  # .at: several ids may share a word
        self.added += len(high)

    def may_hold(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        """False where the hash was surely never added."""
        word, mask = self._word_and_mask(high, low)
        return (self.words[word] & mask) == mask


class AppliedIds:
    """Applied event ids with their values (``day << 32 | fingerprint``), by 128-bit hash."""

    def __init__(self) -> None:
        self._buffer: dict[bytes, int] = {}
        # Each shard's runs, the oldest first.
        self._shards: list[list[_Run]] = [[] for _ in range(1 << SHARD_BITS)]
        self._in_runs = 0
        self._filter = _Bloom(BLOOM_MIN)  # every hash in the runs (and some forgotten ones)
        self._cut: int | None = None  # ids dated before this day are forgotten
        self._per_day: dict[int, int] = {}  # ids held (forgotten or not) by day

    def __len__(self) -> int:
        """Ids held and not forgotten."""
        cut = self._cut
        return sum(n for day, n in self._per_day.items() if cut is None or day >= cut)

    @property
    def runs(self) -> int:
        """How many sorted runs a lookup may ask, over all shards."""
        return sum(len(runs) for runs in self._shards)

    def get_many(self, event_ids: Sequence[str]) -> list[int | None]:
        """Each id's value, or None if it was never applied (or is forgotten)."""
        return self.get_digests(digests(event_ids))

    def get_digests(self, keys: Sequence[bytes]) -> list[int | None]:
        """:meth:`get_many`, for ids already hashed by :func:`digests`."""
        found = self._find(keys)
        out: list[int | None] = []
        buffer = self._buffer
        for key, value in zip(keys, found.tolist(), strict=True):
            held = buffer.get(key, value)
            out.append(held if held != ABSENT and self._live(held) else None)
        return out

    def _find(self, keys: Sequence[bytes]) -> np.ndarray:
        """Each key's value in the runs, or ``ABSENT``."""
        found = np.full(len(keys), ABSENT, dtype=np.int64)
        if not self._in_runs or not keys:
            return found
        high, low = _halves(keys)
        asked = np.flatnonzero(self._filter.may_hold(high, low))  # the rest are surely new
        if not len(asked):
            return found
        order = asked[np.argsort(high[asked])]  # sorted: each shard's queries are a slice
        high, low = high[order], low[order]
        bounds = _shard_bounds(high, len(self._shards))
        ordered = np.full(len(order), ABSENT, dtype=np.int64)
        for shard in np.flatnonzero(np.diff(bounds)).tolist():
            runs = self._shards[shard]
            start, stop = int(bounds[shard]), int(bounds[shard + 1])
            if not runs:
                continue
            part = ordered[start:stop]  # a view: runs write into it
            for run in reversed(runs):  # the newest first: a re-applied id's value wins
                missing = np.flatnonzero(part == ABSENT)
                if not len(missing):
                    break
                got = part[missing]
                run.find(high[start:stop][missing], low[start:stop][missing], got)
                part[missing] = got
        found[order] = ordered
        return found

    def _live(self, value: int) -> bool:
        return self._cut is None or value >> DAY_SHIFT >= self._cut

    def add_many(self, event_ids: Iterable[str], values: Iterable[int]) -> None:
        """Record ids not held (never applied, or forgotten) with their values: an invoice
        day (past -2^31, before 2^31) times 2^32 plus a 32-bit fingerprint."""
        self.add_digests(digests(event_ids), values)

    def add_digests(self, keys: Iterable[bytes], values: Iterable[int]) -> None:
        """:meth:`add_many`, for ids already hashed by :func:`digests`."""
        for key, value in zip(keys, values, strict=True):
            self._add(key, value)

    def _add(self, key: bytes, value: int) -> None:
        self._buffer[key] = value
        day = value >> DAY_SHIFT
        self._per_day[day] = self._per_day.get(day, 0) + 1
        if len(self._buffer) >= BUFFER:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        keys = list(self._buffer)
        high, low = _halves(keys)
        batch = _Run(high, low, np.fromiter(self._buffer.values(), dtype=np.int64, count=len(keys)))
        self._buffer = {}
        self._in_runs += len(keys)
        bounds = _shard_bounds(batch.high, len(self._shards))
        for shard in np.flatnonzero(np.diff(bounds)).tolist():
            part = slice(int(bounds[shard]), int(bounds[shard + 1]))
            runs = self._shards[shard]
            runs.append(_Run(batch.high[part], batch.low[part], batch.values[part], ordered=True))
            # Runs of like size merge (each id is sorted again about log2(n / BUFFER) times).
            while (
                len(runs) > 1
                and len(runs[-2]) <= 2 * len(runs[-1])
                and len(runs[-2]) + len(runs[-1]) <= MAX_RUN
            ):
                newer, older = runs.pop(), runs.pop()
                runs.append(self._merged(older, newer))
        # By the hashes it was given, not those held: merges drop forgotten ids from the runs,
        # not their bits from the filter, and a rolling window would fill it past its size.
        if self._filter.added + len(batch) > self._filter.capacity:
            self._refilter()
        else:
            self._filter.add(batch.high, batch.low)

    def _merged(self, older: _Run, newer: _Run) -> _Run:
        high = np.concatenate([older.high, newer.high])
        low = np.concatenate([older.low, newer.low])
        values = np.concatenate([older.values, newer.values])
        if self._cut is not None:
            keep = (values >> DAY_SHIFT) >= self._cut
            self._in_runs -= len(keep) - int(keep.sum())
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
        for runs in self._shards:
            for i, run in enumerate(runs):
                runs[i] = run.kept((run.values >> DAY_SHIFT) >= cut)
            runs[:] = [run for run in runs if len(run)]
        self._in_runs = sum(len(run) for runs in self._shards for run in runs)
        self._refilter()

    def _refilter(self) -> None:
        """A new filter of the runs' hashes, sized for twice as many (so it is rebuilt each
        time they double: about two adds an id in all)."""
        self._filter = _Bloom(max(BLOOM_MIN, 2 * self._in_runs))
        for run in self._runs():
            self._filter.add(run.high, run.low)

    def _runs(self) -> Iterator[_Run]:
        for runs in self._shards:
            yield from runs

    def values(self) -> Iterator[int]:
        """Every value held and not forgotten, in no particular order."""
        for run in self._runs():
            yield from (v for v in run.values.tolist() if self._live(v))
        yield from (v for v in self._buffer.values() if self._live(v))

    def hashes(self) -> Iterator[tuple[str, int]]:
        """Every (hash as 32 hex digits, value) held and not forgotten: the snapshot's form."""
        for run in self._runs():
            for high, low, value in zip(
                run.high.tolist(), run.low.tolist(), run.values.tolist(), strict=True
            ):
                if self._live(value):
                    yield (high.to_bytes(8, "little") + low.to_bytes(8, "little")).hex(), value
        for key, value in self._buffer.items():
            if self._live(value):
                yield key.hex(), value

    def add_hash(self, hexed: str, value: int) -> None:
        """Record a hash as :meth:`hashes` wrote it (a snapshot being read)."""
        raw = bytes.fromhex(hexed)
        if len(raw) != 16:
            raise ValueError(f"{hexed!r} is not 32 hex digits")
        self._add(raw, value)
