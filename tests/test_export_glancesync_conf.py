"""manage.py export_glancesync_conf: passwords only on request, file mode, import → export → import."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from sync import crypto
from sync.dbconfig import load_db_config
from sync.engine.config import load_config
from sync.models import AuditEntry, ChecksumDecision, Defaults, MasterSettings, Region, Target

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [*sorted((ROOT / "tests" / "scenarios").glob("*/config")), ROOT / "sync" / "demo" / "glancesync.conf"]
DEMO_PASSWORD = "demo-only-not-a-real-password"


@pytest.fixture(autouse=True)
def fernet_key(monkeypatch):
    monkeypatch.setenv(crypto.ENV_KEYS, Fernet.generate_key().decode())


def import_file(path):
    call_command("import_glancesync_conf", str(path), stdout=io.StringIO())


def export(*args) -> str:
    out = io.StringIO()
    call_command("export_glancesync_conf", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def wipe():
    for model in (ChecksumDecision, Region, Target, MasterSettings, Defaults, AuditEntry):
        model.objects.all().delete()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_import_export_import_round_trip(path, tmp_path):
    import_file(path)
    first = load_db_config()
    out = tmp_path / "exported.conf"
    export("--include-passwords", "--output", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # The exported file is a valid legacy configuration for the engine's reader, equal to the database one.
    from_file = load_config(str(out), environ={}, require_credentials=False)
    assert from_file.targets == first.targets and from_file.preferable_order == first.preferable_order
    wipe()
    import_file(out)
    assert load_db_config() == first


def test_passwords_omitted_without_flag():
    import_file(CONFIGS[-1])
    text = export()
    assert "password omitted" in text
    assert "ZGVtby1vbmx5LW5vdC1hLXJlYWwtcGFzc3dvcmQ=" not in text and DEMO_PASSWORD not in text
    assert "credential = glancesync,,http://keystone.demo.example:5000/v3,demo" in text


def test_passwordless_export_reimported_keeps_passwords(tmp_path):
    import_file(CONFIGS[-1])
    before = load_db_config()
    out = tmp_path / "nopw.conf"
    out.write_text(export())
    import_file(out)
    assert load_db_config() == before


def test_include_passwords_needs_output():
    import_file(CONFIGS[-1])
    with pytest.raises(CommandError, match="--output"):
        export("--include-passwords")


def test_include_passwords_writes_base64_credential(tmp_path):
    import_file(CONFIGS[-1])
    out = tmp_path / "pw.conf"
    out.write_text("old")
    out.chmod(0o644)
    export("--include-passwords", "-o", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "ZGVtby1vbmx5LW5vdC1hLXJlYWwtcGFzc3dvcmQ=" in out.read_text()


def test_percent_and_multiline_values_survive(tmp_path):
    MasterSettings.objects.create(master_region="M", cloud="files:/x")
    Target.objects.create(
        name="master",
        metadata_condition="image.size % 2 == 0 and\nimage.is_public",
        auth_url="http://k/%41",
        user="u",
        password="p%w",
        project_name="t",
    )
    first = load_db_config()
    out = tmp_path / "x.conf"
    export("--include-passwords", "-o", str(out))
    wipe()
    import_file(out)
    assert load_db_config() == first


def test_empty_database_is_a_clear_error():
    with pytest.raises(CommandError, match="no master region"):
        export()


def test_the_transfer_goes_through_export_and_import(tmp_path):
    conf = tmp_path / "in.conf"
    conf.write_text("[main]\nmaster_region = A\n[master]\ntransfer = glance-download\n[other]\ntransfer = stream\n")
    import_file(conf)
    assert dict(Target.objects.values_list("name", "transfer")) == {"master": "glance-download", "other": "stream"}
    text = export()
    assert "transfer = glance-download" in text and "transfer = stream" in text
    out = tmp_path / "out.conf"
    out.write_text(text)
    assert {n: t.transfer for n, t in load_config(str(out), environ={}, require_credentials=False).targets.items()} == {
        "master": "glance-download",
        "other": "stream",
    }
