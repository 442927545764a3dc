"""read_records / detect_layout on small files in the three layouts, and the file errors."""

from __future__ import annotations

import gzip
import random

import pytest

from consumer.files import detect_layout, read_dates, read_records
from segmenter.errors import InputFileError

UCI_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
UCI2_COLUMNS = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price"]
UCI2_COLUMNS += ["Customer ID", "Country"]
UCI_ROWS = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,"
    "United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom",
    '536366,22633,"HAND WARMER, UNION JACK",6,2010-12-01 08:28:00,1.85,,United Kingdom',
    "536365,84406B,CREAM CUPID HEARTS COAT HANGER,8,2010-12-01 08:26:00,2.75,17850,United Kingdom",
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527,United Kingdom",
]


UCI_EXPECTED_FIELDS = [
    ("536365:0", "536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "08:26", 2.55),
    ("536365:1", "536365", "71053", "WHITE METAL LANTERN", 6, "08:26", 3.39),
    ("536366:0", "536366", "22633", "HAND WARMER, UNION JACK", 6, "08:28", 1.85),
    ("536365:2", "536365", "84406B", "CREAM CUPID HEARTS COAT HANGER", 8, "08:26", 2.75),
    ("C536379:0", "C536379", "D", "Discount", -1, "09:41", 27.5),
]
UCI_CUSTOMERS = ["17850", "17850", None, "17850", "14527"]


def uci_expected() -> list[dict]:
    return [
        {
            "event_id": event_id,
            "invoice_no": invoice,
            "stock_code": stock,
            "description": description,
            "quantity": qty,
            "invoice_date": f"2010-12-01T{clock}:00",
            "unit_price": price,
            "customer_id": customer,
            "country": "United Kingdom",
        }
        for (event_id, invoice, stock, description, qty, clock, price), customer in zip(
            UCI_EXPECTED_FIELDS, UCI_CUSTOMERS, strict=True
        )
    ]


def write(path, text: str, encoding: str = "utf-8"):
    data = text.encode(encoding)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["uci.csv", "uci.csv.gz"])
def test_uci_layout(tmp_path, name):
    """The UCI Online Retail layout, plain or gzipped, yields one record per row."""
    path = write(tmp_path / name, "\n".join([UCI_HEADER, *UCI_ROWS]) + "\n")
    assert list(read_records(path)) == uci_expected()


def test_uci_layout_with_crlf_bom_and_blank_lines(tmp_path):
    """A BOM, CRLF line ends and blank lines do not change the records."""
    text = "\ufeff" + "\r\n".join([UCI_HEADER, UCI_ROWS[0], "", *UCI_ROWS[1:], ""])
    path = write(tmp_path / "excel.csv", text)
    assert list(read_records(str(path))) == uci_expected()


def test_online_retail_ii_layout(tmp_path):
    """Invoice / Price / 'Customer ID' columns map to the same record fields."""
    text = (
        f"{','.join(UCI2_COLUMNS)}\n"
        "489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,"
        "United Kingdom\n"
        "489434,79323P,PINK CHERRY LIGHTS,12,2009-12-01 07:45:00,6.75,13085.0,United Kingdom\n"
        "489435,22350,CAT BOWL ,12,2009-12-01 07:46:00,2.55,13085.0,United Kingdom\n"
    )
    path = write(tmp_path / "online_retail_II.csv", text)
    records = list(read_records(path))
    assert [r["event_id"] for r in records] == ["489434:0", "489434:1", "489435:0"]
    assert [r["invoice_no"] for r in records] == ["489434", "489434", "489435"]
    assert [r["unit_price"] for r in records] == [6.95, 6.75, 2.55]
    assert [r["quantity"] for r in records] == [12, 12, 12]
    assert {r["customer_id"] for r in records} == {"13085"}
    assert records[1]["stock_code"] == "79323P"
    assert records[2]["invoice_date"] == "2009-12-01T07:46:00"
    assert records[2]["description"] == "CAT BOWL "


