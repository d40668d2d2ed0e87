"""The daily history prune (sync/retention.py) and `manage.py prune_history`."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Failure, Schedule, Success
from django_q.tasks import async_task

from sync import retention
from sync.models import (
    Alert,
    AlertChannel,
    AlertDelivery,
    ApiToken,
    AuditEntry,
    DeliveryState,
    RefreshRequest,
    RegionRun,
    RunState,
    StatusRefresh,
    SyncRun,
)
from sync.retention import prune_history
from tests.test_metrics import labels, scrape

pytestmark = pytest.mark.django_db

NOW = timezone.now()
OLD = NOW - timedelta(days=91)  # past the default 90 days
RECENT = NOW - timedelta(days=89)


def a_run(regions: dict[str, str], finished_at=OLD, dry_run: bool = False, state: str = RunState.DONE) -> SyncRun:
    """A run of these regions (name: state) that ended at `finished_at` (None: still running)."""
    run = SyncRun.objects.create(
        trigger="schedule", regions=list(regions), dry_run=dry_run, state=state, finished_at=finished_at
    )
    for region, region_state in regions.items():
        RegionRun.objects.create(run=run, region=region, state=region_state, finished_at=finished_at, log="a log\n")
    return run


@pytest.fixture
def token(viewer) -> str:
    return ApiToken.issue(viewer, "prometheus")[1]


def exists(row) -> bool:
    return type(row).objects.filter(pk=row.pk).exists()


def test_it_deletes_old_finished_runs_with_their_regions_and_keeps_recent_and_unfinished_ones():
    a_run({"Bilbao": RunState.DONE}, finished_at=NOW)  # Bilbao's last success: recent, kept anyway
    old = a_run({"Bilbao": RunState.DONE, "Malaga": RunState.FAILED}, finished_at=OLD - timedelta(days=1))
    recent = a_run({"Bilbao": RunState.FAILED}, finished_at=RECENT)
    running = SyncRun.objects.create(trigger="console", state=RunState.RUNNING)
    queued_long_ago = SyncRun.objects.create(trigger="console", state=RunState.QUEUED)
    SyncRun.objects.filter(pk__in=[running.pk, queued_long_ago.pk]).update(created_at=OLD)

    summary = prune_history()

    assert not exists(old) and not RegionRun.objects.filter(run_id=old.pk).exists()
    assert exists(recent) and exists(running) and exists(queued_long_ago)
    assert summary.startswith("history older than 90 days pruned: 1 sync runs")


def test_it_keeps_each_regions_last_successful_sync_however_old():
    last_bilbao = a_run({"Bilbao": RunState.DONE, "Malaga": RunState.FAILED}, finished_at=OLD)
    older_bilbao = a_run({"Bilbao": RunState.DONE}, finished_at=OLD - timedelta(days=5))
    dry_malaga = a_run({"Malaga": RunState.DONE}, finished_at=OLD, dry_run=True)  # a dry run is no sync
    last_malaga = a_run({"Malaga": RunState.DONE}, finished_at=OLD - timedelta(days=30))
    failed_since = a_run({"Bilbao": RunState.FAILED, "Malaga": RunState.FAILED}, finished_at=OLD + timedelta(hours=1))

    prune_history()

    assert exists(last_bilbao) and exists(last_malaga)
    assert RegionRun.objects.filter(run=last_bilbao).count() == 2  # kept whole: its other region too
    assert not exists(older_bilbao) and not exists(dry_malaga) and not exists(failed_since)


def test_metrics_still_report_the_last_success_after_a_prune(client, token):
    a_run({"Bilbao": RunState.DONE}, finished_at=OLD)
    a_run({"Bilbao": RunState.FAILED}, finished_at=OLD + timedelta(hours=1))
    sample = ("glancesync_region_last_success_timestamp_seconds", labels(region="Bilbao", target="master"))

    assert scrape(client, token)[sample] == pytest.approx(OLD.timestamp())
    prune_history()
    assert SyncRun.objects.count() == 1 and scrape(client, token)[sample] == pytest.approx(OLD.timestamp())


def test_it_deletes_old_refreshes_but_the_newest_and_old_requests_but_active_ones(settings):
    old_refreshes = [StatusRefresh.objects.create(regions=3) for _ in range(3)]
    StatusRefresh.objects.update(finished_at=OLD)
    newest = old_refreshes[-1]
    StatusRefresh.objects.filter(pk=newest.pk).update(finished_at=OLD + timedelta(minutes=15))
    settings.GLANCESYNC_REFRESH_TIMEOUT_SECONDS = 100 * 24 * 3600  # an unfinished old request still counts
    done = RefreshRequest.objects.create(scope="all", requested_at=OLD, finished_at=OLD)
    waiting = RefreshRequest.objects.create(scope="one", requested_at=OLD)
    recent = RefreshRequest.objects.create(scope="two", requested_at=RECENT, finished_at=RECENT)

    prune_history()

    assert list(StatusRefresh.objects.all()) == [newest]
    assert not exists(done) and exists(waiting) and exists(recent)


def test_it_deletes_old_alerts_once_their_deliveries_ended():
    channel = AlertChannel.objects.create(name="ops", kind="webhook", webhook_url="http://127.0.0.1:9/hook")
    alerts = {}
    for state in (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.RETRYING, DeliveryState.QUEUED):
        alerts[state] = Alert.objects.create(key=f"k-{state}", event="run_failed", title=state)
        AlertDelivery.objects.create(alert=alerts[state], channel=channel, state=state)
    no_channel = Alert.objects.create(key="k-none", event="run_failed", title="to nobody")
    recent = Alert.objects.create(key="k-recent", event="run_failed", title="recent")
    Alert.objects.exclude(pk=recent.pk).update(created_at=OLD)

    prune_history()

    kept = set(Alert.objects.values_list("title", flat=True))
    assert kept == {DeliveryState.RETRYING, DeliveryState.QUEUED, "recent"}
    assert not exists(no_channel) and AlertDelivery.objects.count() == 2


def test_it_keeps_everything_with_zero_days_and_never_prunes_the_audit(settings, django_user_model):
    run = a_run({"Bilbao": RunState.FAILED})
    entry = AuditEntry.objects.create(username="otto", model="target", object_repr="master", action="change")
    AuditEntry.objects.filter(pk=entry.pk).update(when=OLD - timedelta(days=900))
    settings.GLANCESYNC_HISTORY_DAYS = 0

    assert prune_history() == "history kept (GLANCESYNC_HISTORY_DAYS is 0)" and exists(run)
    settings.GLANCESYNC_HISTORY_DAYS = 30
    prune_history()
    assert not exists(run) and exists(entry)


def test_it_deletes_a_backlog_larger_than_a_batch(monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 3)
    for _ in range(8):
        a_run({"Bilbao": RunState.FAILED})
    assert "8 sync runs" in prune_history()
    assert not SyncRun.objects.exists() and not RegionRun.objects.exists()


def test_it_deletes_old_failed_tasks_and_leaves_the_successes_to_django_q():
    failed_long_ago = Failure.objects.create(id="f1", name="old", func="x", started=OLD, stopped=OLD, success=False)
    failed_lately = Failure.objects.create(id="f2", name="new", func="x", started=NOW, stopped=NOW, success=False)
    succeeded = Success.objects.create(id="s1", name="done", func="x", started=OLD, stopped=OLD, success=True)

    assert "1 failed tasks" in prune_history()
    assert not exists(failed_long_ago) and exists(failed_lately) and exists(succeeded)


def test_the_daily_schedule_runs_it():
    schedule = Schedule.objects.get(name="glancesync: prune history")
    assert (schedule.schedule_type, schedule.repeats, schedule.func) == ("D", -1, "sync.retention.prune_history")
    a_run({"Bilbao": RunState.FAILED})
    # the function by its dotted name, as a worker resolves it (sync=True runs it here)
    async_task(schedule.func, sync=True)
    assert not SyncRun.objects.exists()


def test_the_command_prunes_with_its_own_days_and_refuses_less_than_one():
    a_run({"Bilbao": RunState.FAILED}, finished_at=NOW - timedelta(days=10))
    out = StringIO()
    call_command("prune_history", "--days", "30", stdout=out)
    assert "0 sync runs" in out.getvalue() and SyncRun.objects.exists()
    call_command("prune_history", "--days", "7", stdout=out)
    assert "1 sync runs" in out.getvalue() and not SyncRun.objects.exists()
    with pytest.raises(CommandError, match="--days must be 1 or more"):
        call_command("prune_history", "--days", "0")
