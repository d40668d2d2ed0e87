"""/metrics (sync/metrics.py): who may read it, the series and their values after real runs and refreshes of a
scratch demo cloud, a constant number of queries, and the per-region status counts it reads
(RegionSnapshot.status_counts, kept with the ImageState rows)."""

from __future__ import annotations

import importlib
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone
from django_q.conf import Conf
from prometheus_client.parser import text_string_to_metric_families

from sync import runs
from sync.engine.model import STATUSES
from sync.models import (
    AlertChannel,
    ApiToken,
    ClusterHeartbeat,
    ImageState,
    RegionRun,
    RegionSnapshot,
    RunState,
    SyncRun,
)
from sync.tasks import refresh_status
from tests.conftest import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(viewer) -> str:
    return ApiToken.issue(viewer, "prometheus")[1]


@pytest.fixture
def inline(monkeypatch):
    """django-q2's sync mode: async_task runs the task at once, in this process."""
    monkeypatch.setattr(Conf, "SYNC", True)


def scrape(client, token: str, **headers) -> dict[tuple, float]:
    """{(sample name, frozenset of labels): value} of a successful scrape."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}", **headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def labels(**values) -> frozenset:
    return frozenset(values.items())


def rows_by_region() -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for region, status in ImageState.objects.values_list("region", "status"):
        counts[region][status] += 1
    return {region: dict(counted) for region, counted in counts.items()}


def stored_counts() -> dict[str, dict[str, int]]:
    return dict(RegionSnapshot.objects.values_list("region", "status_counts"))


# -- status counts ------------------------------------------------------------------------------------------


def test_it_stores_each_regions_status_counts_with_its_rows(demo_cloud):
    refresh_status()
    stored = stored_counts()
    assert len(stored) == 8 and stored == {region: rows_by_region().get(region, {}) for region in stored}
    assert set(stored["Bilbao"]) > {"ok", "pending_upload"}


def test_an_unreadable_region_keeps_the_counts_of_the_rows_it_keeps(demo_cloud):
    refresh_status()
    before = stored_counts()["Zaragoza"]
    (demo_cloud / "backup_Zaragoza.csv").write_text("Zaragoza,too,few,columns\r\n")
    refresh_status()
    snapshot = RegionSnapshot.objects.get(region="Zaragoza")
    assert snapshot.error and snapshot.status_counts == before == rows_by_region()["Zaragoza"]


def test_the_migration_fills_the_counts_of_existing_snapshots(demo_cloud):
    refresh_status()
    expected = stored_counts()
    RegionSnapshot.objects.update(status_counts={})
    migration = importlib.import_module("sync.migrations.0018_regionsnapshot_status_counts")
    migration.fill_status_counts(apps, None)
    assert stored_counts() == expected


# -- access -------------------------------------------------------------------------------------------------


def test_it_asks_for_a_token_without_credentials(client, viewer_client):
    for who in (client, viewer_client):  # a console session is not a scraper's credential
        response = who.get("/metrics")
        assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
        assert "Location" not in response and b"glancesync_" not in response.content


def test_it_answers_a_viewers_token(client, token):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"]
    assert b"# HELP glancesync_images " in response.content


def test_it_refuses_an_unknown_or_revoked_token_with_401(client, token, settings):
    settings.GLANCESYNC_METRICS_NETWORKS = ["127.0.0.0/8"]  # a token that was sent is checked all the same
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer gs_not-a-token").status_code == 401
    ApiToken.objects.update(revoked=True)
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_token_whose_user_has_no_role_with_403(client, django_user_model):
    nobody = django_user_model.objects.create_user("nobody")
    _, token = ApiToken.issue(nobody, "t")
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403 and b"viewer role" in response.content


def test_it_answers_an_allowed_network_without_a_token(client, settings):
    settings.GLANCESYNC_METRICS_NETWORKS = ["10.0.0.0/8", "2001:db8::/32"]
    for address in ("10.1.2.3", "::ffff:10.1.2.3", "2001:db8::7"):
        assert client.get("/metrics", REMOTE_ADDR=address).status_code == 200, address
    for address in ("192.0.2.1", "2001:db9::1", "not an address"):
        response = client.get("/metrics", REMOTE_ADDR=address)
        assert response.status_code == 403 and b"GLANCESYNC_METRICS_NETWORKS" in response.content, address


def test_it_only_answers_get(client, token):
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405


def test_it_speaks_openmetrics_when_asked(client, token):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ACCEPT="application/openmetrics-text")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.endswith(b"# EOF\n")


# -- series -------------------------------------------------------------------------------------------------


def test_it_reports_runs_regions_images_and_bytes_after_real_runs(
    client, token, demo_cloud, inline, django_capture_on_commit_callbacks
):
    (demo_cloud / "backup_Zaragoza.csv").write_text("Zaragoza,too,few,columns\r\n")
    with django_capture_on_commit_callbacks(execute=True):
        failed = runs.start_run(["Zaragoza", "Sevilla"], dry_run=False, trigger=SyncRun.Trigger.CLI, max_children=1)
        runs.start_run(["Bilbao"], dry_run=True, trigger=SyncRun.Trigger.API)
    refresh_status()
    samples = scrape(client, token)

    def value(name, **label_values):
        return samples[(name, labels(**label_values))]

    assert value("glancesync_region_readable", region="Zaragoza", target="master") == 0
    assert value("glancesync_region_readable", region="partner:Lisbon", target="partner") == 1
    assert value("glancesync_region_tasks_total", state="failed", dry_run="false") == 1
    assert value("glancesync_region_tasks_total", state="done", dry_run="false") == 1
    assert value("glancesync_region_tasks_total", state="done", dry_run="true") == 1
    assert value("glancesync_region_tasks_total", state="interrupted", dry_run="false") == 0
    assert value("glancesync_runs_total", state="failed", dry_run="false") == 1
    assert value("glancesync_runs_total", state="done", dry_run="true") == 1
    assert value("glancesync_region_tasks_active", state="running") == 0
    for region, counts in rows_by_region().items():
        target = RegionSnapshot.objects.get(region=region).target
        for status in STATUSES:
            assert value("glancesync_images", region=region, target=target, status=status) == counts.get(status, 0)
    sevilla = failed.region_runs.get(region="Sevilla")
    assert sevilla.bytes_done > 0
    assert value("glancesync_uploaded_bytes_total") == sevilla.bytes_done  # the dry run sent nothing
    last_success = {dict(key)["region"] for name, key in samples if name.startswith("glancesync_region_last_success")}
    assert last_success == {"Sevilla"}  # Zaragoza failed, Bilbao only had a dry run
    assert value("glancesync_region_last_success_timestamp_seconds", region="Sevilla", target="master") == (
        pytest.approx(sevilla.finished_at.timestamp())
    )
    zaragoza = RegionSnapshot.objects.get(region="Zaragoza")
    assert value("glancesync_region_last_refresh_timestamp_seconds", region="Zaragoza", target="master") == (
        pytest.approx(zaragoza.computed_at.timestamp())
    )
    assert value("glancesync_region_task_duration_seconds_count", dry_run="false") == 2
    assert value("glancesync_run_duration_seconds_count", dry_run="true") == 1


def test_the_duration_histograms_count_each_bucket_in_the_database(client, token):
    now = timezone.now()
    for seconds, dry_run in ((0.5, False), (10, False), (4000, False), (3, True)):
        run = SyncRun.objects.create(
            trigger="cli", dry_run=dry_run, state=RunState.DONE,
            started_at=now - timedelta(seconds=seconds), finished_at=now,
        )  # fmt: skip
        RegionRun.objects.create(
            run=run, region="Bilbao", state=RunState.DONE, started_at=run.started_at, finished_at=now
        )
    RegionRun.objects.create(run=run, region="Sevilla", state=RunState.RUNNING, started_at=now)  # not ended: none
    samples = scrape(client, token)
    for family in ("glancesync_run_duration_seconds", "glancesync_region_task_duration_seconds"):
        buckets = {dict(key)["le"]: value for (name, key), value in samples.items()
                   if name == f"{family}_bucket" and ("dry_run", "false") in key}  # fmt: skip
        assert [buckets[le] for le in ("1.0", "5.0", "15.0", "3600.0", "7200.0")] == [1, 1, 2, 2, 3]
        assert buckets["+Inf"] == samples[(f"{family}_count", labels(dry_run="false"))] == 3
        assert samples[(f"{family}_sum", labels(dry_run="false"))] == pytest.approx(4010.5, abs=0.01)
        assert samples[(f"{family}_count", labels(dry_run="true"))] == 1
    assert samples[("glancesync_region_tasks_active", labels(state="running"))] == 1
    assert samples[("glancesync_region_tasks_active", labels(state="queued"))] == 0


def test_it_reports_the_cluster_heartbeat_age_once_a_cluster_beat(client, token):
    assert not [key for key in scrape(client, token) if key[0] == "glancesync_cluster_heartbeat_age_seconds"]
    ClusterHeartbeat.objects.update_or_create(pk=1, defaults={"beat_at": timezone.now() - timedelta(seconds=90)})
    age = scrape(client, token)[("glancesync_cluster_heartbeat_age_seconds", frozenset())]
    assert 90 <= age < 120


def test_every_series_is_prefixed_and_documented(client, token):
    body = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").content.decode()
    families = list(text_string_to_metric_families(body))
    assert {family.name: family.type for family in families} == {
        "glancesync_images": "gauge",
        "glancesync_region_last_success_timestamp_seconds": "gauge",
        "glancesync_region_last_refresh_timestamp_seconds": "gauge",
        "glancesync_region_readable": "gauge",
        "glancesync_runs": "counter",
        "glancesync_run_duration_seconds": "histogram",
        "glancesync_region_tasks": "counter",
        "glancesync_region_task_duration_seconds": "histogram",
        "glancesync_region_tasks_active": "gauge",
        "glancesync_uploaded_bytes": "counter",
        "glancesync_cluster_heartbeat_age_seconds": "gauge",
        "glancesync_alert_channel_failing": "gauge",
    }
    assert all(family.documentation for family in families)


# -- cost ---------------------------------------------------------------------------------------------------


def fleet(regions: int) -> None:
    """Snapshots of so many regions, and a run history in every state over them."""
    now = timezone.now()
    names = [f"target{r % 3}:Region{r:03d}" for r in range(regions)]
    RegionSnapshot.objects.bulk_create(
        RegionSnapshot(region=n, target=n.split(":")[0], computed_at=now, status_counts={"ok": 5, "pending_upload": 1})
        for n in names
    )
    for state in RunState.values:
        run = SyncRun.objects.create(trigger="cli", state=state, started_at=now, finished_at=now)
        RegionRun.objects.bulk_create(
            RegionRun(run=run, region=n, state=state, started_at=now, finished_at=now, bytes_done=7) for n in names
        )
    ClusterHeartbeat.beat()


@pytest.mark.parametrize("regions", [1, 120])
def test_a_scrape_costs_the_same_queries_whatever_the_fleet(client, settings, django_assert_num_queries, regions):
    settings.GLANCESYNC_METRICS_NETWORKS = ["127.0.0.1/32"]  # a token adds its own lookups (3 queries)
    fleet(regions)
    with django_assert_num_queries(6):
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content.count(b'glancesync_region_readable{region="') == regions


def test_a_token_costs_three_more_queries(client, token, django_assert_num_queries):
    fleet(3)
    client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")  # stores the token's last use (once a minute)
    with django_assert_num_queries(9):
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_an_operators_token_works_too(client, django_user_model):
    _, token = ApiToken.issue(user_with_role(django_user_model, "otto", "operator"), "t")
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_it_reports_which_alert_channels_are_failing(client, token):
    AlertChannel.objects.create(name="chat", kind="webhook", webhook_url="https://hooks.example.org/secret")
    AlertChannel.objects.create(name="mail", kind="email", recipients="a@example.org", failing_since=timezone.now())
    AlertChannel.objects.create(name="off", kind="email", recipients="a@example.org", enabled=False)
    values = scrape(client, token)
    failing = {
        dict(labels)["channel"]: v for (name, labels), v in values.items() if name == "glancesync_alert_channel_failing"
    }
    assert failing == {"chat": 0, "mail": 1}
    assert "hooks.example.org" not in client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").content.decode()
