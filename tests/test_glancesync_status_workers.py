"""`manage.py glancesync --show-status` of a file cloud in worker processes (issue #17): the same output."""

import gc
import io
import logging

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import OutputWrapper

from sync.engine.glancesync import GlanceSync
from sync.engine.reporter import Reporter
from sync.management.commands.glancesync import _client_logger, _replay, status_tasks

CONFIG = """\
[main]
master_region = Valladolid

[master]
credential = user,ZmFrZXBhc3N3b3JkLG9mY291cnNl,http://server:4730/v2.0,tenant1
metadata_set = type

[other]
credential = user2,ZmFrZXBhc3N3b3JkLG9mY291cnNl,http://server2:4730/v2.0,tenant2
metadata_condition = image.user_properties.get('type') == 'a'
"""

MASTER = [f"Valladolid,image{n:02d},{n:03d},active,{n}000,c{n},tenant1id,True,{{'type': 'a'}}" for n in range(1, 7)]
REGIONS = {
    "Burgos": ["Burgos,image01,101,active,1000,c1,tenant1id,True,{'type': 'a'}"],
    "Leon": [
        "Leon,image02,201,active,2000,c2,someone,True,{'type': 'a'}",  # a foreign copy: a warning
        "Leon,image03,202,queued,3000,c3,tenant1id,True,{'type': 'a'}",  # an inactive one: another
    ],
    "Soria": ["Soria,image04,301,active,4000,c4,tenant1id,True,{'type': 'b'}"],
    "Zamora": ["Zamora,image05,401,active,x,c5,tenant1id,True,{}"],  # malformed: the region fails
    "other:Madrid": ["other:Madrid,image06,501,active,6000,c6,tenant2id,True,{'type': 'a'}"],
}


@pytest.fixture
def case(tmp_path, monkeypatch):
    cloud = tmp_path / "cloud"
    cloud.mkdir()
    for region, rows in {"Valladolid": MASTER, **REGIONS}.items():
        (cloud / f"backup_{region}.csv").write_text("".join(r + "\r\n" for r in rows))
    config = tmp_path / "glancesync.conf"
    config.write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GLANCESYNC_CLOUD", raising=False)
    return {"config": config, "cloud": cloud}


def show_status(case, monkeypatch, workers: str) -> tuple[str, str, str]:
    monkeypatch.setenv("GLANCESYNC_STATUS_WORKERS", workers)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(
            "glancesync", "--config-file", str(case["config"]), "--cloud", f"files:{case['cloud']}",
            "--show-status", "master:", "other:", stdout=out, stderr=err,
        )  # fmt: skip
    return out.getvalue(), err.getvalue(), str(failed.value)


def test_workers_print_what_one_process_prints_in_the_same_order(case, monkeypatch):
    alone = show_status(case, monkeypatch, "1")
    assert show_status(case, monkeypatch, "3") == alone
    out, err, failed = alone
    assert out.count("\r\n") == 4 * 6  # Burgos, Leon, Soria, other:Madrid (Zamora failed)
    assert out.startswith("ok,Burgos,image01\r\n") and out.endswith("ok,other:Madrid,image06\r\n")
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["WARNING", "WARNING", "ERROR"]
    assert "Leon: image image02" in lines[0] and "Leon: state of image image03" in lines[1]
    assert lines[2].startswith("ERROR:Zamora: Error retrieving images from region. Cause ")
    assert failed == "failed regions: Zamora"


def test_a_bad_number_of_workers_is_refused(case, monkeypatch):
    assert show_status(case, monkeypatch, "many") == (
        "",
        "",
        "GLANCESYNC_STATUS_WORKERS='many': not a number of processes",
    )


def test_one_process_keeps_the_collector_off_for_every_region_of_a_file_cloud(case, monkeypatch):
    seen: list[bool] = []
    export_status = GlanceSync.export_status

    def recorded(self, region, stream, reporter=None):
        seen.append(gc.isenabled())
        return export_status(self, region, stream, reporter)

    monkeypatch.setattr(GlanceSync, "export_status", recorded)
    assert gc.isenabled()
    out, _, failed = show_status(case, monkeypatch, "1")
    assert seen == [False] * 5  # each region's paused blocks re-enabled it, then collections scanned them
    assert gc.isenabled()  # as it was found
    assert out.count("\r\n") == 4 * 6 and failed == "failed regions: Zamora"


RECORDS = [
    (logging.DEBUG, "below the logger's level: dropped"),
    (logging.INFO, "Burgos: 100% done, %s and %(name)s stay as they are"),
    (logging.WARNING, "Leon: image image02 (UUID 201) is owned by other tenant: someone"),
    (logging.ERROR, "Zamora: Error retrieving images from region. Cause x"),
]


def logged(replay, configure, wrapped: bool) -> str:
    """What the command's logger writes for RECORDS, given one way or the other (`configure` changes it; it
    may give the logger a second handler writing to EXTRA), to Django's OutputWrapper or to a plain stream."""
    stream, EXTRA[:] = io.StringIO(), [io.StringIO()]
    logger = _client_logger(OutputWrapper(stream) if wrapped else stream)
    configure(logger)
    try:
        replay(Reporter(logger))
    finally:
        logger.filters, logger.handlers = [], []
    return stream.getvalue() + "|" + EXTRA[0].getvalue()


EXTRA: list[io.StringIO] = []


def one_by_one(reporter: Reporter) -> None:
    for level, message in RECORDS:
        reporter.log(level, message)


@pytest.mark.parametrize(
    "configure",
    [
        lambda logger: None,
        lambda logger: logger.setLevel(logging.WARNING),
        lambda logger: logger.handlers[0].setLevel(logging.ERROR),
        lambda logger: logger.addFilter(lambda record: "Leon" not in record.getMessage()),
        lambda logger: logger.handlers[0].addFilter(lambda record: record.levelno != logging.ERROR),
        lambda logger: logger.handlers[0].setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s")),
        lambda logger: logger.addHandler(logging.StreamHandler(EXTRA[0])),
    ],
)
@pytest.mark.parametrize("wrapped", [True, False])
def test_a_worker_s_log_comes_out_as_the_logger_writes_it(configure, wrapped):
    expected = logged(one_by_one, configure, wrapped)
    assert logged(lambda reporter: _replay(reporter, RECORDS), configure, wrapped) == expected
    assert expected.split("|")[0]  # every configuration lets some record through


def test_two_workers_and_a_target_of_one_task_print_what_one_process_prints(case, monkeypatch):
    prepared: list[list[str]] = []
    prepare = GlanceSync.prepare

    def recorded(self, targets):
        prepared.append(list(targets))
        return prepare(self, targets)

    monkeypatch.setattr(GlanceSync, "prepare", recorded)
    alone = show_status(case, monkeypatch, "1")
    assert show_status(case, monkeypatch, "2") == alone  # other:Madrid is one task, its target prepared there
    assert prepared == [["master"]]


def test_a_target_with_few_regions_is_one_task_handed_out_first():
    targets = ["master"] * 8 + ["other"] * 2 + ["third"] * 4  # 2 workers x 2 regions <= 14; 2 x 2 x 4 is not
    assert status_tasks(targets, 2) == ([[8, 9], *([i] for i in range(8)), [10], [11], [12], [13]], {"other"})
    assert status_tasks(targets, 1)[1] == {"other", "third"}
    assert status_tasks(["master", "other", "other"], 2) == ([[0], [1], [2]], set())  # the widest: every worker
    assert status_tasks(["a"] * 4, 3) == ([[0], [1], [2], [3]], set())
