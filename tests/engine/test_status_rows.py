"""The --show-status rows (issue #17): formatted directly, they are exactly csv.writer's, quoting included."""

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.engine.glancesync import OrderedStatuses, plain_names
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


def ordered(names: list[str], statuses: list[str]) -> OrderedStatuses:
    exceptions = [(index, status) for index, status in enumerate(statuses) if status != "ok"]
    return OrderedStatuses(names, exceptions, plain_names(names))


def test_runs_of_ok_rows_are_the_rows_of_their_pairs():
    names = ["a", "b", "c", "d", "e"]
    for statuses in (
        ["ok"] * 5,
        ["pending_upload"] + ["ok"] * 4,
        ["ok"] * 4 + ["error_ami"],
        ["ok", "x", "ok", "ok", "y"],
    ):
        rows = ordered(names, statuses)
        assert rows.pairs() == list(zip(statuses, names, strict=True))
        assert rows.rows("other:Madrid") == rows_of_pairs("other:Madrid", rows.pairs())
    assert ordered([], []).rows("Burgos") == ""


def test_names_or_a_region_the_writer_quotes_take_the_writer():
    rows = ordered(["a,b", "plain"], ["ok", "pending_upload"])
    assert not rows.plain_names
    assert rows.rows("Burgos") == rows_of_pairs("Burgos", rows.pairs())
    plain = ordered(["a", "b"], ["ok", "ok"])
    assert plain.rows('odd"region') == rows_of_pairs('odd"region', plain.pairs())


@settings(max_examples=300, deadline=None)
@given(
    fullname=st.text(min_size=1, max_size=8),
    rows=st.lists(st.tuples(st.text(max_size=8), st.sampled_from(["ok", "ok", "ok", *STATUSES])), max_size=12),
)
def test_any_ordered_rows_are_the_writer_s(fullname, rows):
    names, statuses = [name for name, _ in rows], [status for _, status in rows]
    assert ordered(names, statuses).rows(fullname) == rows_of_pairs(fullname, list(zip(statuses, names, strict=True)))
