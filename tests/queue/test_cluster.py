"""Runs through real `qcluster` processes: parallel regions, schedules, the lock across clusters, cancel and
recovery after kill -9. The cloud is the demo file cloud with a latency per upload, so regions take time."""

import os
import signal
from datetime import timedelta

from django.utils import timezone
from django_q.brokers import get_broker
from django_q.models import Schedule
from django_q.scheduler import scheduler
from django_q.tasks import async_task

from sync import runs, tasks
from sync.clouds import cloud_from_url
from sync.clouds.base import UPLOAD_MARKER
from sync.forms import SyncScheduleForm
from sync.models import RegionRun, SyncRun
from tests.cluster import LEASE_SECONDS, wait_for

REGIONS = ["Bilbao", "Malaga", "Sevilla", "Valencia"]


def finished(run: SyncRun):
    run.refresh_from_db()
    return run.finished


def most_at_once(region_runs) -> int:
    """The largest number of regions whose [started, finished] intervals overlap."""
    events = []
    for region_run in region_runs:
        events += [(region_run.started_at, 1), (region_run.finished_at, -1)]
    current = peak = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):
        current += change
        peak = max(peak, current)
    return peak


def test_it_syncs_regions_in_parallel_but_never_more_than_max_children(cluster):
    run = runs.start_run(REGIONS, dry_run=False, trigger="cli", max_children=2)
    wait_for(lambda: finished(run), timeout=120, what="the run to finish", cluster=cluster)
    region_runs = list(run.region_runs.all())
    assert [r.state for r in region_runs] == ["done"] * 4, [(r.region, r.error) for r in region_runs]
    assert run.state == "done"
    assert most_at_once(region_runs) == 2
    assert sum(r.uploads for r in region_runs) > 4
    assert len({r.worker for r in region_runs}) >= 2  # two worker processes shared the run


def test_a_schedule_fires_once_after_the_cluster_missed_many_firings(cluster):
    Schedule.objects.all().delete()  # only ours: the built-in ones would run too
    form = SyncScheduleForm({"name": "every-minute", "cron": "* * * * *", "regions": "Bilbao", "dry_run": "on"})
    assert form.is_valid(), form.errors
    schedule = form.save()
    missed_since = timezone.now()
    Schedule.objects.filter(pk=schedule.pk).update(next_run=missed_since - timedelta(days=3))  # cluster was down
    # The cluster's guard calls django-q's scheduler every 30 s (hard-coded): call it now, as its first tick would,
    # rather than wait. The cluster's workers still run what it enqueues.
    scheduler(broker=get_broker())
    run = wait_for(lambda: SyncRun.objects.filter(trigger="schedule").first(), what="a scheduled run", cluster=cluster)
    wait_for(lambda: finished(run), what="the scheduled run to finish", cluster=cluster)
    assert (run.started_by, run.dry_run, run.regions, run.state) == ("every-minute", True, ["Bilbao"], "done")
    assert SyncRun.objects.count() == 1  # one firing, not one per missed minute
    # moved past its firing, not one minute on from three days ago (not "> now": the run may end after the
    # next minute has begun, and the schedule would then be due again, as it should)
    assert Schedule.objects.get().next_run > missed_since


def test_the_region_lock_holds_across_two_clusters(cluster, demo_cloud):
    cluster.env["GLANCESYNC_WORKERS"] = "1"  # one worker each: the second task must go to the other cluster
    cluster.env["GLANCESYNC_CLOUD"] = f"files:{demo_cloud}?latency=1"  # the first sync lasts ~10 s
    cluster.stop()
    cluster.start()
    first = SyncRun.objects.create(trigger="api", regions=["Bilbao"])
    second = SyncRun.objects.create(trigger="api", regions=["Bilbao"])
    for run in (first, second):  # both past start_run's check, as two racing requests could be
        RegionRun.objects.create(run=run, region="Bilbao")
    runs.dispatch(first.pk)
    wait_for(lambda: first.region_runs.filter(state="running").exists(), what="the first region to start")
    # A cluster takes up to two tasks beyond its busy workers (its queue of one, and one its pusher waits to
    # put there): give the first cluster two harmless ones, so that only the second cluster can take run 2.
    for _ in range(2):
        async_task("sync.tasks.recover_interrupted")
    wait_for(lambda: get_broker().queue_size() == 0, what="the first cluster to prefetch", cluster=cluster)
    cluster.start()
    runs.dispatch(second.pk)
    wait_for(lambda: finished(first) and finished(second), timeout=120, what="both runs", cluster=cluster)
    one, two = first.region_runs.get(), second.region_runs.get()
    assert one.worker != two.worker
    assert one.state == "done"
    assert two.state == "failed" and two.error == f"region busy: run #{first.pk} is syncing it"


def test_cancel_stops_the_running_region_and_drops_the_waiting_ones(cluster, demo_cloud):
    run = runs.start_run(["Bilbao", "Malaga", "Sevilla"], dry_run=False, trigger="console", max_children=1)
    wait_for(lambda: run.region_runs.filter(state="running", bytes_done__gt=0).exists(), what="an upload")
    runs.cancel_run(run)
    wait_for(lambda: finished(run), what="the cancelled run to end", cluster=cluster)
    assert run.state == "cancelled"
    assert [r.state for r in run.region_runs.all()] == ["cancelled"] * 3
    bilbao = cloud_from_url(f"files:{demo_cloud}").listing("Bilbao")
    assert all(image.status == "active" for image in bilbao if UPLOAD_MARKER in image.user_properties) is True
    assert not [image.name for image in bilbao if image.status == "saving"]


