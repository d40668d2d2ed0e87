"""`manage.py glancesync`: the original sync.py's flags and outputs, plus --config-file and --cloud."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
[main]
master_region = Valladolid
preferable_order = other:Madrid, Soria

[master]
credential = user,ZmFrZXBhc3N3b3JkLG9mY291cnNl,http://server:4730/v2.0,tenant1
metadata_set = type
ignore_regions = Leon

[other]
credential = user2,ZmFrZXBhc3N3b3JkLG9mY291cnNl,http://server2:4730/v2.0,tenant2
"""

CLOUD = {
    "Valladolid": [
        "Valladolid,image01,001,active,1000,c1,tenant1id,True,{'type': 'a'}",
        "Valladolid,image02,002,active,2000,c2,tenant1id,True,{'type': 'b'}",
    ],
    "Burgos": ["Burgos,image01,101,active,1000,c1,tenant1id,True,{'type': 'a'}"],
    "Soria": [],
    "Leon": [],
    "other:Madrid": [],
}


@pytest.fixture
def case(tmp_path, monkeypatch):
    """A config file and a file cloud; the working directory is a scratch folder."""
    cloud = tmp_path / "cloud"
    cloud.mkdir()
    for region, rows in CLOUD.items():
        (cloud / f"backup_{region}.csv").write_text("".join(r + "\r\n" for r in rows))
    config = tmp_path / "glancesync.conf"
    config.write_text(CONFIG)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("GLANCESYNC_CLOUD", raising=False)
    monkeypatch.delenv("GLANCESYNC_CONFIG", raising=False)
    return {"config": config, "cloud": cloud, "work": work}


def run(case, *args):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "glancesync", "--config-file", str(case["config"]), "--cloud", f"files:{case['cloud']}", *args,
        stdout=out, stderr=err,
    )  # fmt: skip
    return out.getvalue(), err.getvalue()


def test_it_shows_status_rows_only_on_stdout(case):
    out, err = run(case, "--show-status", "Burgos", "other:Madrid")
    assert out == (
        "ok,Burgos,image01\r\npending_upload,Burgos,image02\r\n"
        "pending_upload,other:Madrid,image01\r\npending_upload,other:Madrid,image02\r\n"
    )
    assert err == ""


def test_it_shows_regions_without_master_and_ignored_ones(case):
    out, _ = run(case, "--show-regions")
    assert out.strip() == "Burgos Soria other:Madrid"


def test_it_syncs_the_master_targets_regions_in_preferable_order_by_default(case):
    out, _ = run(case, "--dry-run")
    headers = [line for line in out.splitlines() if line.startswith("======")]
    assert headers == ["======Master is Valladolid", "======Soria", "======Burgos"]


def test_it_expands_targets_and_applies_preferable_order_across_them(case):
    out, _ = run(case, "--dry-run", "master:", "other:")
    headers = [line for line in out.splitlines() if line.startswith("======")][1:]
    assert headers == ["======other:Madrid", "======Soria", "======Burgos"]


def test_it_keeps_the_order_of_an_explicit_list(case):
    out, _ = run(case, "--dry-run", "Burgos", "other:Madrid", "Soria")
    headers = [line for line in out.splitlines() if line.startswith("======")][1:]
    assert headers == ["======Burgos", "======other:Madrid", "======Soria"]


def test_it_syncs_and_logs_like_the_original(case):
    out, _ = run(case, "Burgos")
    assert "INFO:Burgos: Uploading image image02 (0.0019073486328 MB)" not in out  # 12 significant digits
    assert "INFO:Burgos: Uploading image image02 (0.00190734863281 MB)" in out
    assert "INFO:Burgos: Image uploaded." in out
    assert "1$image02" in (case["cloud"] / "backup_Burgos.csv").read_text()


def test_a_dry_run_changes_nothing(case):
    before = {p.name: p.read_bytes() for p in case["cloud"].iterdir()}
    out, _ = run(case, "--dry-run", "Burgos", "other:Madrid")
    assert "INFO:Burgos: Pending: image02 (0.00190734863281 MB)" in out
    assert {p.name: p.read_bytes() for p in case["cloud"].iterdir()} == before


def test_it_makes_backups_of_the_listed_regions_and_the_master(case):
    out, _ = run(case, "--make-backups", "Burgos")
    (folder,) = case["work"].glob("backup_glance_*")
    assert sorted(p.name for p in folder.iterdir()) == ["backup_Burgos.csv", "backup_Valladolid.csv"]
    assert (folder / "backup_Burgos.csv").read_bytes() == (case["cloud"] / "backup_Burgos.csv").read_bytes()
    assert "INFO:Backup of region Burgos" in out


