"""The fast reading of backup files (issue #17): whatever it reads, it reads exactly as csv.reader does.

A file is split at its `\\r\\n`s and each line at its commas (a quoted last field unquoted); every other file,
or line, goes to csv.reader. These tests compare the fast path's rows and images with csv.reader's.
"""

import csv
import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.engine.backup import BackupFormatError, _images, _line_row, _NotSimple, read_backup, simple_lines


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), dialect="excel"))


def fast_rows(text: str) -> list[list[str]] | None:
    """The rows the fast path gives, None when it hands the file to csv.reader."""
    lines = simple_lines(text)
    if lines is None:
        return None
    try:
        return [_line_row(line) for line in lines]
    except _NotSimple:
        return None


def tail_row(line: str) -> list[str] | None:
    """A row as the fast loop makes it: three unquoted fields, then the tail's fields (None: csv's turn)."""
    parts = line.split(",", 3)
    if len(parts) != 4 or '"' in "".join(parts[:3]):
        return None
    try:
        return [*parts[:3], *(_line_row(parts[3]) if parts[3] else [""])]  # as _parse_tail
    except _NotSimple:
        return None


def csv_images(text: str):
    return list(_images(csv.reader(io.StringIO(text, newline=""), dialect="excel")))


def read_text(text: str):
    return read_backup(io.StringIO(text, newline=""), "backup_Burgos.csv")


PROPS = "{'type': 'baseimage', 'nid': 1, 'note': 'a, b'}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\r\n",
        "a,b,c\r\n",
        "a,b,c",  # no terminator after the last row
        "a,,c,\r\n,,\r\n",  # empty fields
        "\r\n\r\na\r\n\r\n",  # blank lines
        " , \r\n",  # blank but not empty
        f'Burgos,n,1,active,5,c,o,True,"{PROPS}"\r\n',  # commas in the properties
        'a,b,"say ""hi"""\r\n',  # embedded quotes, doubled
        'a,b,""\r\n',  # an empty quoted field
        'a,b,""""\r\n',  # a field of one quote
        'a,b,"x"",""y"\r\n',  # doubled quotes around a comma
        "a,b\x0cc,d\x85e\u2028f\x1c\x0b\r\n",  # characters str.splitlines breaks at (csv does not)
    ],
)
def test_the_fast_path_reads_these_lines_as_csv_does(text):
    assert fast_rows(text) == csv_rows(text)


@pytest.mark.parametrize(
    "text",
    [
        'a,"b\r\nc",d\r\n',  # a newline in a quoted field
        "a,b\nc,d\n",  # another line ending
        "a,b\rc,d\r\n",  # a lone carriage return
        'a,"b\nc"\r\n',
        'a,"b"c\r\n',  # text after a closing quote
        'a,"b\r\n',  # a quote left open (csv reads on into the next line)
        'a,"b"""c"\r\nd"\r\n',  # a lone quote inside
        "a,b\x00c\r\n",  # NUL
    ],
)
def test_any_other_file_goes_to_csv_reader(text):
    assert fast_rows(text) is None


@pytest.mark.parametrize(
    "line",
    [
        '"a",b',  # a quoted first field
        'a,"b",c',  # a quoted field that is not the last
        'a, "b,c"',  # a space before the quote: csv keeps the quote literal
        'a,b"c,d',  # a quote inside an unquoted field
        'a,"b"c',  # text after a closing quote: strict csv refuses the line, the file goes to csv
    ],
)
def test_any_other_line_is_read_by_csv_reader(line):
    rows = fast_rows(line + "\r\n")
    assert rows is None or rows == csv_rows(line + "\r\n")


def test_a_field_over_csv_s_limit_goes_to_csv_reader():
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(20)
        assert fast_rows("a,b\r\n" * 10) == [["a", "b"]] * 10  # a long text of short lines
        assert fast_rows("a\r\n" + "x" * 21 + "\r\n") is None
    finally:
        csv.field_size_limit(limit)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet='ab ,"\r\n\x0c\x0b\x85\u2028', max_size=12), max_size=6).map("\r\n".join))
def test_whatever_the_fast_path_reads_is_what_csv_reader_reads(text):
    rows = fast_rows(text)
    if rows is not None:
        assert rows == csv_rows(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='ab ,"', max_size=30))
def test_a_row_split_after_its_third_comma_is_csv_reader_s_row(line):
    row = tail_row(line)
    if row is not None:
        assert row == csv_rows(line)[0]


@pytest.mark.parametrize(
    "text",
    [
        f'Burgos,a,1,active,5,c,o,True,"{PROPS}"\r\nBurgos,b,2,active,5,c,o,True,"{PROPS}"\r\n',
        "Burgos,a,1,active,5,c,o,True,{}\r\n\r\nBurgos,b,2,active,,,,False\r\n",  # blank row, 8 columns
        "Burgos,a,1,active,5,c,o,True,{},community,True,\"['x', 'y']\"\r\n",  # the lifecycle columns
        'Burgos,"a,b",1,active,5,c,o,True,{}\r\n',  # a quoted name: csv.reader reads the whole file
        "Burgos,a,1,active,5,c,o,True,\"{'k': 'v',\r\n 'l': 'w'}\"\r\n",  # a newline in the properties
    ],
)
def test_it_makes_the_images_csv_reader_s_rows_make(text):
    assert read_text(text) == csv_images(text)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("b,2,active,x,c,o,True,{'a'", "size 'x' is not an integer"),  # the size first, as csv's path
        ("b,2,active,5,c,o,True,{},elsewhere", "visibility 'elsewhere' is not one of"),
        ("b,2,active,5,c,o,True,{},public,True,amphora", "tags 'amphora' are not a list of strings"),
        ("b,2,active", "expected 9 columns (or up to 12), found 4"),
    ],
)
def test_a_bad_row_is_the_same_error_on_either_path(row, reason):
    for region in ("Burgos", '"Burgos"'):  # a quoted region: the file goes to csv.reader
        with pytest.raises(BackupFormatError, match=f"^backup_Burgos.csv line 2: {re.escape(reason)}"):
            read_text(f"Burgos,a,1,active,5,c,o,True,{{}}\r\n{region},{row}\r\n")


def test_an_error_names_the_same_line_on_either_path():
    bad = "Burgos,a,1,active,5,c,o,True,{}\r\n\r\nBurgos,b,2,active,x,c,o,True,{}\r\n"
    for text in (bad, 'Burgos,"q",0,active,5,c,o,True,{}\r\n' + bad):  # the second one goes to csv.reader
        with pytest.raises(BackupFormatError) as error:
            read_text(text)
        line = text.count("\r\n")
        assert str(error.value) == f"backup_Burgos.csv line {line}: size 'x' is not an integer"