def test_kaggle_layout_cp1252(tmp_path):
    """Kaggle copy: extra empty column, 29-Nov-16 dates, float ids, cp1252 text with '£'."""
    text = (
        f"{UCI_HEADER},\r\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,29-Nov-16,2.55,17850.0,"
        "United Kingdom,\r\n"
        "536365,22423,£10 GIFT VOUCHER,1,29-Nov-16,10,17850.0,United Kingdom,\r\n"
        "536370,POST,POSTAGE,3,01-Dec-16,18,,France,\r\n"
    )
    path = write(tmp_path / "data.csv", text, encoding="cp1252")
    assert "£".encode("cp1252") in path.read_bytes()
    records = list(read_records(path))
    assert len(records) == 3
    first, voucher, postage = records
    assert first["invoice_date"] == "2016-11-29T00:00:00"
    assert first["customer_id"] == "17850"
    assert first["quantity"] == 6 and first["unit_price"] == 2.55
    assert voucher["description"] == "£10 GIFT VOUCHER"
    assert voucher["event_id"] == "536365:1"
    assert voucher["unit_price"] == 10
    assert postage["invoice_date"] == "2016-12-01T00:00:00"
    assert postage["customer_id"] is None
    assert postage["country"] == "France"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        # UCI: a blank line, a short row, a row with no invoice, no date, an unreadable date,
        # US and compact dates, and the date repeated (normalised once, given to each row).
        (
            "uci.csv",
            "\n".join(
                [
                    UCI_HEADER,
                    *UCI_ROWS[:2],
                    "",
                    "536367,22,TOO SHORT",
                    ",85123A,NO INVOICE,6,2010-12-02 10:00:00,2.55,17850,United Kingdom",
                    "536368,85123A,NO DATE,6,,2.55,17850,United Kingdom",
                    "536369,85123A,BAD DATE,6,2010-13-45 99:00,2.55,17850,United Kingdom",
                    "536370,85123A,US DATE,6,12/13/2010 18:26,2.55,17850,United Kingdom",
                    "536371,85123A,COMPACT,6,20101214,2.55,17850,United Kingdom",
                    ",,,,,,,",
                    *UCI_ROWS[2:],
                ]
            ),
        ),
        (
            "kaggle.csv",
            f"{UCI_HEADER},\n536365,1,A,6,29-Nov-16,2.55,17850.0,UK,\n"
            "536366,1,A,1,Nov 30,1,,UK,\n536367,1,A,1,01-Dec-16,1,,UK,\n",
        ),
        (
            "orders.csv",
            "customer_id,date,amount\n17850,2011-03-01 09:30:00,12.5\n,,\nc9,,3\nc9,3/2/2011,4\n",
        ),
        (
            "cdnow.txt",
            "customer_id  date number_of_cds  dollar_value\n 00001 19970101  1   11.77\n"
            " 00002 19970112  1   12.00\n\n 00001 1997011  2   2.00\n",
        ),
    ],
)
def test_the_dates_alone_are_the_records_dates(tmp_path, name, text):
    """The time-order check reads only the dates: the same ones, row for row, as the records."""
    path = write(tmp_path / name, text)
    records = list(read_records(path))
    assert len(records) >= 3
    assert list(read_dates(path)) == [record["invoice_date"] for record in records]


def test_event_ids_are_invoice_and_position_and_deterministic(tmp_path):
    """event_id = '<invoice>:<n-th line of that invoice in the file>', the same on every read."""
    rng = random.Random(5)
    invoices = [str(540_000 + rng.randrange(12)) for _ in range(200)]
    rows = [f"{inv},22423,ITEM,1,2011-01-05 10:00:00,1.25,12346,UK" for inv in invoices]
    path = write(tmp_path / "many.csv.gz", "\n".join([UCI_HEADER, *rows]) + "\n")
    expected, seen = [], {}
    for inv in invoices:
        expected.append(f"{inv}:{seen.get(inv, 0)}")
        seen[inv] = seen.get(inv, 0) + 1
    first = list(read_records(path))
    second = list(read_records(path))
    assert [r["event_id"] for r in first] == expected
    assert first == second
    assert len(set(expected)) == len(expected)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (UCI_HEADER.split(","), "uci"),
        (["\ufeffInvoiceNo", *UCI_HEADER.split(",")[1:]], "uci"),
        ([*UCI_HEADER.split(","), ""], "kaggle"),
        ([*UCI_HEADER.split(","), " ", ""], "kaggle"),
        (UCI2_COLUMNS, "uci2"),
    ],
)
def test_detect_layout(header, name):
    """Headers of the three known layouts are recognised."""
    assert detect_layout(header).name == name


