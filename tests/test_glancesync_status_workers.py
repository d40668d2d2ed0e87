"""`manage.py glancesync --show-status` of a file cloud in worker processes (issue #17): the same output."""

import gc
import io

import pytest
from django.core.management import CommandError, call_command

from sync.engine.glancesync import GlanceSync

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
