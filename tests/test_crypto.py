"""Encryption at rest of target passwords (sync/crypto.py) and the rotate_secret_key command."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from sync import crypto
from sync.models import Target

SECRET = "s3cr3t-Pässword"


@pytest.fixture(autouse=True)
def key_dir(tmp_path, settings, monkeypatch):
    monkeypatch.delenv(crypto.ENV_KEYS, raising=False)
    settings.DATA_DIR = tmp_path
    return tmp_path


def raw_password(pk):
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM sync_target WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_key_file_created_private_on_first_use(key_dir):
    token = crypto.encrypt("x")
    path = key_dir / "fernet_keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(crypto.read_key_file(path)) == 1
    assert crypto.decrypt(token) == "x"


def test_keys_from_environment(monkeypatch, key_dir):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(crypto.ENV_KEYS, key)
    token = crypto.encrypt("x")
    assert Fernet(key.encode()).decrypt(token.encode()) == b"x"
    assert not (key_dir / "fernet_keys").exists()


def test_bad_environment_key_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(crypto.ENV_KEYS, "not-a-key")
    with pytest.raises(Exception, match="key #1 is not a Fernet key"):
        crypto.encrypt("x")


@pytest.mark.django_db
def test_database_row_holds_no_plaintext():
    target = Target.objects.create(name="t1", password=SECRET)
    raw = raw_password(target.pk)
    assert SECRET not in raw and raw.startswith("gAAAAA")
    assert Target.objects.get(pk=target.pk).password == SECRET


@pytest.mark.django_db
def test_empty_password_stays_empty():
    target = Target.objects.create(name="t1")
    assert raw_password(target.pk) == ""
    assert Target.objects.get(pk=target.pk).password == ""


@pytest.mark.django_db
def test_dumpdata_holds_no_plaintext_and_loaddata_round_trips(tmp_path):
    Target.objects.create(name="t1", password=SECRET)
    out = io.StringIO()
    call_command("dumpdata", "sync.target", stdout=out)
    assert SECRET not in out.getvalue()
    rows = json.loads(out.getvalue())
    assert rows[0]["fields"]["password"].startswith("gAAAAA")
    fixture = tmp_path / "dump.json"
    fixture.write_text(out.getvalue())
    Target.objects.all().delete()
    call_command("loaddata", str(fixture), verbosity=0)
    assert Target.objects.get(name="t1").password == SECRET


@pytest.mark.django_db
def test_rotation_reencrypts_and_keeps_previous_key(key_dir):
    target = Target.objects.create(name="t1", password=SECRET)
    old_token = raw_password(target.pk)
    old_keys = crypto.read_key_file(key_dir / "fernet_keys")
    out = io.StringIO()
    call_command("rotate_secret_key", stdout=out)
    assert "previous key stays readable until the next rotation" in out.getvalue()
    keys = crypto.read_key_file(key_dir / "fernet_keys")
    assert keys[1:] == old_keys and len(keys) == 2
    new_token = raw_password(target.pk)
    assert new_token != old_token
    assert Fernet(keys[0].encode()).decrypt(new_token.encode()).decode() == SECRET
    # A token made with the old key (e.g. by a process still running) is still readable during rotation.
    assert crypto.decrypt(old_token) == SECRET
    assert Target.objects.get(pk=target.pk).password == SECRET
    # The next rotation drops keys older than the previous one.
    call_command("rotate_secret_key", stdout=io.StringIO())
    keys2 = crypto.read_key_file(key_dir / "fernet_keys")
    assert len(keys2) == 2 and keys2[1] == keys[0]
    with pytest.raises(crypto.SecretDecryptionError):
        crypto.decrypt(old_token)
    assert Target.objects.get(pk=target.pk).password == SECRET


@pytest.mark.django_db
def test_rotation_drop_old(key_dir):
    target = Target.objects.create(name="t1", password=SECRET)
    old_token = raw_password(target.pk)
    out = io.StringIO()
    call_command("rotate_secret_key", "--drop-old", stdout=out)
    assert "Dropped 1 old key" in out.getvalue()
    assert len(crypto.read_key_file(key_dir / "fernet_keys")) == 1
    assert Target.objects.get(pk=target.pk).password == SECRET
    with pytest.raises(crypto.SecretDecryptionError) as error:
        crypto.decrypt(old_token)
    assert old_token not in str(error.value)


@pytest.mark.django_db
def test_rotation_with_environment_keys(monkeypatch):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv(crypto.ENV_KEYS, old)
    target = Target.objects.create(name="t1", password=SECRET)
    with pytest.raises(CommandError, match="GLANCESYNC_FERNET_KEYS"):
        call_command("rotate_secret_key", stdout=io.StringIO())
    monkeypatch.setenv(crypto.ENV_KEYS, f"{new},{old}")
    call_command("rotate_secret_key", "--reencrypt-only", stdout=io.StringIO())
    assert Fernet(new.encode()).decrypt(raw_password(target.pk).encode()).decode() == SECRET


def test_key_file_mode_after_rewrite(key_dir):
    crypto.encrypt("x")
    crypto.rotate_keys()
    assert stat.S_IMODE(os.stat(key_dir / "fernet_keys").st_mode) == 0o600
