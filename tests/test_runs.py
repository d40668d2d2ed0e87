"""Runs, region leases, recovery and cancel (sync.runs and sync.tasks), with tasks run in this process.

The same machinery through a real `qcluster` process is tested in tests/queue/.
"""

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.conf import Conf

from sync import runs, tasks
from sync.clouds import cloud_from_url
from sync.clouds.base import UPLOAD_MARKER
from sync.engine.reporter import Cancelled
from sync.models import ImageState, RegionLock, RegionRun, RegionSnapshot, RunState, SyncRun

DEMO = Path(__file__).resolve().parents[1] / "sync" / "demo"

pytestmark = pytest.mark.django_db


@pytest.fixture
def cloud(demo_cloud):
    return demo_cloud


@pytest.fixture
def enqueued(monkeypatch):
    """Record enqueued tasks instead of sending them to a broker."""
    calls = []

    def fake_async_task(func, *args, **kwargs):
        calls.append((func, args))
        return f"task-{len(calls)}"

    monkeypatch.setattr("django_q.tasks.async_task", fake_async_task)
    return calls


@pytest.fixture
def inline(monkeypatch):
    """django-q2's sync mode: async_task runs the task at once, in this process."""
    monkeypatch.setattr(Conf, "SYNC", True)


def start(regions, **options):
    options.setdefault("dry_run", False)
    options.setdefault("trigger", SyncRun.Trigger.CLI)
    return runs.start_run(regions, **options)