def test_it_syncs_in_parallel_with_one_log_file_per_region(case):
    out, _ = run(case, "--parallel", "Burgos", "Soria", "other:Madrid")
    (folder,) = case["work"].glob("sync_*")
    assert sorted(p.name for p in folder.iterdir()) == ["Burgos.txt", "Soria.txt", "other:Madrid.txt"]
    assert "Burgos: Uploading image image02" in (folder / "Burgos.txt").read_text()
    for region in ("Burgos", "Soria", "other:Madrid"):
        assert f"Region {region} has finished\n" in out
    assert out.rstrip().endswith("All is done.")
    assert "1$image01" in (case["cloud"] / "backup_Soria.csv").read_text()


def test_a_parallel_dry_run_stays_a_dry_run(case):
    before = {p.name: p.read_bytes() for p in case["cloud"].iterdir()}
    run(case, "--parallel", "--dry-run", "Burgos", "Soria")
    assert {p.name: p.read_bytes() for p in case["cloud"].iterdir()} == before


def test_a_second_parallel_run_in_the_same_minute_gets_its_own_folder(case):
    run(case, "--parallel", "--dry-run", "Burgos")
    run(case, "--parallel", "--dry-run", "Burgos")
    assert len(list(case["work"].glob("sync_*"))) == 2


def test_config_overrides_change_every_section_or_one(case):
    # Un-namespaced keys go to [DEFAULT]: every section that does not set the key itself sees them.
    out, _ = run(case, "--show-status", "Burgos", "--config", "metadata_condition=image.size < 1500")
    assert out == "ok,Burgos,image01\r\n"
    out, _ = run(case, "--show-status", "Burgos", "--config", "metadata_set=nothing")
    assert out.count("\r\n") == 2, "[master] sets metadata_set itself, so the override does not apply"
    out, _ = run(case, "--show-status", "Burgos", "--config", "master.metadata_set=nothing")
    assert out == "", "no image has the property, so nothing is selected"


def test_repeated_config_options_add_up(case):
    out, _ = run(
        case, "--show-status", "Burgos", "--config", "master.metadata_set=x", "--config", "master.forcesyncs=002"
    )
    assert out == "pending_upload,Burgos,image02\r\n"


def test_it_reads_the_cloud_from_the_environment(case, monkeypatch):
    monkeypatch.setenv("GLANCESYNC_CLOUD", f"files:{case['cloud']}")
    out = io.StringIO()
    call_command("glancesync", "--config-file", str(case["config"]), "--show-status", "Burgos", stdout=out)
    assert out.getvalue().startswith("ok,Burgos,image01")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--show-status", "Nowhere"], "unknown region 'Nowhere'"),
        (["--show-status", "nobody:Madrid"], "unknown target 'nobody'"),
        (["--show-status", "nobody:"], "unknown target 'nobody'"),
        (["--config", "novalue"], "key=value"),
        (["--config", "main.x=1", "--config", "nosuch.key=1"], "no section [nosuch]"),
    ],
)
def test_it_refuses_bad_input_with_one_line(case, args, message):
    with pytest.raises(CommandError) as error:
        run(case, *args)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_it_names_the_file_and_line_of_a_malformed_config(case):
    case["config"].write_text(CONFIG + "this line is not an option\n")
    with pytest.raises(CommandError, match=r"glancesync.conf.*line 12"):
        run(case, "--show-status")


def test_it_names_the_regions_that_failed_and_goes_on(case):
    (case["cloud"] / "backup_Soria.csv").write_text("Soria,a,1,active,big,c,t,True,{}\r\n")
    with pytest.raises(CommandError, match="failed regions: Soria$"):
        out, _ = run(case, "Soria", "Burgos")
    assert "1$image02" in (case["cloud"] / "backup_Burgos.csv").read_text()


def test_it_exits_non_zero_without_a_traceback(case):
    env = {**os.environ, "GLANCESYNC_CLOUD": f"files:{case['cloud']}"}
    command = [sys.executable, str(ROOT / "manage.py"), "glancesync", "--config-file", str(case["config"]), "Mars"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=case["work"], timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "unknown region 'Mars'" in done.stderr


@pytest.mark.django_db
def test_without_a_config_file_or_database_configuration_it_uses_the_original_lookup(case, monkeypatch):
    monkeypatch.setenv("GLANCESYNC_CONFIG", str(case["config"]))
    out = io.StringIO()
    call_command("glancesync", "--cloud", f"files:{case['cloud']}", "--show-status", "Burgos", stdout=out)
    assert out.getvalue().startswith("ok,Burgos,image01")


@pytest.mark.django_db
def test_database_configuration_takes_overrides(case, settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    call_command("import_glancesync_conf", str(case["config"]), stdout=io.StringIO())
    out = io.StringIO()
    args = ["--cloud", f"files:{case['cloud']}", "--show-status", "Burgos", "--config", "master.metadata_set=nothing"]
    call_command("glancesync", *args, stdout=out)
    assert out.getvalue() == ""
    call_command("glancesync", *args[:-2], stdout=out)
    assert out.getvalue().startswith("ok,Burgos,image01")
