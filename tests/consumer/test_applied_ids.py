"""The embedded store's applied ids (hashes in sorted runs) answer as a plain dict of ids does."""

from __future__ import annotations

import random

import pytest

from consumer import applied_ids
from consumer.applied_ids import AppliedIds


@pytest.mark.parametrize(("seed", "shard_bits"), [(1, 1), (2, 2), (3, 6)])
def test_applied_ids_answer_as_a_dict_of_ids_through_adds_cutoffs_and_merges(
    monkeypatch, seed, shard_bits
):
    # Tiny runs, so that a few thousand ids go through many flushes, merges and compactions.
    monkeypatch.setattr(applied_ids, "BUFFER", 16)
    monkeypatch.setattr(applied_ids, "MAX_RUN", 256)
    monkeypatch.setattr(applied_ids, "SHARD_BITS", shard_bits)
    # A tiny Bloom filter: rebuilt as the ids double and at compactions, and full enough to
    # send some new ids on to the runs.
    monkeypatch.setattr(applied_ids, "BLOOM_MIN", 8)
    rng = random.Random(seed)
    ids, plain = AppliedIds(), {}  # plain: event id -> value, forgotten ones removed
    for day in range(1, 120):
        # About 40 lines a day, some of them repeats of ids seen in the last weeks.
        batch = [f"{rng.randrange(day * 50, day * 50 + 60)}:{rng.randrange(3)}" for _ in range(40)]
        batch += rng.sample(sorted(plain), min(5, len(plain)))
        batch += [f"{rng.randrange(0, day * 50)}:0" for _ in range(5)]  # maybe forgotten
        assert ids.get_many(batch) == [plain.get(event_id) for event_id in batch]
        new = list(dict.fromkeys(e for e in batch if e not in plain))
        values = [(day << 32) | rng.randrange(1 << 32) for _ in new]
        ids.add_many(new, values)
        plain.update(zip(new, values, strict=True))
        if day % 7 == 0:  # the cutoff moves on by weeks, as the watermark does
            cut = day - 30
            ids.forget_before(cut)
            forgotten = sorted(e for e, v in plain.items() if v >> 32 < cut)
            plain = {e: v for e, v in plain.items() if v >> 32 >= cut}
            assert ids.get_many(forgotten) == [None] * len(forgotten)
        held = sorted(plain)  # every day: forgotten copies may linger in runs until compacted
        assert ids.get_many(held) == [plain[e] for e in held]
        assert len(ids) == len(plain)
    assert sorted(ids.values()) == sorted(plain.values())
    assert ids.runs > 1 << shard_bits  # the test went through merges, and left runs to search
    assert ids._filter.capacity > 8  # and the filter was rebuilt bigger


def test_new_ids_are_answered_by_the_filter_without_asking_the_runs(monkeypatch):
    # 100,000 ids in a few hundred runs; 5,000 new ones are asked. Without the filter, each
    # shard with a new id asks its runs (thousands of searches); with it, only the few new
    # ids the filter mistakes for held ones are searched for.
    monkeypatch.setattr(applied_ids, "BUFFER", 1024)
    searched = []
    real_find = applied_ids._Run.find

    def find(run, high, low, found):
        searched.append(len(high))
        real_find(run, high, low, found)

    monkeypatch.setattr(applied_ids._Run, "find", find)
    ids = AppliedIds()
    ids.add_many((f"{i}:0" for i in range(100_000)), [15_000 << 32] * 100_000)
    assert ids.runs > 64
    assert ids.get_many([f"new-{i}:0" for i in range(5000)]) == [None] * 5000
    assert sum(searched) <= 50  # 1% of them, against a filter full to half its bits
    searched.clear()
    asked = [f"{i}:0" for i in range(0, 100_000, 20)]
    assert ids.get_many(asked) == [15_000 << 32] * 5000
    assert sum(searched) >= 5000  # held ids are all searched for: the filter says "maybe"


def test_hashes_are_read_back_as_written_and_a_bad_one_is_refused():
    ids = AppliedIds()
    ids.add_many(["536365:0", "536365:1"], [(15_000 << 32) | 7, (15_001 << 32) | 8])
    copy = AppliedIds()
    for hexed, value in ids.hashes():
        copy.add_hash(hexed, value)
    assert copy.get_many(["536365:0", "536365:1", "536365:2"]) == [
        (15_000 << 32) | 7,
        (15_001 << 32) | 8,
        None,
    ]
    with pytest.raises(ValueError, match="not 32 hex digits"):
        copy.add_hash(b"536365:0".hex(), 1)


def test_ids_dated_before_1970_are_found_too(monkeypatch):
    monkeypatch.setattr(applied_ids, "BUFFER", 2)  # in runs, not only in the buffer
    ids = AppliedIds()
    values = [(-3 << 32) | 5, (-1 << 32) | 0, (2 << 32) | 1]
    ids.add_many(["a:0", "b:0", "c:0"], values)
    assert ids.get_many(["a:0", "b:0", "c:0", "d:0"]) == [*values, None]


@pytest.mark.parametrize("buffer", [2, 64])
def test_hashes_sharing_their_high_half_are_told_apart_by_the_low_one(monkeypatch, buffer):
    # Hand-made hashes: four share a high half (in one run, or spread over several), one
    # differs; each is found with its own value, and an unheld low half is not.
    monkeypatch.setattr(applied_ids, "BUFFER", buffer)
    ids = AppliedIds()

    def hexed(high: int, low: int) -> str:
        return (high.to_bytes(8, "little") + low.to_bytes(8, "little")).hex()

    held = {hexed(7, low): (100 << 32) | low for low in (9, 3, 12, 5)}
    held[hexed(8, 3)] = (100 << 32) | 99
    for key, value in held.items():
        ids.add_hash(key, value)
    ids._flush()
    asked = [*held, hexed(7, 4), hexed(6, 3)]
    assert ids.get_digests([bytes.fromhex(k) for k in asked]) == [*held.values(), None, None]


def test_a_rolling_window_keeps_the_filter_from_filling_past_its_size(monkeypatch):
    # Four years of days, 100 ids a day, 30 days kept. Merges drop forgotten ids from the
    # runs but not their bits from the filter: rebuilt by the ids held, the filter was given
    # up to 3% more hashes than it is sized for here (more bits set, more new ids mistaken).
    monkeypatch.setattr(applied_ids, "BUFFER", 64)
    monkeypatch.setattr(applied_ids, "BLOOM_MIN", 8)
    given: list = [None, 0]  # the filter last given hashes (kept alive), and how many
    real_add = applied_ids._Bloom.add

    def add(bloom, high, low):
        if bloom is not given[0]:
            given[:] = [bloom, 0]
        given[1] += len(high)
        real_add(bloom, high, low)

    monkeypatch.setattr(applied_ids._Bloom, "add", add)
    ids, fullest = AppliedIds(), 0.0
    for day in range(1500):
        ids.add_many((f"{day}-{i}:0" for i in range(100)), [day << 32] * 100)
        ids.forget_before(day - 30)
        if given[0] is ids._filter:  # else a new filter, given nothing yet
            fullest = max(fullest, given[1] / ids._filter.capacity)
    assert 0.5 < fullest <= 1.0
