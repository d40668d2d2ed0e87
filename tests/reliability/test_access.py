"""Every URL of the site, walked: anonymous users get the login page or 401 (the API, /metrics), viewers get 403
(or 405) on every mutation but their own API tokens, and no page, API answer, metrics body, alert, log line, task
result, run log, backup or dump shows a stored secret (target passwords, webhook URLs, the SMTP password).

The secrets carry a unique marker, so a leak is found wherever it lands, in clear or base64.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import uuid

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_q.conf import Conf
from django_q.models import Task

from sync.models import Alert, AlertChannel, AlertDelivery, ApiToken, Backup, MasterSettings, RegionRun, Target
from sync.tasks import make_backup, refresh_status
from tests.alert_receivers import WebhookReceiver, free_port
from tests.conftest import DEMO, user_with_role

pytestmark = pytest.mark.django_db

# Anyone may open these: the login forms, and the API's description (no data in it). Logging out needs no role.
PUBLIC = {"login", "admin:login", "api:openapi-json", "logout", "admin:logout", "healthz", "readyz"}
# For scrapers: an API token (or an allowed network), never the login page; anonymous gets 401 (tests/test_metrics.py).
TOKEN_ONLY = {"metrics"}
# Every user with a role manages their own API tokens (a token acts with its owner's role): tests/test_api_tokens.py.
OWN_TOKENS = {"sync:api_tokens", "sync:revoke_api_token"}
SAMPLES = {"region": "Bilbao", "run_id": "1", "task_id": "1", "backup_id": "1", "name": "backup_Bilbao.csv",
           "target": "master", "checksum": "any", "object_id": "1", "app_label": "sync", "content_type_id": "1",
           "id": "1", "path": "x", "url": "x"}  # fmt: skip


def named_patterns(resolver: URLResolver | None = None, namespace: str = "", params=()) -> dict[str, list[str]]:
    """Every named URL pattern of the site (`namespace:name`) with the names of its parameters."""
    found: dict[str, list[str]] = {}
    for pattern in (resolver or get_resolver()).url_patterns:
        names = list(getattr(pattern.pattern, "converters", {}) or pattern.pattern.regex.groupindex)
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            found |= named_patterns(pattern, inner, [*params, *names])
        elif isinstance(pattern, URLPattern) and pattern.name:
            found.setdefault(f"{namespace}{pattern.name}", [*params, *names])
    return found


def site_urls() -> list[tuple[str, str]]:
    """Each named pattern's URL, its parameters filled with sample values."""
    return sorted(
        (name, reverse(name, kwargs={p: SAMPLES.get(p, "1") for p in params}))
        for name, params in named_patterns().items()
    )


def is_login_redirect(response) -> bool:
    return response.status_code == 302 and (
        "/accounts/login/" in response["Location"] or "/admin/login/" in response["Location"]
    )


def test_the_walk_covers_the_whole_site():
    names = {name for name, _ in site_urls()}
    for expected in ("sync:overview", "sync:start_run", "sync:refresh_now", "sync:backup_file", "api:region_sync",
                     "api:checksums", "admin:sync_target_change", "admin:sync_syncrun_changelist"):  # fmt: skip
        assert expected in names
    assert len(names) > 60


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def test_every_answer_carries_the_security_headers(client, admin_client, demo_cloud):
    refresh_status()
    for name, url in site_urls():
        for who in (client, admin_client):
            response = who.get(url)
            for header, value in SECURITY_HEADERS.items():
                assert response.get(header) == value, (name, url, header)
            policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
            assert policy["script-src"] == "'self'" and policy["frame-ancestors"] == "'none'", (name, url)
            assert policy["default-src"] == "'self'" and policy["object-src"] == "'none'", (name, url)


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_users_get_the_login_page_or_401(client, method):
    for name, url in site_urls():
        if name in PUBLIC:
            continue
        response = getattr(client, method)(url)
        if name in TOKEN_ONLY:
            assert response.status_code == (401 if method == "get" else 405), (name, url, response.status_code)
        elif url.startswith("/api/"):
            assert response.status_code in (401, 405), (name, url, response.status_code)
        else:
            assert is_login_redirect(response) or response.status_code == 405, (name, url, response.status_code)


def test_viewers_cannot_change_anything(client, django_user_model):
    viewer = user_with_role(django_user_model, "vera", "viewer")
    client.force_login(viewer)
    _, token = ApiToken.issue(viewer, "t")
    for name, url in site_urls():
        if name in PUBLIC or name in OWN_TOKENS:
            continue
        for method in ("post", "delete", "put"):
            response = getattr(client, method)(url, HTTP_AUTHORIZATION=f"Bearer {token}")
            allowed = (401, 403, 404, 405) if url.startswith("/api/") else (403, 405)
            ok = response.status_code in allowed or (url.startswith("/admin/") and is_login_redirect(response))
            assert ok, (name, method, url, response.status_code)


