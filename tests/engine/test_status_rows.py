"""The --show-status rows (issue #17): formatted directly, they are exactly csv.writer's, quoting included."""

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.engine.glancesync import status_rows as rows_of_pairs
from sync.engine.model import STATUSES, Image
from sync.engine.status import ImageStatus


def written(fullname: str, statuses: list[ImageStatus]) -> str:
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\r\n").writerows((e.status, fullname, e.master.name) for e in statuses)
    return stream.getvalue()


def entries(names: list[str]) -> list[ImageStatus]:
    return [ImageStatus(STATUSES[i % len(STATUSES)], Image(name, str(i), "M"), None) for i, name in enumerate(names)]


def status_rows(fullname: str, statuses: list[ImageStatus]) -> str:
    return rows_of_pairs(fullname, [(e.status, e.master.name) for e in statuses])


def test_plain_rows_are_the_writer_s():
    statuses = entries(["debian-12", "ubuntu 24.04", "x"])
    assert status_rows("other:Madrid", statuses) == written("other:Madrid", statuses)
    assert status_rows("Burgos", []) == ""


def test_names_and_regions_the_writer_quotes_are_quoted_as_it_does():
    statuses = entries(["a,b", 'say "hi"', "two\r\nlines", "cr\ronly", "nl\nonly", "nul\0", " ", "plain"])
    assert status_rows("Burgos", statuses) == written("Burgos", statuses)
    assert status_rows("odd,region", entries(["a"])) == written("odd,region", entries(["a"]))


@settings(max_examples=300, deadline=None)
@given(fullname=st.text(min_size=1, max_size=8), names=st.lists(st.text(max_size=8), max_size=6))
def test_any_rows_are_the_writer_s(fullname, names):
    statuses = entries(names)
    assert status_rows(fullname, statuses) == written(fullname, statuses)
