"""/healthz (the process answers, no database) and /readyz (database, migrations, cluster heartbeat, refresh)."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from sync import health
from sync.models import ClusterHeartbeat, StatusRefresh

pytestmark = pytest.mark.django_db


def ready(client):
    response = client.get("/readyz")
    body = response.json()
    assert set(body) == {"status", "checks"}, "nothing else in the body"
    return response.status_code, body["checks"]


@pytest.fixture
def healthy():
    ClusterHeartbeat.beat()
    StatusRefresh.objects.create(regions=3)


def test_it_answers_healthz_without_login_or_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert "no-cache" in response["Cache-Control"]


def test_it_is_ready_with_a_cluster_heartbeat_and_a_recent_refresh(client, healthy):
    status, checks = ready(client)
    assert (status, checks) == (200, {"database": "ok", "migrations": "ok", "cluster": "ok", "status_refresh": "ok"})


def test_it_is_not_ready_before_any_cluster_or_refresh_ran(client):
    status, checks = ready(client)
    assert status == 503
    assert checks["cluster"] == "no task cluster has run yet: start manage.py qcluster"
    assert checks["status_refresh"] == "no status refresh yet"


def test_it_is_not_ready_when_the_heartbeat_or_the_refresh_is_too_old(client, healthy, settings):
    settings.GLANCESYNC_READY_HEARTBEAT_SECONDS = 60
    ClusterHeartbeat.objects.update(beat_at=timezone.now() - timedelta(seconds=300))
    status, checks = ready(client)
    assert status == 503 and checks["status_refresh"] == "ok"
    assert checks["cluster"].startswith("no task cluster heartbeat for 300 s (limit 60 s)")
    ClusterHeartbeat.beat()
    StatusRefresh.objects.update(finished_at=timezone.now() - timedelta(hours=2))
    status, checks = ready(client)
    assert status == 503 and checks["cluster"] == "ok"
    assert checks["status_refresh"] == "the last status refresh finished 7200 s ago (limit 3600 s)"


def test_it_is_not_ready_when_a_migration_is_missing(client, healthy, monkeypatch):
    monkeypatch.setattr(health, "_migrated", False)
    monkeypatch.setattr(health.MigrationExecutor, "migration_plan", lambda self, targets: [("sync", "9999_next")])
    status, checks = ready(client)
    assert status == 503 and checks["migrations"] == "1 migration(s) not applied: run manage.py migrate"


def test_it_says_the_database_is_unreachable_without_the_drivers_message(client, monkeypatch):
    class Broken:
        def __enter__(self):
            raise OperationalError('could not connect to server at "db.secret.example" as user "glancesync"')

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(health.connection, "cursor", lambda: Broken())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"database": "unreachable (OperationalError)"}}
    assert b"secret" not in response.content


def test_the_recovery_sweep_is_the_clusters_heartbeat():
    from sync.tasks import recover_interrupted

    assert ClusterHeartbeat.age_seconds() is None
    recover_interrupted()
    assert 0 <= ClusterHeartbeat.age_seconds() < 5
