"""The feature store contract, run against the in-memory store and the real Redis store."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryFeatureStore
from consumer.ports import Retention
from consumer.records import DateParser, parse_record
from segmenter.events import ENTERED, InsiderEvent, Reason
from segmenter.features import CustomerState
from segmenter.lines import InvoiceLine, LineKind, classify
from segmenter.policy import InsiderStatus
from segmenter.segmentation import StepResult
from tests.conftest import SAMPLE

DAY = 86_400


def line(
    eid: str,
    invoice: str,
    customer: str | None,
    qty: int,
    price: int,
    ts: int,
    code: str = "85123A",
) -> InvoiceLine:
    return InvoiceLine(eid, invoice, code, qty, ts, price, customer)


LINES = [
    line("a:0", "a", "1", 6, 2_550_000, 10 * DAY),
    line("a:1", "a", "1", 2, 3_390_000, 10 * DAY),
    line("b:0", "b", "2", 1, 500_000, 11 * DAY),
    line("c:0", "c", "1", 3, 1_000_000, 12 * DAY),
    line("Cd:0", "Cd", "1", -2, 2_550_000, 13 * DAY),
    line("e:0", "e", None, 5, 1_000_000, 14 * DAY),
    line("f:0", "f", "2", 1, 18_000_000, 9 * DAY, code="POST"),
    line("g:0", "g", "3", 4, 0, 9 * DAY),
    line("h:0", "h", "4", -1, 700_000, 8 * DAY),
]


def expected_states(lines: list[InvoiceLine]) -> dict[str, CustomerState]:
    """The core's fold, which the stores must reproduce (itself checked against pandas)."""
    states: dict[str, CustomerState] = {}
    for ln in lines:
        kind, _ = classify(ln)
        if kind is not LineKind.IGNORED:
            assert ln.customer_id is not None
            states.setdefault(ln.customer_id, CustomerState()).apply(ln, kind)
    return states


def state_tuple(s: CustomerState) -> tuple[object, ...]:
    return (
        s.revenue_micros,
        s.invoices,
        s.lines,
        s.units,
        s.returned_micros,
        s.returned_units,
        s.first_ts,
        s.last_ts,
    )


def test_apply_folds_lines_like_the_core(store):
    result = store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert result.applied == len(LINES)
    want = expected_states(LINES)
    got = {c.customer_id: c.state for c in store.load(sorted(want))}
    assert {k: state_tuple(v) for k, v in got.items()} == {
        k: state_tuple(v) for k, v in want.items()
    }
    assert store.watermark() == 14 * DAY
    assert store.ignored_counts() == {"no_customer": 1, "not_a_product": 1, "zero_price": 1}
    assert store.stored_offset("t", 0) == len(LINES) - 1
    assert store.stored_offset("t", 1) == -1


def test_only_customers_with_purchases_are_listed(store):
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert sorted(c.customer_id for c in store.customers()) == ["1", "2"]
    assert store.customer_count() == 2
    returns_only = store.customer("4")
    assert returns_only is not None and not returns_only.state.has_purchases
    assert store.customer("nobody") is None


def test_any_order_and_any_blocking_give_the_same_state(store):
    shuffled = LINES[:]
    random.Random(7).shuffle(shuffled)
    for start in range(0, len(shuffled), 2):
        chunk = shuffled[start : start + 2]
        store.apply("t", 0, [(start + i, ln) for i, ln in enumerate(chunk)], start + len(chunk) - 1)
    want = expected_states(LINES)
    got = {c.customer_id: state_tuple(c.state) for c in store.load(sorted(want))}
    assert got == {k: state_tuple(v) for k, v in want.items()}