def test_a_worker_killed_mid_upload_is_recovered_and_the_next_run_converges(cluster, demo_cloud, settings):
    cluster.env["GLANCESYNC_CLOUD"] = f"files:{demo_cloud}?latency=5"  # uploads long enough to be killed in
    cluster.stop()
    cluster.start()
    run = runs.start_run(["Bilbao"], dry_run=False, trigger="cli")
    region_run = wait_for(
        lambda: run.region_runs.filter(state="running", bytes_done__gt=0).first(), what="an upload", cluster=cluster
    )
    os.kill(int(region_run.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    saving = [i.name for i in cloud_from_url(f"files:{demo_cloud}").listing("Bilbao") if i.status == "saving"]
    assert len(saving) == 1  # the half-created image the killed worker left

    wait_for(lambda: runs.recover_interrupted(), timeout=4 * LEASE_SECONDS, what="the lease to expire")
    region_run.refresh_from_db()
    assert region_run.state == "interrupted" and "no heartbeat since" in region_run.error
    assert finished(run) and run.state == "interrupted"

    cluster.env["GLANCESYNC_CLOUD"] = f"files:{demo_cloud}"
    cluster.stop()
    cluster.start()
    again = runs.start_run(["Bilbao"], dry_run=False, trigger="cli")
    wait_for(lambda: finished(again), timeout=60, what="the second run", cluster=cluster)
    second = again.region_runs.get()
    assert second.state == "done", second.error
    assert f"Removing unfinished upload {saving[0]}" in second.log
    listing = cloud_from_url(f"files:{demo_cloud}").listing("Bilbao")
    names = [image.name for image in listing if not image.name.endswith(".old")]
    assert len(names) == len(set(names))  # no duplicate image
    assert all(image.status == "active" for image in listing if image.name in saving)


def test_a_task_the_broker_lost_is_enqueued_again_and_runs(cluster, settings):
    cluster.stop()
    Schedule.objects.all().delete()  # the cluster may have enqueued the sweeps already: start from nothing
    broker = get_broker()
    broker.purge_queue()
    run = runs.start_run(["Bilbao"], dry_run=False, trigger="cli")  # enqueued while no cluster runs
    assert broker.queue_size() == 1
    broker.purge_queue()  # lost, as in a Redis restart without persistence
    settings.GLANCESYNC_REDISPATCH_SECONDS = 0
    assert tasks.recover_interrupted() == "1 region tasks enqueued again"
    cluster.start()
    wait_for(lambda: finished(run), timeout=60, what="the run", cluster=cluster)
    assert run.state == "done", run.region_runs.get().error


def test_readyz_follows_the_cluster_down_and_up_again(cluster, client, settings):
    settings.GLANCESYNC_READY_HEARTBEAT_SECONDS = 3
    tasks.refresh_status()  # the snapshot is fresh: only the cluster decides here

    def check():
        response = client.get("/readyz")
        return response.status_code, response.json()["checks"].get("cluster")

    # The heartbeat is the recovery sweep's run. Its schedule fires it every minute, but django-q's scheduler
    # first looks 30 s after a cluster starts: enqueue the sweep as the scheduler would, and the cluster runs it.
    # That the scheduler fires schedules is test_a_schedule_fires_once_after_the_cluster_missed_many_firings's.
    async_task("sync.tasks.recover_interrupted")
    wait_for(lambda: check()[0] == 200, what="/readyz to be 200 with the cluster up", cluster=cluster)
    cluster.stop()
    status, why = wait_for(lambda: check()[0] == 503 and check(), timeout=30, what="/readyz to be 503")
    assert "no task cluster heartbeat" in why
    assert client.get("/healthz").status_code == 200, "the web process itself is fine"
    async_task("sync.tasks.recover_interrupted")  # queued while the cluster is down: it runs once it is back
    cluster.start()
    wait_for(lambda: check()[0] == 200, what="/readyz to be 200 again", cluster=cluster)


def test_a_failed_region_of_a_cluster_run_is_alerted_through_the_cluster(cluster, demo_cloud):
    from sync.models import AlertChannel, AlertDelivery
    from tests.alert_receivers import WebhookReceiver, wait_until

    (demo_cloud / "backup_Zaragoza.csv").write_text("Zaragoza,unreadable\r\n")
    with WebhookReceiver() as receiver:
        AlertChannel.objects.create(name="chat", kind="webhook", webhook_url=receiver.url())
        run = runs.start_run(["Zaragoza", "Bilbao"], dry_run=False, trigger="cli", max_children=2)
        wait_for(lambda: finished(run), timeout=120, what="the run to finish", cluster=cluster)
        wait_until(lambda: receiver.bodies, timeout=60, what="the webhook")
    assert run.state == "failed" and run.region_runs.get(region="Bilbao").state == "done"
    (body,) = receiver.bodies
    assert body["glancesync"]["event"] == "run_partly_failed" and body["glancesync"]["details"]["run"] == run.pk
    wait_until(lambda: AlertDelivery.objects.filter(state="sent").exists(), timeout=10, what="the delivery state")
