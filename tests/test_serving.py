"""Serving like production (issue #16): scripts/run starts gunicorn with WhiteNoise's hashed, compressed,
long-cached static files, and `check --deploy` passes behind an HTTPS proxy."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.alert_receivers import free_port

REPO = Path(__file__).resolve().parents[1]


def clean_env(tmp_path, **env) -> dict:
    """This process's environment without GlanceSync/Django settings, on a scratch data folder."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GLANCESYNC_"))}
    return clean | {"GLANCESYNC_DATA_DIR": str(tmp_path / "data")} | env


def get(url: str, **headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def served(tmp_path):
    """scripts/run on a scratch data folder and a free port; its base URL while it runs."""
    port = free_port()
    log = (tmp_path / "run.log").open("w")
    process = subprocess.Popen(
        ["scripts/run"], cwd=REPO, env=clean_env(tmp_path, GLANCESYNC_PORT=str(port)), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if get(f"{base}/healthz")[0] == 200:
                break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"scripts/run did not serve: {(tmp_path / 'run.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield base
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=60)


def test_scripts_run_serves_with_gunicorn_and_long_cached_compressed_static_files(served, tmp_path):
    status, headers, body = get(f"{served}/accounts/login/")
    assert status == 200 and headers["Server"].startswith("gunicorn")
    stylesheets = re.findall(r'href="(/static/[^"]+\.css)"', body.decode())
    assert stylesheets and all(re.search(r"\.[0-9a-f]{12}\.css$", href) for href in stylesheets), stylesheets
    status, headers, _ = get(f"{served}{stylesheets[0]}", **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert "max-age=315360000" in headers["Cache-Control"] and "immutable" in headers["Cache-Control"]
    assert get(f"{served}/static/no-such-file.css")[0] == 404
    assert "GLANCESYNC_DEV is set" not in (tmp_path / "run.log").read_text()


def test_check_deploy_passes_behind_an_https_proxy(tmp_path):
    env = clean_env(
        tmp_path, GLANCESYNC_HTTPS="1", GLANCESYNC_HSTS_SECONDS="31536000",
        DJANGO_SECRET_KEY="x" * 20 + "-a-long-random-production-key-" + "y" * 30,
        DJANGO_ALLOWED_HOSTS="glancesync.example.org", DJANGO_CSRF_TRUSTED_ORIGINS="https://glancesync.example.org",
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_behind_the_proxy_plain_http_is_redirected_but_probes_are_not(tmp_path):
    # GLANCESYNC_DEV: the plain static storage, so the login page renders without collectstatic.
    env = clean_env(
        tmp_path, GLANCESYNC_HTTPS="1", GLANCESYNC_DEV="1", DJANGO_SETTINGS_MODULE="glancesync_site.settings"
    )
    code = (
        "import django; django.setup(); from django.test import Client; from django.test.utils import "
        "setup_test_environment; setup_test_environment(); c = Client(); "
        "print(c.get('/accounts/login/').status_code, c.get('/accounts/login/').headers.get('Location'), "
        "c.get('/accounts/login/', headers={'X-Forwarded-Proto': 'https'}).status_code, "
        "c.get('/healthz').status_code, "
        "c.get('/healthz', headers={'X-Forwarded-Proto': 'https'}).headers.get('Strict-Transport-Security'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["301", "https://testserver/accounts/login/", "200", "200", "max-age=3600"]