def test_repeated_event_ids_change_nothing(store):
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    before = {c.customer_id: state_tuple(c.state) for c in store.load(["1", "2", "4"])}
    # The same lines published again: new offsets, same event ids.
    again = [(len(LINES) + i, ln) for i, ln in enumerate(LINES)]
    result = store.apply("t", 0, again, 2 * len(LINES) - 1)
    assert (result.applied, result.duplicates) == (0, len(LINES))
    after = {c.customer_id: state_tuple(c.state) for c in store.load(["1", "2", "4"])}
    assert after == before
    assert store.stored_offset("t", 0) == 2 * len(LINES) - 1


def test_offsets_at_or_below_the_stored_one_change_nothing(store):
    store.apply("t", 0, list(enumerate(LINES[:4])), 3)
    fresh = line("z:0", "z", "9", 1, 1_000_000, DAY)  # new event id, but an old offset
    result = store.apply("t", 0, [(3, fresh)], 3)
    assert (result.applied, result.stale) == (0, 1)
    assert store.customer("9") is None
    assert store.stored_offset("t", 0) == 3


def test_pending_lists_changed_customers_in_first_change_order(store):
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert store.pending() == ["1", "2", "4"]  # "3" bought at price 0: ignored
    store.apply(
        "t", 0, [(20, line("x:0", "x", "5", 1, 1, DAY)), (21, line("y:0", "y", "1", 1, 1, DAY))], 21
    )
    assert store.pending() == ["1", "2", "4", "5"]


def _event(cid: str, seq: int) -> InsiderEvent:
    return InsiderEvent(cid, seq, ENTERED, 5 * DAY, Reason("top_segment", "top"), 1, 7, {"x": 1})


def test_commit_step_stores_statuses_events_model_and_clears_pending(store):
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    result = StepResult(
        statuses={
            "1": InsiderStatus(
                segment=1, insider=True, insider_since=5 * DAY, sequence=1, model_version=7
            ),
            "2": InsiderStatus(segment=3, insider=False, model_version=7),
        },
        events=[_event("1", 1)],
    )
    store.commit_step(result, b"model-bytes")
    assert store.pending() == []
    assert store.model_checkpoint() == b"model-bytes"
    one = store.customer("1")
    assert one is not None and one.status == result.statuses["1"]
    page, total = store.insiders(0, 10)
    assert total == 1 and [c.customer_id for c in page] == ["1"]
    events = store.events(None, 10)
    assert [e["event_id"] for e in events.events] == ["1:1"]
    assert events.events[0] == _event("1", 1).as_dict()
    # Exit: the customer leaves the Insider index.
    store.commit_step(StepResult(statuses={"1": InsiderStatus(segment=2, sequence=2)}), b"m")
    assert store.insiders(0, 10)[1] == 0


def test_event_pages_and_outbox(store):
    store.commit_step(StepResult(events=[_event(str(i), 1) for i in range(5)]), b"m")
    first = store.events(None, 2)
    assert [e["customer_id"] for e in first.events] == ["0", "1"]
    second = store.events(first.next_cursor, 10)
    assert [e["customer_id"] for e in second.events] == ["2", "3", "4"]
    assert store.events(second.next_cursor, 10).events == []
    # Each event's own cursor resumes right after it (what SSE's Last-Event-ID needs).
    assert len(second.cursors) == 3 and second.next_cursor == second.cursors[-1]
    resumed = store.events(second.cursors[0], 10)
    assert [e["customer_id"] for e in resumed.events] == ["3", "4"]
    assert resumed.cursors == second.cursors[1:]
    unpublished, cursor = store.unpublished_events()
    assert len(unpublished) == 5 and cursor is not None
    store.mark_published(cursor)
    assert store.unpublished_events() == ([], None)
    store.commit_step(StepResult(events=[_event("9", 1)]), b"m")
    assert [e["customer_id"] for e in store.unpublished_events()[0]] == ["9"]


def test_memory_snapshot_round_trip(tmp_path):
    store = MemoryFeatureStore()
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    path = tmp_path / "state.snapshot"
    store.save(path)
    loaded = MemoryFeatureStore.load_snapshot(path)
    assert loaded.stored_offset("t", 0) == len(LINES) - 1
    assert state_tuple(loaded.states["1"]) == state_tuple(store.states["1"])