@pytest.mark.parametrize(
    "header",
    [
        ["Foo", "Bar", "Baz"],
        [*UCI_HEADER.split(","), "Extra"],
        UCI_HEADER.split(",")[:7],
        ["Invoice", *UCI_HEADER.split(",")[1:]],
    ],
)
def test_detect_layout_rejects_unknown_headers(header):
    """Anything else is an InputFileError naming the columns found."""
    with pytest.raises(InputFileError) as caught:
        detect_layout(header)
    assert ",".join(header) in str(caught.value)


def test_unknown_header_in_a_file(tmp_path):
    """A file in an unknown layout fails with InputFileError naming its columns."""
    path = write(tmp_path / "orders.csv", "order_id,sku,qty\n1,A,2\n")
    with pytest.raises(InputFileError, match="order_id,sku,qty"):
        list(read_records(path))


def test_missing_file(tmp_path):
    """A path that does not exist is an InputFileError naming it."""
    path = tmp_path / "absent.csv"
    with pytest.raises(InputFileError, match=r"absent\.csv"):
        list(read_records(path))


def test_a_folder_is_not_a_file(tmp_path):
    """A folder passed as the input file is an InputFileError."""
    with pytest.raises(InputFileError, match="folder"):
        list(read_records(tmp_path))


@pytest.mark.parametrize("name", ["empty.csv", "empty.csv.gz"])
def test_empty_file(tmp_path, name):
    """A file with no header row is an InputFileError."""
    path = write(tmp_path / name, "")
    with pytest.raises(InputFileError, match="empty"):
        list(read_records(path))


def big_uci_text(rows: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    lines = [UCI_HEADER]
    for n in range(rows):
        desc = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ ") for _ in range(30))
        lines.append(
            f"{550_000 + n // 5},{rng.randrange(10_000, 99_999)},{desc},{rng.randint(1, 99)},"
            f"2011-0{1 + n % 9}-1{n % 10} 1{n % 10}:{10 + n % 50}:00,"
            f"{rng.randint(1, 9999) / 100},{rng.randrange(12_346, 18_287)},United Kingdom"
        )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("rows", "keep"), [(20, 0.6), (20_000, 0.5)])
def test_truncated_gzip_raises_input_file_error(tmp_path, rows, keep):
    """A cut .gz fails with InputFileError when iterated, early (small file) or late (large)."""
    data = gzip.compress(big_uci_text(rows).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: int(len(data) * keep)])
    read = 0
    with pytest.raises(InputFileError, match=r"cut\.csv\.gz"):
        for _ in read_records(path):
            read += 1
    assert read < rows
    if rows > 10_000:  # the cut lies past the 64 KiB encoding sniff: rows came before it
        assert read > 1_000


def test_large_gzip_reads_completely(tmp_path):
    """The untruncated version of the large file reads every row (the cut is what fails)."""
    path = write(tmp_path / "whole.csv.gz", big_uci_text(20_000))
    assert sum(1 for _ in read_records(path)) == 20_000


def test_cp1252_character_after_the_first_64_kib(tmp_path):
    """A cp1252 '£' far into the file is still decoded (or at worst an InputFileError)."""
    text = big_uci_text(1_000) + "581587,22423,£5 VOUCHER,1,2011-12-09 12:50:00,5,12680,France\n"
    path = write(tmp_path / "late.csv", text, encoding="cp1252")
    assert path.read_bytes().index("£".encode("cp1252")) > 65_536
    records = list(read_records(path))
    assert records[-1]["description"] == "£5 VOUCHER"
