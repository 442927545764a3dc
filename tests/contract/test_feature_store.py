"""The feature store contract, run against the in-memory store and the real Redis store."""

from __future__ import annotations

import random

from consumer.memory import MemoryFeatureStore
from segmenter.events import ENTERED, InsiderEvent, Reason
from segmenter.features import CustomerState
from segmenter.lines import InvoiceLine, LineKind, classify
from segmenter.policy import InsiderStatus
from segmenter.segmentation import StepResult

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