# All or nothing, exact money, one content per event id (issue "bad input").


def test_money_is_exact_beyond_two_to_the_53(store):
    # 100 lines of £100,000,000 (10^14 micro-pounds each) and one of a micro-pound: 10^16 + 1,
    # which a double would round to 10^16.
    big = [line(f"big:{i}", "big", "9", 1_000_000, 100_000_000, DAY) for i in range(100)]
    tiny = line("tiny:0", "tiny", "9", 1, 1, DAY)
    result = store.apply("t", 0, list(enumerate([*big, tiny])), 100)
    assert result.applied == 101
    assert store.load(["9"])[0].state.revenue_micros == 10**16 + 1


def test_an_applied_event_id_with_other_content_is_refused_and_nothing_is_written(store):
    first = line("x:0", "x", "5", 2, 1_000_000, DAY)
    store.apply("t", 0, [(0, first)], 0)
    other = line("x:0", "x", "5", 200, 1_000_000, DAY)  # the same id, another quantity
    again = line("x:0", "x", "5", 2, 1_000_000, DAY)  # the same line: a plain duplicate
    new = line("y:0", "y", "6", 1, 1_000_000, DAY)
    block = [(1, other), (2, again), (3, new)]

    result = store.apply("t", 0, block, 3)
    assert [(r.offset, r.reason) for r in result.refused] == [(1, "conflicting_duplicate")]
    assert "x:0" in result.refused[0].detail
    assert store.stored_offset("t", 0) == 0 and store.customer("6") is None  # nothing written

    result = store.apply("t", 0, [(2, again), (3, new)], 3)
    assert (result.applied, result.duplicates, result.refused) == (1, 1, ())
    assert store.load(["5"])[0].state.units == 2  # the first content stands
    assert store.stored_offset("t", 0) == 3


def test_sums_that_would_leave_64_bits_are_refused_whole(store):
    # 91 lines of 10^17 micro-pounds: 9.1 x 10^18, past what the store keeps exactly.
    huge = [line(f"h:{i}", "h", "7", 1_000_000, 100_000_000_000, DAY) for i in range(91)]
    fine = line("ok:0", "ok", "8", 1, 1_000_000, DAY)
    block = list(enumerate([fine, *huge]))
    result = store.apply("t", 0, block, 91)
    assert {r.reason for r in result.refused} == {"out_of_range"}
    assert sorted(r.offset for r in result.refused) == list(range(1, 92))
    assert store.customer("8") is None and store.stored_offset("t", 0) == -1
    assert store.apply("t", 0, block[:1], 91).applied == 1


# Reads that stay cheap at a million customers (issue "A million customers").


def test_insider_count_and_pages_read_no_more_than_the_page(store):
    lines = [line(f"p{i}:0", f"p{i}", f"c{i}", 1, 1_000_000, DAY) for i in range(5)]
    store.apply("t", 0, list(enumerate(lines)), 4)
    statuses = {
        f"c{i}": InsiderStatus(segment=1, insider=True, insider_since=(10 - i) * DAY, sequence=1)
        for i in range(5)
    }
    store.commit_step(StepResult(statuses=statuses), b"m")
    assert store.insider_count() == 5
    assert store.insiders(0, 0) == ([], 5)  # a count only: not every Insider loaded
    page, total = store.insiders(1, 2)
    assert total == 5 and [c.customer_id for c in page] == ["c3", "c2"]
    assert [c.customer_id for c in store.insiders(4, 10)[0]] == ["c0"]
    assert store.insiders(5, 10) == ([], 5)