# -- secrets --------------------------------------------------------------------------------------------------


@pytest.fixture
def secrets_seeded(demo_cloud, settings, tmp_path, django_user_model, monkeypatch):
    """The demo configuration in the database, every target's password set to a unique marker."""
    settings.DATA_DIR = tmp_path / "data"
    marker = f"SECRET-{uuid.uuid4().hex}"
    call_command("import_glancesync_conf", str(DEMO / "glancesync.conf"), stdout=io.StringIO())
    MasterSettings.objects.filter(pk=1).update(cloud=f"files:{demo_cloud}")
    for target in Target.objects.all():
        target.password = f"{marker}-{target.name}"
        target.save()
    monkeypatch.setattr(Conf, "SYNC", True)  # tasks run here, so their results are stored and searchable
    return marker


def leaks(text: str, marker: str) -> bool:
    encoded = base64.b64encode(marker.encode()).decode()[:20]
    return marker in text or encoded in text


def test_no_output_shows_a_stored_secret(
    client,
    admin_client,
    secrets_seeded,
    caplog,
    django_capture_on_commit_callbacks,
    django_user_model,
    settings,
    demo_cloud,
):
    marker = secrets_seeded
    caplog.set_level(logging.DEBUG)
    operator = user_with_role(django_user_model, "otto", "operator")
    _, token = ApiToken.issue(operator, "t")
    client.force_login(operator)
    refresh_status()
    with WebhookReceiver(statuses=[500]) as failing, WebhookReceiver() as working:
        settings.EMAIL_BACKEND, settings.EMAIL_PORT = "django.core.mail.backends.smtp.EmailBackend", free_port()
        settings.EMAIL_HOST_PASSWORD, settings.GLANCESYNC_ALERT_ATTEMPTS = f"{marker}-smtp", 1
        for name, url in (("failing", failing.url(f"/{marker}-hook")), ("working", working.url(f"/{marker}-ok"))):
            AlertChannel.objects.create(name=name, kind="webhook", webhook_url=url)
        AlertChannel.objects.create(name="mail", kind="email", recipients="ops@example.org")  # SMTP refused
        (demo_cloud / "backup_Zaragoza.csv").write_text("Zaragoza,unreadable\r\n")
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("sync:start_run"), {"region": ["Bilbao", "partner:Lisbon"]})
            client.post(reverse("sync:start_run"), {"region": ["Zaragoza"]})
            client.post(reverse("sync:make_backup"), {"region": ["Bilbao"]})
            client.post(reverse("sync:refresh_now"), {"region": "partner:Lisbon"})  # its task result is searched too
        sent = [("webhook payload", json.dumps(body)) for body in failing.bodies + working.bodies]
    alerted = Alert.objects.count()  # the failed run, and the new error_ami it left in partner:Lisbon
    assert alerted >= 1 and len(sent) == 2 * alerted
    assert AlertDelivery.objects.filter(state="failed").count() == 2 * alerted  # the 500 and the refused SMTP
    make_backup(Backup.objects.get().pk)
    bodies = []
    for name, url in site_urls():
        for who in (client, admin_client):
            response = who.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
            content = b"".join(response.streaming_content) if response.streaming else response.content
            bodies.append((name, content.decode(errors="replace")))
    for target in Target.objects.all():
        page = admin_client.get(reverse("admin:sync_target_change", args=[target.pk])).content.decode()
        bodies.append(("target change page", page))
    for channel in AlertChannel.objects.all():
        page = admin_client.get(reverse("admin:sync_alertchannel_change", args=[channel.pk])).content.decode()
        bodies.append(("alert channel change page", page))
    dump = io.StringIO()
    call_command("dumpdata", "sync", stdout=dump)
    outputs = bodies + sent + [("dumpdata", dump.getvalue()), ("log", caplog.text)]
    outputs += [("alert", json.dumps(a)) for a in Alert.objects.values("title", "text", "details")]
    outputs += [("delivery", json.dumps(d)) for d in AlertDelivery.objects.values("last_error")]
    outputs += [("channel", json.dumps(c)) for c in AlertChannel.objects.values("last_error", "name")]
    outputs += [("region run log", r.log + r.error) for r in RegionRun.objects.all()]
    outputs += [("task result", str(t.result)) for t in Task.objects.all()]
    outputs += [("backup file", p.read_text()) for b in Backup.objects.all() for p in b.files()]
    assert RegionRun.objects.filter(state="done").count() == 2 and Task.objects.exists()
    assert "glancesync_region_readable{" in dict(bodies)["metrics"]  # the metrics body was read, and searched
    assert [where for where, text in outputs if leaks(text, marker)] == []
    assert [where for where, text in outputs if token in text] == []
    assert not re.search(r"Traceback \(most recent call last\)", "".join(text for _, text in bodies))
