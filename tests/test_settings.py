"""Settings: generated secret key, environment parsing, defaults, and Django's system checks."""

import ast
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from glancesync_site.environment import env_bool, env_list, env_networks, load_or_create_secret_key

REPO = Path(__file__).resolve().parent.parent


def test_secret_key_file_created_private_when_absent(tmp_path):
    path = tmp_path / "new-dir" / "secret_key"

    key = load_or_create_secret_key(path)

    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 50
    assert path.read_text().strip() == key
    assert not [p for p in path.parent.iterdir() if p.name != "secret_key"], "temporary file left behind"


def test_secret_key_file_reused_on_next_run(tmp_path):
    path = tmp_path / "secret_key"
    first = load_or_create_secret_key(path)
    assert load_or_create_secret_key(path) == first
    assert load_or_create_secret_key(tmp_path / "other") != first


def test_existing_secret_key_file_is_not_replaced(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("my-own-key\n")
    assert load_or_create_secret_key(path) == "my-own-key"


def test_empty_secret_key_file_is_an_error(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("")
    with pytest.raises(ImproperlyConfigured, match="empty"):
        load_or_create_secret_key(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("0", False), ("no", False), ("1", True), ("true", True), ("YES", True)],
)
def test_env_bool(value, expected):
    environ = {} if value is None else {"X": value}
    assert env_bool("X", environ=environ) is expected


def test_env_bool_rejects_unknown_words():
    with pytest.raises(ImproperlyConfigured, match="X='maybe'"):
        env_bool("X", environ={"X": "maybe"})


def test_env_list():
    assert env_list("X", "a,b", environ={}) == ["a", "b"]
    assert env_list("X", "a", environ={"X": " h1 , ,h2 "}) == ["h1", "h2"]


def test_env_networks():
    assert env_networks("X", environ={}) == []
    assert env_networks("X", environ={"X": "10.0.0.0/8, 192.0.2.7,2001:db8::/32, 10.1.2.3/16"}) == [
        "10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "10.1.0.0/16",
    ]  # fmt: skip
    with pytest.raises(ImproperlyConfigured, match="X: '10.0.0.0/33' is not a network"):
        env_networks("X", environ={"X": "10.0.0.0/8,10.0.0.0/33"})


def _settings_in_subprocess(tmp_path, code, **env):
    """Import the settings in a clean process with only the given GlanceSync/Django variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GLANCESYNC_"))}
    clean.update(DJANGO_SETTINGS_MODULE="glancesync_site.settings", GLANCESYNC_DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; " + code],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_defaults_from_a_clean_environment(tmp_path):
    result = _settings_in_subprocess(
        tmp_path,
        "print(repr((settings.DEBUG, settings.ALLOWED_HOSTS, str(settings.DATABASES['default']['NAME']), "
        "settings.SESSION_COOKIE_SECURE, settings.Q_CLUSTER.get('orm'), settings.GLANCESYNC_CLOUD)))",
    )
    assert result.returncode == 0, result.stderr
    debug, hosts, db_name, secure_cookies, broker, cloud = ast.literal_eval(result.stdout.strip())
    assert debug is False
    assert hosts == ["localhost", "127.0.0.1", "[::1]"]
    assert db_name == str(tmp_path / "glancesync.sqlite3")
    assert secure_cookies is False
    assert broker == "default"
    assert cloud == f"files:{tmp_path / 'demo-cloud'}"
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_environment_overrides(tmp_path):
    result = _settings_in_subprocess(
        tmp_path,
        "print(settings.DEBUG, settings.SECRET_KEY, settings.ALLOWED_HOSTS, settings.Q_CLUSTER.get('redis'), "
        "settings.SESSION_COOKIE_SECURE, settings.DATABASES['default']['ENGINE'])",
        DJANGO_DEBUG="1",
        DJANGO_SECRET_KEY="from-env",
        DJANGO_ALLOWED_HOSTS="glancesync.example.org",
        GLANCESYNC_REDIS_URL="redis://localhost:6379/0",
        GLANCESYNC_HTTPS="yes",
        GLANCESYNC_DB_ENGINE="postgresql",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "True",
        "from-env",
        "['glancesync.example.org']",
        "redis://localhost:6379/0",
        "True",
        "django.db.backends.postgresql",
    ]
    assert not (tmp_path / "secret_key").exists(), "no key file when DJANGO_SECRET_KEY is given"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("GLANCESYNC_DB_ENGINE", "oracle"),
        ("GLANCESYNC_LOG_LEVEL", "LOUD"),
        ("GLANCESYNC_METRICS_NETWORKS", "intranet"),
    ],
)
def test_bad_environment_values_are_clear_errors(tmp_path, name, value):
    result = _settings_in_subprocess(tmp_path, "print(settings.DEBUG)", **{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


def test_django_system_checks_pass():
    call_command("check", fail_level="WARNING")