def test_the_revision_moves_with_every_write_a_reader_could_see(store):
    start = store.revision()
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    applied = store.revision()
    assert applied > start
    # Repeats and stale offsets change nothing a reader sees, nor the revision.
    again = [(len(LINES) + i, ln) for i, ln in enumerate(LINES)]
    store.apply("t", 0, again, 2 * len(LINES) - 1)
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    assert store.revision() == applied
    store.commit_step(StepResult(events=[_event("1", 1)]), b"m")
    assert store.revision() > applied


def test_a_saved_report_is_read_back_as_saved_at_the_revision_it_made(store):
    assert store.saved_report() is None
    store.apply("t", 0, list(enumerate(LINES)), len(LINES) - 1)
    before = store.revision()
    at = store.save_report(b'{"a": "report"}')
    assert at == store.revision() == before + 1  # a write readers see
    assert store.saved_report() == (b'{"a": "report"}', at)
    store.commit_step(StepResult(events=[_event("1", 1)]), b"m")  # newer than the report
    saved = store.saved_report()
    assert saved is not None and saved[1] < store.revision()
    again = store.save_report(b"second")
    assert store.saved_report() == (b"second", again)


# Bounded state: the retention of applied ids, the outbox and the histories.


def held(store) -> tuple[int, int]:
    """Applied event ids and purchase invoice numbers the store still holds."""
    if isinstance(store, MemoryFeatureStore):
        return len(store.seen), sum(len(days) for days in store.invoice_days.values())
    client, prefix = store.client, store.prefix
    ids = sum(client.zcard(key) for key in client.scan_iter(match=f"{prefix}seen:*", count=10_000))
    invoices = sum(
        client.zcard(key) for key in client.scan_iter(match=f"{prefix}ci:*", count=10_000)
    )
    return ids, invoices


def settle(store, calls: int = 80) -> None:
    """Let the Redis store finish forgetting: a call visits a bounded number of its buckets
    and customers' invoice sets. The memory store forgets at once."""
    for _ in range(calls):
        store.apply("settle", 0, [], -1)


