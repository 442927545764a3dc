"""Retailers' other files: purchases (CDNOW, order lists), Kaggle's US dates, the UCI .xlsx,
and files of which no line is accepted."""

from __future__ import annotations

import csv
import gzip
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import orjson
import pandas as pd
import pytest

from consumer.cli import replay_embedded
from consumer.export import export_frame
from consumer.file_source import FileInvoiceSource
from consumer.files import detect_layout, read_records
from consumer.records import parse_record
from consumer.settings import ConsumerSettings
from segmenter.errors import InputFileError, InvalidRecord
from segmenter.lines import InvoiceLine
from tests.conftest import SAMPLE
from tests.consumer.datasets import CDNOW, MISSING_CDNOW

needs_cdnow = pytest.mark.skipif(CDNOW is None, reason=MISSING_CDNOW)


def insiders(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def replay(path: Path) -> pd.DataFrame:
    """Every customer's features and segment after an embedded replay of ``path``."""
    store, _, _, _ = replay_embedded(path, ConsumerSettings(), None)
    return export_frame(store, store.watermark())


def sample_rows() -> tuple[list[str], list[list[str]]]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader)
        return header, list(reader)


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8"):
    with path.open("w", encoding=encoding, newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- the purchases layout: CDNOW ---------------------------------------------------------------


@needs_cdnow
def test_cdnow_header_is_the_purchases_layout():
    assert CDNOW is not None
    with CDNOW.open(encoding="ascii") as text:
        header = text.readline()
    assert header.strip() == "customer_id  date number_of_cds  dollar_value"
    layout = detect_layout(header.split())
    assert layout.name == "purchases"


@needs_cdnow
def test_cdnow_lines_become_whole_orders_with_ids_from_their_row():
    """The file's first lines (' 00001 19970101  1   11.77', ...), as records, by hand."""
    assert CDNOW is not None
    records = list(read_records(CDNOW))
    want = [
        ("00001", "1997-01-01", "1 item", 11.77),
        ("00002", "1997-01-12", "1 item", 12.00),
        ("00002", "1997-01-12", "5 items", 77.00),
        ("00003", "1997-01-02", "2 items", 20.76),
    ]
    for row, (record, (customer, day, items, value)) in enumerate(
        zip(records, want, strict=False), start=2
    ):
        assert record == {
            "event_id": f"L{row}:0",
            "invoice_no": f"L{row}",
            "stock_code": None,
            "description": items,
            "quantity": 1,
            "invoice_date": f"{day}T00:00:00",
            "unit_price": value,
            "customer_id": customer,
            "country": "",
        }
    assert len(records) == 69_659
    assert len({r["event_id"] for r in records}) == 69_659
    assert list(read_records(CDNOW)) == records  # a second read (publish) gives the same ids


@needs_cdnow
def test_cdnow_replay_equals_pandas_on_the_text_file(tmp_path):
    """`insiders replay` of the whole of CDNOW against a pandas reading of the text file.

    Each line is one purchase: a customer's invoices are their lines of positive value.
    """
    assert CDNOW is not None
    out = tmp_path / "cdnow.csv"
    done = insiders("replay", str(CDNOW), "--export", str(out))
    assert done.returncode == 0, done.stderr
    raw = pd.read_csv(CDNOW, sep=r"\s+", dtype={"customer_id": str, "date": str})
    assert len(raw) == 69_659 and raw["customer_id"].nunique() == 23_570
    raw["when"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    buys = raw[raw["dollar_value"] > 0]
    want = buys.groupby("customer_id").agg(
        revenue=("dollar_value", "sum"),
        invoices=("dollar_value", "size"),
        first_purchase_at=("when", "min"),
        last_purchase_at=("when", "max"),
    )
    got = pd.read_csv(
        out, dtype={"customer_id": str}, parse_dates=["first_purchase_at", "last_purchase_at"]
    ).set_index("customer_id")
    assert len(want) == 23_502  # 68 customers bought only for $0.00: ignored, as spec v1 says
    assert round(want["revenue"].sum(), 2) == 2_500_315.63
    assert sorted(got.index) == sorted(want.index)
    got = got.loc[want.index]
    assert (got["revenue"] - want["revenue"]).abs().max() < 0.005
    assert (got["invoices"].to_numpy() == want["invoices"].to_numpy()).all()
    assert (got["lines"].to_numpy() == want["invoices"].to_numpy()).all()
    for when in ("first_purchase_at", "last_purchase_at"):
        assert (got[when] == want[when]).all(), when
    assert (got["returned_value"] == 0).all()
    assert "zero_price': 80" in done.stderr  # the $0.00 purchases, counted as ignored


# --- the purchases layout: an order list --------------------------------------------------------

ORDERS = [
    ["order_id", "Customer ID", "Order Date", "amount", "items", "country"],
    ["A-1", "c1", "2011-03-01", "10.50", "2", "France"],
    ["A-2", "c1", "3/5/2011 14:30", "20.25", "1", "France"],
    ["A-2", "c1", "3/5/2011 14:30", "4.75", "1", "France"],  # a second line of order A-2
    ["", "c2", "20110310", "0", "1", "Spain"],  # no order id; zero value
    ["A-4", "c2", "2011-03-12 09:00:00", "-5.00", "1", "Spain"],  # a refund
    ["A-5", "", "2011-03-13", "7", "1", "Spain"],  # no customer
    ["A-6", "c2", "2011-03-14", "30", "3", "Spain"],
]


def test_an_order_list_is_read_as_purchases(tmp_path):
    path = write_csv(tmp_path / "orders.csv", ORDERS[0], ORDERS[1:])
    records = list(read_records(path))
    ids = ["A-1:0", "A-2:0", "A-2:1", "L5:0", "A-4:0", "A-5:0", "A-6:0"]
    assert [r["event_id"] for r in records] == ids
    assert [r["invoice_no"] for r in records] == ["A-1", "A-2", "A-2", "L5", "A-4", "A-5", "A-6"]
    assert [r["invoice_date"] for r in records] == [
        "2011-03-01",
        "2011-03-05T14:30:00",
        "2011-03-05T14:30:00",
        "2011-03-10T00:00:00",
        "2011-03-12T09:00:00",
        "2011-03-13",
        "2011-03-14",
    ]
    assert [(r["quantity"], r["unit_price"]) for r in records] == [
        (1, 10.5),
        (1, 20.25),
        (1, 4.75),
        (1, 0.0),
        (-1, 5.0),
        (1, 7.0),
        (1, 30.0),
    ]
    assert {r["stock_code"] for r in records} == {None}
    assert [r["customer_id"] for r in records] == ["c1", "c1", "c1", "c2", "c2", None, "c2"]
    assert records[0]["description"] == "2 items" and records[0]["country"] == "France"


def test_an_order_list_replays_to_its_sums(tmp_path):
    """Features worked out by hand from ORDERS: an order of two lines is one invoice."""
    path = write_csv(tmp_path / "orders.csv", ORDERS[0], ORDERS[1:])
    store, stats, _, _ = replay_embedded(path, ConsumerSettings(), None)
    assert stats.applied == 7 and not stats.rejected
    assert store.ignored_counts() == {"zero_price": 1, "no_customer": 1}
    got = export_frame(store, store.watermark()).set_index("customer_id")
    assert got.loc["c1", "revenue"] == pytest.approx(35.50)
    assert (got.loc["c1", "invoices"], got.loc["c1", "lines"]) == (2, 3)
    assert got.loc["c1", "first_purchase_at"] == datetime(2011, 3, 1)
    assert got.loc["c1", "last_purchase_at"] == datetime(2011, 3, 5, 14, 30)
    assert got.loc["c2", "revenue"] == pytest.approx(30.0)
    assert got.loc["c2", "invoices"] == 1
    assert got.loc["c2", "returned_value"] == pytest.approx(5.0)
    assert got.loc["c2", "first_purchase_at"] == datetime(2011, 3, 14)


@pytest.mark.parametrize(
    "header",
    [
        ["customer_id", "date", "amount", "discount"],  # a column we would drop
        ["customer_id", "date", "amount", "total"],  # two amounts
        ["customer_id", "amount"],  # no date
    ],
)
def test_a_purchases_header_with_unknown_or_missing_columns_is_refused(tmp_path, header):
    path = write_csv(tmp_path / "orders.csv", header, [["1"] * len(header)])
    with pytest.raises(InputFileError, match=",".join(header)):
        list(read_records(path))


def test_a_whitespace_file_must_be_purchases(tmp_path):
    """Only purchases may be whitespace-separated: UCI descriptions hold blanks."""
    path = tmp_path / "lines.txt"
    path.write_text("InvoiceNo StockCode Description\n536365 85123A HEART\n")
    with pytest.raises(InputFileError, match="unknown column layout"):
        list(read_records(path))


# --- whole orders through validation and both stores ------------------------------------------


def order_record(**changes: object) -> bytes:
    record: dict[str, object] = {
        "event_id": "L2:0",
        "invoice_no": "L2",
        "stock_code": None,
        "description": "1 item",
        "quantity": 1,
        "invoice_date": "1997-01-01T00:00:00",
        "unit_price": 11.77,
        "customer_id": "00001",
        "country": "",
    }
    return orjson.dumps(record | changes)


def test_a_null_stock_code_is_a_valid_whole_order():
    line = parse_record(order_record())
    assert line.stock_code is None
    assert line.unit_price_micros == 11_770_000 and line.quantity == 1
    with pytest.raises(InvalidRecord, match="wrong_type: event L2:0: field 'stock_code' is 5"):
        parse_record(order_record(stock_code=5))


def test_both_stores_apply_whole_orders_and_tell_repeats_from_conflicts(store):
    """Memory and Redis: orders count as purchases and returns, a repeat is a duplicate, the
    same id with another value is refused, and a code-less line differs from code 'None'."""
    day = 852_076_800  # 1997-01-01
    order = InvoiceLine("L2:0", "L2", None, 1, day, 11_770_000, "00001")
    refund = InvoiceLine("L3:0", "L3", None, -1, day + 86_400, 2_000_000, "00001")
    free = InvoiceLine("L4:0", "L4", None, 1, day, 0, "00001")
    result = store.apply("t", 0, [(0, order), (1, refund), (2, free)], 2)
    assert (result.applied, result.duplicates, result.refused) == (3, 0, ())
    assert store.ignored_counts() == {"zero_price": 1}
    (customer,) = store.load(["00001"])
    state = customer.state
    assert (state.revenue_micros, state.invoices, state.lines, state.units) == (
        11_770_000,
        1,
        1,
        1,
    )
    assert (state.returned_micros, state.returned_units) == (2_000_000, 1)
    assert (state.first_ts, state.last_ts) == (day, day)
    assert store.apply("t", 0, [(3, order)], 3).duplicates == 1
    other = InvoiceLine("L2:0", "L2", None, 1, day, 12_000_000, "00001")
    named = InvoiceLine("L2:0", "L2", "None", 1, day, 11_770_000, "00001")
    refused = store.apply("t", 0, [(4, other), (5, named)], 5).refused
    assert [(r.offset, r.reason) for r in refused] == [
        (4, "conflicting_duplicate"),
        (5, "conflicting_duplicate"),
    ]


# --- Kaggle's copy of UCI: US dates, cp1252 -----------------------------------------------------


def us_date(iso: str) -> str:
    """'2010-12-01 08:26:00' as the Kaggle copy writes it: '12/1/2010 8:26'."""
    moment = datetime.fromisoformat(iso)
    assert moment.second == 0  # UCI dates are to the minute: the rewrite loses nothing
    return f"{moment.month}/{moment.day}/{moment.year} {moment.hour}:{moment.minute:02d}"


def test_kaggle_us_dates_read_as_the_uci_file(tmp_path):
    """The sample rewritten as Kaggle's copy is: M/D/YYYY H:MM dates, cp1252, CRLF."""
    header, rows = sample_rows()
    kaggle = [[*row[:4], us_date(row[4]), *row[5:]] for row in rows]
    assert any(row[4].startswith("12/13/2010 ") for row in kaggle)  # day > 12: month first
    path = write_csv(tmp_path / "data.csv", header, kaggle, encoding="cp1252")
    assert "£".encode("cp1252") in path.read_bytes()
    assert list(read_records(path)) == list(read_records(SAMPLE))
    pd.testing.assert_frame_equal(replay(path), replay(SAMPLE))


# --- the UCI .xlsx ------------------------------------------------------------------------------


def excel_cells(row: list[str]) -> list[object]:
    """A UCI row typed as the published Online Retail.xlsx types it."""
    invoice, stock, description, qty, when, price, customer, country = row
    return [
        int(invoice) if invoice.isdigit() else invoice,
        int(stock) if stock.isdigit() else stock,
        description or None,
        int(qty),
        datetime.fromisoformat(when),
        float(price),
        float(customer) if customer else None,
        country,
    ]


def test_an_xlsx_reads_and_replays_as_its_csv_rows(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    header, rows = sample_rows()
    rows = rows[:3000]
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Online Retail")
    sheet.append(header)
    for row in rows:
        sheet.append(excel_cells(row))
    xlsx = tmp_path / "Online Retail.xlsx"
    book.save(xlsx)
    text = write_csv(tmp_path / "first.csv", header, rows)
    records = list(read_records(xlsx))
    assert len(records) == 3000
    assert records == list(read_records(text))
    pd.testing.assert_frame_equal(replay(xlsx), replay(text))


def test_a_purchases_xlsx_with_date_cells(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["customer_id", "date", "amount"])
    sheet.append([17850.0, datetime(2011, 3, 1, 9, 30), 12.5])
    sheet.append([None, None, None])  # a blank row: skipped, yet it counts as a row
    sheet.append(["c9", datetime(2011, 3, 2), 3])
    path = tmp_path / "orders.xlsx"
    book.save(path)
    records = list(read_records(path))
    assert [
        (r["event_id"], r["customer_id"], r["invoice_date"], r["unit_price"]) for r in records
    ] == [
        ("L2:0", "17850", "2011-03-01T09:30:00", 12.5),
        ("L4:0", "c9", "2011-03-02T00:00:00", 3.0),
    ]


def test_a_file_named_xlsx_that_is_not_a_workbook_is_one_line(tmp_path):
    path = tmp_path / "Online Retail.xlsx"
    path.write_bytes(b"InvoiceNo,StockCode\n")
    done = insiders("replay", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "cannot read it as an .xlsx workbook" in done.stderr


# --- a file of which no line is accepted --------------------------------------------------------

DAY_FIRST = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    "536365,85123A,HEART,6,13/1/2011 8:26,2.55,17850,United Kingdom\n"
    "536365,71053,LANTERN,6,13/1/2011 8:26,3.39,17850,United Kingdom\n"
    "536366,22633,HAND WARMER,6,14/1/2011 8:28,-1.85,17850,United Kingdom\n"
)


@pytest.mark.parametrize(
    "command",
    [
        ["replay"],
        ["evaluate", "--draws", "10"],
        ["publish", "--bootstrap", "127.0.0.1:1"],  # refused before Kafka is asked
    ],
)
def test_a_file_with_no_accepted_line_fails_in_one_line_with_its_reasons(tmp_path, command):
    """Day-first dates are never guessed: every line is rejected, and the command says why."""
    path = tmp_path / "day_first.csv"
    path.write_text(DAY_FIRST)
    done = insiders(command[0], str(path), *command[1:])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr == (
        f"insiders: error: no line of {path} was accepted: "
        "2 bad_date (event 536365:0: field 'invoice_date' is '13/1/2011 8:26', not ISO 8601); "
        "1 negative_price (event 536366:0: field 'unit_price' is -1.85)\n"
    )


def test_a_file_with_a_header_and_no_rows_fails_in_one_line(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text(DAY_FIRST.splitlines()[0] + "\n")
    done = insiders("replay", str(path))
    assert done.returncode == 2
    assert done.stderr == f"insiders: error: no line of {path} was accepted: it has no data rows\n"


def test_one_accepted_line_is_enough(tmp_path):
    """A file whose last line alone is valid replays: its bad lines are dead-lettered."""
    path = tmp_path / "mostly_bad.csv"
    path.write_text(DAY_FIRST + "536367,22633,HAND WARMER,6,1/14/2011 8:28,1.85,17850,UK\n")
    store, stats, _, _ = replay_embedded(path, ConsumerSettings(), None)
    assert stats.applied == 1
    assert dict(stats.rejected) == {"bad_date": 2, "negative_price": 1}
    assert [c.customer_id for c in store.customers()] == ["17850"]


# --- a history replays in time order ------------------------------------------------------------


def test_a_file_out_of_time_order_replays_sorted_by_date_and_a_cut_stops_it(tmp_path):
    """CDNOW is sorted by customer: replayed in file order, its first customer's 1998
    purchases would set the clock before the others' 1997 ones arrive."""
    in_order = write_csv(
        tmp_path / "in_order.csv",
        ["customer_id", "date", "amount"],
        [["a", "19970101", "5"], ["b", "19970301", "6"], ["a", "19970601", "7"]],
    )
    source = FileInvoiceSource(in_order, until=datetime(1997, 3, 31))
    assert [orjson.loads(r.value)["event_id"] for r in source.records()] == ["L2:0", "L3:0"]
    shuffled = write_csv(
        tmp_path / "by_customer.csv",
        ["customer_id", "date", "amount"],
        [["a", "19970601", "7"], ["a", "19970101", "5"], ["b", "19970301", "6"]],
    )
    records = list(FileInvoiceSource(shuffled).records())
    assert [orjson.loads(r.value)["event_id"] for r in records] == ["L3:0", "L4:0", "L2:0"]
    assert [r.offset for r in records] == [0, 1, 2]  # positions in the order replayed
    source = FileInvoiceSource(shuffled, until=datetime(1997, 3, 31))
    assert [orjson.loads(r.value)["event_id"] for r in source.records()] == ["L3:0", "L4:0"]


def test_a_line_a_little_late_stays_where_the_file_has_it(tmp_path):
    """Less than a day behind the latest line before it: delivered as a stream would."""
    late = write_csv(
        tmp_path / "late.csv",
        ["customer_id", "date", "amount"],
        [["a", "1997-01-01 10:00", "5"], ["b", "1997-01-01 09:00", "6"], ["a", "1997-01-02", "7"]],
    )
    records = list(FileInvoiceSource(late).records())
    assert [orjson.loads(r.value)["event_id"] for r in records] == ["L2:0", "L3:0", "L4:0"]


def test_a_date_the_consumer_rejects_does_not_make_a_file_out_of_order(tmp_path):
    """One line dated 9999 (or 1900) in a file in time order: it is rejected as implausible,
    and the rest streams in file order; before, it made the whole file be read and sorted."""
    absurd = write_csv(
        tmp_path / "absurd.csv",
        ["customer_id", "date", "amount"],
        [
            ["a", "19970101", "5"],
            ["b", "99991231", "6"],
            ["c", "19000101", "1"],
            ["a", "19970301", "7"],
        ],
    )
    records = list(FileInvoiceSource(absurd).records())
    assert [orjson.loads(r.value)["event_id"] for r in records] == ["L2:0", "L3:0", "L4:0", "L5:0"]