def test_it_enqueues_at_most_max_children_regions_of_a_run(enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = start(["A", "B", "C"], max_children=2)
    assert [args for _, args in enqueued] == [(r.pk,) for r in run.region_runs.all()[:2]]
    first = run.region_runs.get(region="A")
    assert first.task_id == "task-1" and first.dispatched_at is not None
    assert runs.dispatch(run.pk) == []  # no free slot: A and B are enqueued and unfinished
    runs.finish_region(first.pk, RunState.DONE)
    assert [args for _, args in enqueued][-1] == (run.region_runs.get(region="C").pk,)


def test_it_refuses_a_region_that_another_run_has(enqueued):
    run = start(["A", "B"])
    with pytest.raises(runs.RegionBusy, match=f"region B is busy with run #{run.pk}"):
        start(["C", "B"])
    assert SyncRun.objects.count() == 1
    RegionRun.objects.filter(run=run).update(state=RunState.DONE)
    assert start(["B"]).pk != run.pk


def test_the_lease_lets_one_holder_at_a_time_and_expires(enqueued, settings):
    first, second = start(["A"]).region_runs.get(), SyncRun.objects.create(trigger="cli")
    other = RegionRun.objects.create(run=second, region="A")
    assert runs.acquire_lock(first)
    assert not runs.acquire_lock(other)
    assert runs.lock_holder("A") == first
    RegionLock.objects.filter(region="A").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert runs.acquire_lock(other)  # the first holder stopped renewing: the lease is free again
    assert not runs.renew_lock(first.pk)  # and the first holder learns it lost it
    runs.release_lock(other.pk)
    assert runs.lock_holder("A") is None


def test_it_syncs_a_region_and_stores_counters_log_and_snapshot(cloud, inline, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = start(["Bilbao", "partner:Lisbon"], max_children=1)
    run.refresh_from_db()
    assert run.state == RunState.DONE and run.started_at and run.finished_at
    bilbao = run.region_runs.get(region="Bilbao")
    assert (bilbao.state, bilbao.uploads, bilbao.renames, bilbao.replaces) == ("done", 11, 1, 1)
    assert bilbao.images_done == bilbao.images_total == 13
    assert bilbao.bytes_done == bilbao.bytes_total > 0
    assert "Bilbao: Renaming and replacing image debian-11-genericcloud-amd64" in bilbao.log
    assert bilbao.worker and bilbao.current_image == ""
    assert not RegionLock.objects.filter(holder__isnull=False).exists()
    states = dict(ImageState.objects.filter(region="Bilbao").values_list("image_name", "status"))
    assert set(states.values()) == {"ok"}  # the snapshot was refreshed after the sync
    assert RegionSnapshot.objects.get(region="partner:Lisbon").error == ""


def test_a_dry_run_changes_nothing_but_reports_the_plan(cloud, inline, django_capture_on_commit_callbacks):
    before = (cloud / "backup_Bilbao.csv").read_bytes()
    with django_capture_on_commit_callbacks(execute=True):
        run = start(["Bilbao"], dry_run=True)
    bilbao = run.region_runs.get()
    bilbao.refresh_from_db()
    assert bilbao.state == "done" and bilbao.uploads == 0 and bilbao.images_total == 13
    assert "Bilbao: Pending: gitlab-ce-17-appliance" in bilbao.log
    assert (cloud / "backup_Bilbao.csv").read_bytes() == before


def test_a_region_that_cannot_be_read_fails_alone(cloud, inline, django_capture_on_commit_callbacks):
    (cloud / "backup_Zaragoza.csv").write_text("Zaragoza,too,few,columns\r\n")
    with django_capture_on_commit_callbacks(execute=True):
        run = start(["Zaragoza", "Sevilla"], max_children=1)
    run.refresh_from_db()
    zaragoza, sevilla = run.region_runs.get(region="Zaragoza"), run.region_runs.get(region="Sevilla")
    assert zaragoza.state == "failed" and "expected 9 columns (or up to 12), found 4" in zaragoza.error
    assert zaragoza.errors >= 1
    assert sevilla.state == "done"
    assert run.state == "failed"


def test_it_marks_a_region_whose_worker_died_interrupted_and_goes_on(enqueued, settings):
    run = start(["A", "B"], max_children=1)
    runs.dispatch(run.pk)
    stale = timezone.now() - timedelta(seconds=settings.GLANCESYNC_LEASE_SECONDS + 1)
    a = run.region_runs.get(region="A")
    RegionRun.objects.filter(pk=a.pk).update(state=RunState.RUNNING, heartbeat_at=stale)
    assert runs.acquire_lock(a)
    assert tasks.recover_interrupted() == "1 interrupted region runs recovered"
    a.refresh_from_db()
    assert a.state == "interrupted" and "no heartbeat since" in a.error
    assert runs.lock_holder("A") is None
    assert enqueued[-1][1] == (run.region_runs.get(region="B").pk,)  # the run goes on with B
    assert tasks.sync_region(a.pk).endswith("nothing done")  # a re-delivered task does not run it again


def test_a_region_task_the_broker_lost_is_enqueued_again(enqueued, settings):
    run = start(["A", "B", "C"], max_children=3)
    runs.dispatch(run.pk)
    a, b, c = run.region_runs.order_by("position")
    long_ago = timezone.now() - timedelta(seconds=settings.GLANCESYNC_REDISPATCH_SECONDS + 1)
    RegionRun.objects.filter(pk__in=[a.pk, b.pk]).update(dispatched_at=long_ago)
    RegionRun.objects.filter(pk=b.pk).update(state=RunState.RUNNING, heartbeat_at=timezone.now())  # it started
    enqueued.clear()

    assert tasks.recover_interrupted() == "1 region tasks enqueued again"
    assert enqueued == [("sync.tasks.sync_region", (a.pk,))]  # not B (running) nor C (enqueued just now)
    a.refresh_from_db()
    assert a.dispatched_at > long_ago and a.task_id == "task-1"
    assert tasks.recover_interrupted() == "nothing to recover"  # not again before the delay is over

    RegionRun.objects.filter(pk=a.pk).update(dispatched_at=long_ago)
    SyncRun.objects.filter(pk=run.pk).update(cancel_requested=True)  # A still queued: the cancel is under way
    assert tasks.recover_interrupted() == "nothing to recover"  # a cancelled run's regions are not re-sent


def test_cancel_drops_waiting_regions(enqueued):
    run = start(["A", "B"], max_children=1)
    runs.dispatch(run.pk)
    RegionRun.objects.filter(region="A").update(state=RunState.RUNNING, heartbeat_at=timezone.now())
    runs.cancel_run(run)
    assert run.region_runs.get(region="B").state == "cancelled"
    assert run.state == "running"  # A stops at its next image
    runs.finish_region(run.region_runs.get(region="A").pk, RunState.CANCELLED)
    run.refresh_from_db()
    assert run.state == "cancelled" and run.finished_at


def test_cancel_stops_a_running_upload_and_removes_the_half_created_image(tmp_path, settings, monkeypatch):
    folder = tmp_path / "demo-cloud"
    shutil.copytree(DEMO / "cloud", folder)
    settings.GLANCESYNC_CLOUD = f"files:{folder}?latency=0.2"
    settings.GLANCESYNC_CONFIG_FILE = str(DEMO / "glancesync.conf")
    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"])
    region_run = RegionRun.objects.create(run=run, region="Bilbao")
    uploads = []

    def cancel_during_second_upload(self, image_name, done, total):
        uploads.append(image_name)
        if len(set(uploads)) == 2:
            SyncRun.objects.filter(pk=run.pk).update(cancel_requested=True)
            self._last_cancel_check = 0  # check now rather than within the second
        original_progress(self, image_name, done, total)

    original_progress = tasks.RunReporter.progress
    monkeypatch.setattr(tasks.RunReporter, "progress", cancel_during_second_upload)
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **k: "")
    assert tasks.sync_region(region_run.pk) == "Bilbao: cancelled: cancelled by request"
    region_run.refresh_from_db()
    assert region_run.state == "cancelled" and region_run.uploads == 1
    listing = cloud_from_url(f"files:{folder}").listing("Bilbao")
    assert [i.name for i in listing if i.status != "active"] == []  # the image in flight was removed
    assert not any(UPLOAD_MARKER in i.user_properties for i in listing)


def test_the_next_run_removes_an_upload_a_killed_worker_left(cloud, inline, django_capture_on_commit_callbacks):
    with (cloud / "backup_Bilbao.csv").open("a") as region:
        region.write(f"Bilbao,gitlab-ce-17-appliance,9$x,saving,0,,tenant1id,True,{{'{UPLOAD_MARKER}': '1'}}\r\n")
    with django_capture_on_commit_callbacks(execute=True):
        run = start(["Bilbao"])
    log = run.region_runs.get().log
    assert "Removing unfinished upload gitlab-ce-17-appliance (9$x)" in log
    names = [i.name for i in cloud_from_url(f"files:{cloud}").listing("Bilbao")]
    assert names.count("gitlab-ce-17-appliance") == 1


def test_a_schedule_firing_skips_a_busy_region(cloud, enqueued):
    start(["Bilbao"])
    assert tasks.scheduled_run(["Bilbao"], schedule="nightly").startswith("skipped: region Bilbao is busy")
    message = tasks.scheduled_run(schedule="nightly")  # every region of every target, Bilbao busy again
    assert message.startswith("skipped")
    RegionRun.objects.update(state=RunState.DONE)
    run_id = int(tasks.scheduled_run(schedule="nightly").removeprefix("started run #").removesuffix(" of 7 regions"))
    run = SyncRun.objects.get(pk=run_id)
    assert (run.trigger, run.started_by) == ("schedule", "nightly")
    assert "partner:Lisbon" in run.regions and "Madrid" not in run.regions


def test_the_reporter_raises_cancelled_once_the_lease_is_lost():
    run = SyncRun.objects.create(trigger="cli")
    reporter = tasks.RunReporter(RegionRun.objects.create(run=run, region="A"))
    reporter.check_cancel(force=True)
    reporter.lease_lost.set()
    with pytest.raises(Cancelled, match="lease was lost"):
        reporter.progress("image", 1, 2)