def moment(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


D0 = 15_000 * DAY  # 2011-01-26


def test_a_line_dated_before_the_retention_is_refused_naming_its_date_and_the_cutoff(store):
    store.retention = Retention(dedupe_days=10)
    store.apply("t", 0, [(0, line("w:0", "w", "1", 1, 1_000_000, D0 + 100 * DAY + 3600))], 0)
    # The cutoff is the start of day 90: 10 days before the watermark's day.
    old = line("old:0", "old", "2", 1, 1_000_000, D0 + 89 * DAY + 86_399)
    edge = line("edge:0", "edge", "3", 1, 1_000_000, D0 + 90 * DAY)
    result = store.apply("t", 0, [(1, edge), (2, old)], 2)
    assert [(r.offset, r.reason) for r in result.refused] == [(2, "beyond_retention")]
    detail = result.refused[0].detail
    assert detail.startswith(
        f"event old:0: field 'invoice_date' is '{moment(old.invoice_ts)}', "
        f"before {moment(D0 + 90 * DAY)}"
    )
    assert store.stored_offset("t", 0) == 0 and store.customer("3") is None  # nothing written
    result = store.apply("t", 0, [(1, edge)], 2)
    assert (result.applied, result.refused) == (1, ())
    assert store.customer("2") is None


def test_a_duplicate_within_the_retention_is_still_a_duplicate(store):
    store.retention = Retention(dedupe_days=10)
    first = line("x:0", "x", "5", 2, 1_000_000, D0 + 95 * DAY)
    store.apply("t", 0, [(0, first), (1, line("w:0", "w", "1", 1, 1, D0 + 104 * DAY))], 1)
    settle(store)
    result = store.apply("t", 0, [(2, first)], 2)  # the same line, 9 days behind
    assert (result.applied, result.duplicates) == (0, 1)
    other = line("x:0", "x", "5", 3, 1_000_000, D0 + 95 * DAY)
    assert [r.reason for r in store.apply("t", 0, [(3, other)], 3).refused] == [
        "conflicting_duplicate"
    ]
    assert store.load(["5"])[0].state.units == 2


def test_a_longer_retention_set_later_never_reaccepts_what_was_forgotten(store):
    store.retention = Retention(dedupe_days=10)
    store.apply("t", 0, [(0, line("w:0", "w", "1", 1, 1, D0 + 100 * DAY))], 0)
    store.retention = Retention(dedupe_days=50)  # the cutoff stays at day 90 ...
    refused = store.apply("t", 0, [(1, line("o:0", "o", "2", 1, 1, D0 + 80 * DAY))], 1).refused
    assert [r.reason for r in refused] == ["beyond_retention"]
    store.retention = Retention(dedupe_days=0)  # ... even when ids are kept forever from now on
    refused = store.apply("t", 0, [(1, line("o:0", "o", "2", 1, 1, D0 + 80 * DAY))], 1).refused
    assert [r.reason for r in refused] == ["beyond_retention"]


def test_without_a_retention_every_id_is_kept_and_no_line_is_refused(store):
    store.retention = Retention(dedupe_days=0)
    lines = [line(f"d{d}:0", f"d{d}", "1", 1, 1_000_000, D0 + d * DAY) for d in (900, 0, 450)]
    assert store.apply("t", 0, list(enumerate(lines)), 2).applied == 3
    settle(store)
    assert held(store) == (3, 3)
    assert store.apply("t", 0, [(3, lines[1])], 3).duplicates == 1


def daily_lines(days: range, per_day: int = 5) -> list[InvoiceLine]:
    """Two purchase lines of one invoice per customer per day, and a return each 7th day."""
    out = []
    for d in days:
        for k in range(per_day):
            ts = D0 + d * DAY + 3600 * k
            out += [
                line(f"{d}-{k}:0", f"{d}-{k}", f"k{k}", 2, 1_250_000, ts),
                line(f"{d}-{k}:1", f"{d}-{k}", f"k{k}", 1, 990_000, ts),
            ]
            if d % 7 == 0:
                out.append(line(f"C{d}-{k}:0", f"C{d}-{k}", f"k{k}", -1, 990_000, ts))
    return out


def test_ids_and_invoices_past_the_retention_are_forgotten_and_state_stays_bounded(store):
    store.retention = Retention(dedupe_days=5)
    history: list[InvoiceLine] = []
    sizes = {}
    for d in range(60):
        lines = daily_lines(range(d, d + 1))
        offset = len(history)
        last = offset + len(lines) - 1
        result = store.apply("t", 0, [(offset + i, ln) for i, ln in enumerate(lines)], last)
        assert result.refused == () and result.applied == len(lines)
        history += lines
        if d in (29, 59):
            settle(store)
            sizes[d] = held(store)
    # Twice the history, the same state: what is past the retention is forgotten.
    assert sizes[29] == sizes[59]
    kept = [ln for ln in history if ln.invoice_ts >= D0 + 54 * DAY]  # the cutoff: day 54
    assert sizes[59] == (len(kept), len({ln.invoice_no for ln in kept if ln.quantity > 0}))
    # Forgetting changed no feature: every invoice was counted once.
    want = expected_states(history)
    got = {c.customer_id: state_tuple(c.state) for c in store.load(sorted(want))}
    assert got == {k: state_tuple(v) for k, v in want.items()}
    assert all(state[1] == 60 for state in got.values())


def test_any_order_within_the_retention_gives_the_in_order_state(store):
    # Days 0 to 14: LINES (days 8 to 14 of the epoch, moved to D0) and 10 days of invoices.
    store.retention = Retention(dedupe_days=15)
    moved = [dataclasses.replace(ln, invoice_ts=D0 + ln.invoice_ts) for ln in LINES]
    lines = daily_lines(range(10), per_day=4) + moved
    shuffled = lines[:]
    random.Random(11).shuffle(shuffled)
    offset = 0
    rng = random.Random(3)
    while offset < len(shuffled):
        size = rng.randint(1, 9)
        chunk = shuffled[offset : offset + size]
        result = store.apply(
            "t", 0, [(offset + i, ln) for i, ln in enumerate(chunk)], offset + size - 1
        )
        assert result.refused == ()
        offset += size
    settle(store)
    want = expected_states(lines)
    got = {c.customer_id: state_tuple(c.state) for c in store.load(sorted(want))}
    assert got == {k: state_tuple(v) for k, v in want.items()}
    assert store.watermark() == max(ln.invoice_ts for ln in lines)
    assert store.ignored_counts() == {"no_customer": 1, "not_a_product": 1, "zero_price": 1}


def all_events(store) -> list[dict[str, object]]:
    return store.events(None, 100_000).events


def test_the_outbox_keeps_about_events_keep_and_never_trims_an_unpublished_event(store):
    store.retention = Retention(events_keep=50)
    store.commit_step(StepResult(events=[_event(f"a{i}", 1) for i in range(300)]), b"m")
    oldest = store.events(None, 1).cursors[0]
    events, cursor = store.unpublished_events()
    assert len(events) == 300 and cursor is not None
    store.mark_published(store.events(None, 100).cursors[-1])  # a part: nothing is trimmed
    assert len(all_events(store)) == 300
    store.mark_published(cursor)
    kept = all_events(store)
    assert 50 <= len(kept) < 150  # Redis trims whole stream nodes (~), memory exactly
    assert [e["customer_id"] for e in kept] == [f"a{i}" for i in range(300 - len(kept), 300)]
    # A cursor older than what is kept reads from the oldest kept.
    assert store.events(oldest, 3).events == kept[:3]
    assert store.unpublished_events() == ([], None)
    # However many events wait for the sink, none of them is trimmed.
    store.commit_step(StepResult(events=[_event(f"b{i}", 1) for i in range(200)]), b"m")
    store.mark_published(store.events(None, len(kept) + 20).cursors[-1])
    waiting, cursor = store.unpublished_events()
    assert [e["customer_id"] for e in waiting] == [f"b{i}" for i in range(20, 200)]
    assert len(all_events(store)) == len(kept) + 200
    assert cursor is not None
    store.mark_published(cursor)
    assert 50 <= len(all_events(store)) < 150
    assert all_events(store)[-1]["customer_id"] == "b199"


def test_a_history_keeps_its_customers_last_events(store):
    store.retention = Retention(history_keep=3)
    for seq in range(1, 6):
        store.commit_step(StepResult(events=[_event("1", seq)]), b"m")
    store.commit_step(StepResult(events=[_event("2", seq) for seq in range(1, 6)]), b"m")
    assert [e["event_id"] for e in store.history("1")] == ["1:3", "1:4", "1:5"]
    assert [e["event_id"] for e in store.history("2")] == ["2:3", "2:4", "2:5"]
    assert store.event_counts() == {"insider.entered:top_segment": 10}
    assert len(all_events(store)) == 10


def test_a_shuffled_year_applies_whole_with_the_default_retention(store):
    """The product promises any order: a year of the sample, shuffled, equals it in order."""
    dates = DateParser()
    lines = [parse_record(record.value, dates) for record in FileInvoiceSource(SAMPLE).records()]
    span = max(ln.invoice_ts for ln in lines) - min(ln.invoice_ts for ln in lines)
    assert span > 365 * DAY
    rng = random.Random(5)
    rng.shuffle(lines)
    for start in range(0, len(lines), 2000):
        chunk = lines[start : start + 2000]
        result = store.apply(
            "t", 0, [(start + i, ln) for i, ln in enumerate(chunk)], start + len(chunk) - 1
        )
        assert result.refused == ()
    want = expected_states(lines)
    got = {c.customer_id: state_tuple(c.state) for c in store.load(sorted(want))}
    assert got == {k: state_tuple(v) for k, v in want.items()}
