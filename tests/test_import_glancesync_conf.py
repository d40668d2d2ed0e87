"""manage.py import_glancesync_conf: scenario configs, idempotence, malformed files, dry run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from sync import crypto
from sync.dbconfig import load_db_config
from sync.engine.config import load_config
from sync.models import AuditEntry, ChecksumDecision, MasterSettings, Region, Target

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
SCENARIO_CONFIGS = sorted((ROOT / "tests" / "scenarios").glob("*/config"))
DEMO = ROOT / "sync" / "demo" / "glancesync.conf"


@pytest.fixture(autouse=True)
def fernet_key(monkeypatch):
    monkeypatch.setenv(crypto.ENV_KEYS, Fernet.generate_key().decode())


def run(*args) -> str:
    out = io.StringIO()
    call_command("import_glancesync_conf", *map(str, args), stdout=out)
    return out.getvalue()


def expected_targets(path):
    """The file's targets as the engine reads them, with a checksum listed twice kept in one list only."""
    targets = load_config(str(path), environ={}, require_credentials=False).targets
    for policy in targets.values():
        policy.rename = policy.rename - policy.dontupdate
        policy.replace = policy.replace - policy.dontupdate - policy.rename
    return targets


@pytest.mark.parametrize("path", [*SCENARIO_CONFIGS, DEMO], ids=lambda p: p.parent.name)
def test_import_scenario_config_matches_the_file(path):
    output = run(path)
    assert "imported" in output
    config = load_db_config()
    file_config = load_config(str(path), environ={}, require_credentials=False)
    assert config.targets == expected_targets(path)
    assert config.master_region == file_config.master_region
    assert config.max_children == file_config.max_children
    known = [r for r in file_config.preferable_order if r.rpartition(":")[0] in ("", *file_config.targets)]
    assert config.preferable_order == [r.removeprefix("master:") for r in known]
    assert "no changes" in run(path)


def test_import_demo_reports_and_is_idempotent():
    output = run(DEMO)
    assert "create target master" in output and "create target partner" in output
    assert "create region Valencia" in output
    assert "create checksum decision partner: replace any" in output
    count = AuditEntry.objects.count()
    assert count > 0 and all(e.username == "import_glancesync_conf" for e in AuditEntry.objects.all())
    assert "no changes" in run(DEMO)
    assert AuditEntry.objects.count() == count
    master = Target.objects.get(name="master")
    assert master.password == "demo-only-not-a-real-password"
    assert "demo-only" not in str(list(AuditEntry.objects.values()))


def test_import_updates_and_removes_decisions(tmp_path):
    path = tmp_path / "glancesync.conf"
    base = "[main]\nmaster_region = M\n[master]\nmetadata_set = a\nrename = chA\nreplace = chB\n"
    path.write_text(base)
    run(path)
    path.write_text(base.replace("rename = chA", "rename = chB").replace("replace = chB", "replace = chA, chB"))
    output = run(path)
    assert "note: target master: checksum chB is in rename and replace: kept rename" in output
    decisions = {d.checksum: d.action for d in ChecksumDecision.objects.all()}
    assert decisions == {"chA": "replace", "chB": "rename"}
    path.write_text("[main]\nmaster_region = M\n[master]\nmetadata_set = a, b\n")
    output = run(path)
    assert "update target master (metadata_set)" in output and "delete checksum decision" in output
    assert not ChecksumDecision.objects.exists()


def test_dry_run_changes_nothing():
    output = run(DEMO, "--dry-run")
    assert "would create target master" in output and "nothing saved" in output
    assert not Target.objects.exists() and not MasterSettings.objects.exists() and not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("[main]\nmaster_region = M\n[master]\nthis is not a line\n", "line 4"),
        ("[main]\nmaster_region = M\n[master]\nmetadata_condition = __import__('os')\n", "master"),
        ("[main]\nmaster_region = M\n[master]\nonly_tenant_images = maybe\n", "only_tenant_images"),
        ("[main]\nmaster_region = M\n[master]\nmetadata_set = a\n[bad:name]\ncredential = u,cA==,http://k,t\n", "name"),
        ("[main]\nmaster_region = M\n[master]\ndontupdate = any, chA\nrename = a b\n", "dontupdate"),
    ],
)
def test_malformed_file_changes_nothing(tmp_path, text, message):
    run(DEMO)
    before = (Target.objects.count(), Region.objects.count(), ChecksumDecision.objects.count())
    path = tmp_path / "bad.conf"
    path.write_text(text)
    with pytest.raises(CommandError, match=message) as error:
        run(path)
    assert str(error.value).startswith("nothing imported")
    assert (Target.objects.count(), Region.objects.count(), ChecksumDecision.objects.count()) == before
    assert MasterSettings.load().master_region == "Madrid"


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(CommandError, match="not found"):
        run(tmp_path / "nope.conf")


def test_password_missing_from_file_keeps_the_stored_one(tmp_path):
    run(DEMO)
    path = tmp_path / "nopw.conf"
    path.write_text(DEMO.read_text().replace("ZGVtby1vbmx5LW5vdC1hLXJlYWwtcGFzc3dvcmQ=", ""))
    output = run(path)
    assert "the stored one is kept" in output
    assert Target.objects.get(name="master").password == "demo-only-not-a-real-password"


def test_strict_checksums_on_openstack_cloud(tmp_path):
    MasterSettings.objects.create(master_region="M", cloud="openstack")
    path = tmp_path / "c.conf"
    path.write_text("[main]\nmaster_region = M\n[master]\nrename = ch1\n")
    with pytest.raises(CommandError, match="is not a checksum"):
        run(path)
    path.write_text("[main]\nmaster_region = M\n[master]\nrename = E4ACFBC74750180EC2EF5D15D47FBF1B, any\n")
    run(path)
    assert {d.checksum for d in ChecksumDecision.objects.all()} == {"e4acfbc74750180ec2ef5d15d47fbf1b", "any"}
    assert "no changes" in run(path)


SEED_README = ROOT.parent / "shared" / "seed" / "glancesync-README.rst"


@pytest.mark.skipif(not SEED_README.exists(), reason="needs ../shared/seed (the original's README)")
def test_import_seed_readme_sample(tmp_path):
    text = SEED_README.read_text().split(".. glancesync_conf_begin")[1].split(".. glancesync_conf_end")[0]
    lines = [line[1:] for line in text.splitlines()[2:]]
    path = tmp_path / "sample.conf"
    # The sample's password is not UTF-8 once decoded: kept one character per byte, as Python 2 kept bytes.
    path.write_text("\n".join(lines))
    output = run(path)
    assert "create target experimental" in output and "create region Prague" in output
    config = load_db_config()
    assert config.targets["experimental"].metadata_set == {"nid", "type", "sdc_aware", "nid_version"}
    assert config.targets["master"].ignore_regions == {"Spain1"} and config.master_region == "Spain"
    assert config.preferable_order == ["Trento", "Lannion", "Waterford", "Berlin", "Prague"]
    assert config.targets == expected_targets(path)
    assert "no changes" in run(path)
