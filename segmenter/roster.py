"""Every customer's running totals and status as columns: what the daily ranking reads.

The daily ranking needs a few numbers of every customer (money, invoices, first and
last purchase, membership). Held as Python objects, reading them costs more than the
ranking itself; held as columns, the ranking is array code over every row plus Python
work only for the customers whose membership or segment changes.

The one writer of the segmentation (the pipeline) keeps a roster up to date: each
committed step puts the customers it read and the statuses it wrote, in O(customers
changed).

>>> from segmenter.features import CustomerState
>>> from segmenter.policy import InsiderStatus
>>> roster = Roster()
>>> roster.put("42", CustomerState(revenue_micros=5_000_000, invoices=1, lines=2), InsiderStatus())
>>> roster.put_status("42", InsiderStatus(segment=1, insider=True, insider_since=7, sequence=1))
>>> len(roster), roster.status(0).insider, roster.state(0).revenue_micros
(1, True, 5000000)
>>> roster.column("invoices")
array([1])
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from segmenter.features import CustomerState
from segmenter.policy import InsiderStatus

# A missing value (no purchase yet: no first or last time; never segmented) in an int64 column.
NONE = np.iinfo(np.int64).min

STATE_COLUMNS = (
    "revenue_micros",
    "invoices",
    "lines",
    "units",
    "returned_micros",
    "returned_units",
    "first_ts",
    "last_ts",
)
STATUS_COLUMNS = ("segment", "insider", "insider_since", "sequence", "model_version")


def _int(value: int | bool | None) -> int:
    return NONE if value is None else int(value)


def _optional(value: int) -> int | None:
    return None if value == NONE else int(value)


class Roster:
    """Customers as rows of int64 columns (``None`` stored as :data:`NONE`).

    Rows are kept in the order customers were first put; ``ids[row]`` names each.
    Invoice numbers are not kept: the ranking does not read them.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self.ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._data = np.full((max(capacity, 1), len(STATE_COLUMNS) + len(STATUS_COLUMNS)), NONE)
        self._at = {name: j for j, name in enumerate(STATE_COLUMNS + STATUS_COLUMNS)}

    @classmethod
    def of(cls, customers: Iterable[tuple[str, CustomerState, InsiderStatus]]) -> Roster:
        rows: dict[str, list[int]] = {}  # a customer given twice (a scan may): the last copy
        for customer_id, state, status in customers:
            rows[customer_id] = [_int(getattr(state, name)) for name in STATE_COLUMNS] + [
                _int(getattr(status, name)) for name in STATUS_COLUMNS
            ]
        roster = cls(capacity=len(rows))
        if rows:
            roster._data[: len(rows)] = np.array(list(rows.values()), dtype=np.int64)
        roster.ids = list(rows)
        roster._rows = {customer_id: row for row, customer_id in enumerate(roster.ids)}
        return roster

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> np.ndarray:
        """One column over every row (a view: read it, do not keep it across puts)."""
        return self._data[: len(self.ids), self._at[name]]

    def _row(self, customer_id: str) -> int:
        row = self._rows.get(customer_id)
        if row is None:
            row = self._rows[customer_id] = len(self.ids)
            self.ids.append(customer_id)
            if row == len(self._data):
                grown = np.full((2 * len(self._data), self._data.shape[1]), NONE)
                grown[:row] = self._data
                self._data = grown
        return row

    def put(self, customer_id: str, state: CustomerState, status: InsiderStatus) -> None:
        """A customer's totals and status, as last read or written."""
        row = self._row(customer_id)
        self._data[row, : len(STATE_COLUMNS)] = [
            _int(getattr(state, name)) for name in STATE_COLUMNS
        ]
        self._put_status(row, status)

    def put_status(self, customer_id: str, status: InsiderStatus) -> None:
        """A new status of a customer already on the roster (others are ignored)."""
        row = self._rows.get(customer_id)
        if row is not None:
            self._put_status(row, status)

    def _put_status(self, row: int, status: InsiderStatus) -> None:
        self._data[row, len(STATE_COLUMNS) :] = [
            _int(getattr(status, name)) for name in STATUS_COLUMNS
        ]

    def state(self, row: int) -> CustomerState:
        *totals, first, last = self._data[row, : len(STATE_COLUMNS)].tolist()
        revenue, invoices, lines, units, returned, returned_units = totals
        first_ts, last_ts = _optional(first), _optional(last)
        return CustomerState(
            revenue, invoices, lines, units, returned, returned_units, first_ts, last_ts
        )

    def status(self, row: int) -> InsiderStatus:
        segment, insider, since, sequence, version = self._data[row, len(STATE_COLUMNS) :].tolist()
        return InsiderStatus(_optional(segment), bool(insider), _optional(since), sequence, version)
