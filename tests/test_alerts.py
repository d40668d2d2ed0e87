"""Alerts (sync.alerts): the events, the channels' choice of events and targets, delivery to a real SMTP server
and a real HTTP receiver on loopback, retries and failing channels, and that alerting never hurts a sync."""

import csv
import io
import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.conf import Conf

from sync import alerts, runs, tasks
from sync.models import (
    SCHEDULED_RUN,
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    ClusterHeartbeat,
    ImageState,
    RegionRun,
    RunState,
    SyncRun,
    SyncSchedule,
    Target,
)
from tests.alert_receivers import WebhookReceiver, free_port

pytestmark = pytest.mark.django_db
SECRET_PATH = "/hooks/T000/B000/secret-path-of-the-webhook"


@pytest.fixture
def inline(monkeypatch):
    """django-q2's sync mode: async_task runs the task at once, in this process."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def mail_channel(smtp_server):
    return AlertChannel.objects.create(name="ops-mail", kind="email", recipients="ops@example.org, noc@example.org")


@pytest.fixture
def hook_channel(webhook):
    return AlertChannel.objects.create(name="chat", kind="webhook", webhook_url=webhook.url(SECRET_PATH))


def run_of(regions, on_commit, dry_run=False):
    with on_commit(execute=True):
        run = runs.start_run(regions, dry_run=dry_run, trigger=SyncRun.Trigger.SCHEDULE, started_by="nightly")
    run.refresh_from_db()
    return run


def break_region(cloud, region="Zaragoza"):
    (cloud / f"backup_{region}.csv").write_text(f"{region},too,few,columns\r\n")


def conflict_everything(cloud, region):
    """Give every image of the region other content (a new checksum): each synchronised one is a conflict."""
    path = cloud / f"backup_{region}.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    for number, row in enumerate(rows):
        row[5] = f"{number:032x}"
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    path.write_text(out.getvalue())


# -- runs ----------------------------------------------------------------------------------------------------


def test_it_emails_a_failed_run_to_a_real_smtp_server(
    demo_cloud, inline, mail_channel, smtp_server, django_capture_on_commit_callbacks
):
    break_region(demo_cloud)
    run = run_of(["Zaragoza"], django_capture_on_commit_callbacks)
    assert run.state == RunState.FAILED
    (message,) = smtp_server.wait_for(1)
    assert message["Subject"] == f"GlanceSync run #{run.pk} failed: 1 of 1 regions did not finish"
    assert message["To"] == "ops@example.org, noc@example.org"
    body = message.get_content()
    assert "Started by nightly (schedule)." in body
    assert "- Zaragoza: failed: " in body and "expected 9 columns" in body
    delivery = AlertDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.alert.event) == ("sent", 1, AlertEvent.RUN_FAILED)
    assert AlertChannel.objects.get().last_sent_at is not None


def test_it_posts_a_partly_failed_run_as_slack_compatible_json(
    demo_cloud, inline, hook_channel, webhook, settings, django_capture_on_commit_callbacks
):
    settings.GLANCESYNC_CONSOLE_URL = "https://glancesync.example.org"
    break_region(demo_cloud)
    run = run_of(["Zaragoza", "Sevilla"], django_capture_on_commit_callbacks)
    assert run.state == RunState.FAILED
    (body,) = webhook.bodies
    assert webhook.paths == [SECRET_PATH]
    assert body["text"].startswith(f"GlanceSync run #{run.pk} partly failed: 1 of 2 regions did not finish\n")
    assert body["text"].endswith(f"\nhttps://glancesync.example.org/runs/{run.pk}/")
    fields = body["glancesync"]
    assert fields["event"] == "run_partly_failed" and fields["targets"] == ["master"]
    assert fields["details"]["regions"] == {"Zaragoza": "failed", "Sevilla": "done"}
    assert fields["details"]["failed"][0]["region"] == "Zaragoza"


def test_it_alerts_a_run_whose_worker_died(inline, mail_channel, smtp_server, settings):
    run = SyncRun.objects.create(trigger="console", started_by="otto", regions=["Bilbao"], state=RunState.RUNNING)
    stale = timezone.now() - timedelta(seconds=settings.GLANCESYNC_LEASE_SECONDS + 5)
    RegionRun.objects.create(run=run, region="Bilbao", state=RunState.RUNNING, heartbeat_at=stale)
    with django_on_commit():
        runs.recover_interrupted()
    (message,) = smtp_server.wait_for(1)
    assert message["Subject"] == f"GlanceSync run #{run.pk} was interrupted: 1 of 1 regions did not finish"
    assert "- Bilbao: interrupted: the worker stopped without finishing" in message.get_content()


def django_on_commit():
    """Run on_commit callbacks at once (this test's transaction never commits)."""
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=True)


def test_a_run_that_succeeds_or_is_cancelled_raises_nothing(
    demo_cloud, inline, mail_channel, django_capture_on_commit_callbacks
):
    assert run_of(["Sevilla"], django_capture_on_commit_callbacks).state == RunState.DONE
    run = SyncRun.objects.create(trigger="console", regions=["Bilbao"])
    RegionRun.objects.create(run=run, region="Bilbao")
    runs.cancel_run(run)
    assert run.state == RunState.CANCELLED
    assert not Alert.objects.exists()


def test_a_run_settled_twice_is_alerted_once(enqueued_deliveries, mail_channel):
    run = failed_run("Bilbao")
    SyncRun.objects.filter(pk=run.pk).update(state=RunState.RUNNING)  # another process settles it as well
    with django_on_commit():
        runs.settle_run(run.pk)
    assert Alert.objects.count() == 1 and len(enqueued_deliveries) == 1


@pytest.fixture
def enqueued_deliveries(monkeypatch):
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kw: calls.append((func, args)))
    return calls


# -- refreshes -----------------------------------------------------------------------------------------------


def test_it_alerts_an_unreadable_region_at_the_second_refresh_and_once_when_it_recovers(
    demo_cloud, inline, hook_channel, webhook
):
    good = (demo_cloud / "backup_Zaragoza.csv").read_text()
    tasks.refresh_status(["Zaragoza"])
    break_region(demo_cloud)
    with django_on_commit():
        tasks.refresh_status(["Zaragoza"])
    assert webhook.bodies == []  # a blip pages nobody
    with django_on_commit():
        tasks.refresh_status(["Zaragoza"])
        tasks.refresh_status(["Zaragoza"])
    (unreadable,) = webhook.bodies
    assert unreadable["glancesync"]["event"] == "region_unreadable"
    assert unreadable["text"].startswith("GlanceSync cannot read region Zaragoza\nTwo status refreshes in a row")
    (demo_cloud / "backup_Zaragoza.csv").write_text(good)
    with django_on_commit():
        tasks.refresh_status(["Zaragoza"])
        tasks.refresh_status(["Zaragoza"])
    assert [body["glancesync"]["event"] for body in webhook.bodies] == ["region_unreadable", "region_recovered"]
    assert "(3 refreshes); it can be read again" in webhook.bodies[1]["text"]


def test_new_conflicts_of_one_refresh_go_out_as_one_message_of_the_first_20_and_a_count(
    demo_cloud, inline, mail_channel, smtp_server
):
    tasks.refresh_status()  # the baseline: the demo's own conflicts are not new
    assert not Alert.objects.exists()
    before = ImageState.objects.filter(status="error_checksum").count()
    conflict_everything(demo_cloud, "Valencia")
    conflict_everything(demo_cloud, "Sevilla")
    with django_on_commit():
        tasks.refresh_status()
    new = ImageState.objects.filter(status="error_checksum").count() - before
    assert new > 20
    (message,) = smtp_server.wait_for(1)
    assert message["Subject"] == f"GlanceSync: {new} new checksum conflicts in 2 regions"
    lines = message.get_content().splitlines()
    assert len([line for line in lines if line.startswith("- ")]) == 20
    assert f"… and {new - 20} more" in lines
    assert Alert.objects.get().details["total"] == new
    with django_on_commit():
        tasks.refresh_status()  # nothing new since
    assert Alert.objects.count() == 1


def test_a_region_first_seen_with_conflicts_is_the_baseline(demo_cloud, mail_channel):
    conflict_everything(demo_cloud, "Valencia")
    tasks.refresh_status(["Valencia"])
    assert ImageState.objects.filter(region="Valencia", status="error_checksum").exists()
    assert not Alert.objects.exists()


# -- channels: events, targets -------------------------------------------------------------------------------


def failed_run(region: str) -> SyncRun:
    run = SyncRun.objects.create(trigger="api", regions=[region], state=RunState.RUNNING)
    RegionRun.objects.create(run=run, region=region, state=RunState.FAILED, error="boom")
    with django_on_commit():
        runs.settle_run(run.pk)
    return run


def test_a_channel_hears_only_its_events_and_its_targets(enqueued_deliveries):
    runs_only = AlertChannel.objects.create(
        name="runs", kind="email", recipients="a@example.org", events=["run_failed"]
    )
    partner = AlertChannel.objects.create(name="partner", kind="email", recipients="p@example.org")
    partner.targets.set([Target.objects.create(name="partner")])
    AlertChannel.objects.create(name="off", kind="email", recipients="o@example.org", enabled=False)
    failed_run("Zaragoza")
    alert = Alert.objects.get(event=AlertEvent.RUN_FAILED)
    assert [d.channel for d in alert.deliveries.all()] == [runs_only]
    alerts.missed_schedules(None, timezone.now())  # nothing: no previous beat
    with django_on_commit():
        alerts.raise_alert("k1", AlertEvent.SCHEDULE_MISSED, "t", "x")  # no target: every channel that chose it
    assert {d.channel.name for d in Alert.objects.get(key="k1").deliveries.all()} == {"partner"}


def test_a_channel_of_some_targets_lists_only_their_new_problems(demo_cloud):
    channel = AlertChannel.objects.create(name="partner", kind="email", recipients="p@example.org")
    channel.targets.set([Target.objects.create(name="partner")])
    items = [{"region": "partner:Lisbon", "image": "a", "status": "error_ami"}]
    items += [{"region": "Bilbao", "image": f"b{i}", "status": "error_checksum"} for i in range(3)]
    with django_on_commit():
        alerts.new_problems(items)
    alert = Alert.objects.get()
    assert alert.title == "GlanceSync: 3 new checksum conflicts and 1 new error_ami image in 2 regions"
    assert alerts.render(alert, channel) == (
        "GlanceSync: 1 new error_ami image in 1 region",
        "- partner:Lisbon: a (error_ami)",
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "email", "recipients": ""}, "needs at least one recipient"),
        ({"kind": "email", "recipients": "ops@example.org, not-an-address"}, "'not-an-address' is not an e-mail"),
        ({"kind": "webhook"}, "needs its URL"),
        ({"kind": "webhook", "webhook_url": "ftp://secret.example.org/x"}, "Not an http:// or https:// URL"),
        ({"kind": "email", "recipients": "a@example.org", "events": ["run_failed", "bogus"]}, "Unknown events: bogus"),
    ],
)
def test_it_refuses_a_channel_that_cannot_work(fields, error):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        AlertChannel(name="x", **fields).full_clean()
    assert error in str(refused.value) and "secret.example.org" not in str(refused.value)


# -- delivery failures ---------------------------------------------------------------------------------------


def test_a_failing_webhook_is_retried_then_marked_failing_and_the_sync_still_ends_well(
    demo_cloud, inline, settings, caplog, django_capture_on_commit_callbacks
):
    settings.GLANCESYNC_ALERT_ATTEMPTS, settings.GLANCESYNC_ALERT_RETRY_SECONDS = 3, 0
    with WebhookReceiver(statuses=[500]) as receiver:
        AlertChannel.objects.create(name="chat", kind="webhook", webhook_url=receiver.url(SECRET_PATH))
        break_region(demo_cloud)
        run = run_of(["Zaragoza", "Sevilla"], django_capture_on_commit_callbacks)
        assert run.state == RunState.FAILED and run.region_runs.get(region="Sevilla").state == RunState.DONE
        delivery = AlertDelivery.objects.get()
        assert (delivery.state, delivery.attempts, delivery.last_error) == (
            "retrying",
            1,
            "the webhook answered HTTP 500",
        )
        assert tasks.recover_interrupted().endswith("1 alert deliveries enqueued")
        assert tasks.recover_interrupted().endswith("1 alert deliveries enqueued")
        delivery.refresh_from_db()
        assert (delivery.state, delivery.attempts) == ("failed", 3) and len(receiver.bodies) == 3
        channel = AlertChannel.objects.get()
        assert channel.failing and channel.last_error == "the webhook answered HTTP 500"
        assert "1 alert deliveries" not in tasks.recover_interrupted()  # given up: no more attempts
        receiver.statuses = [200]
        with django_on_commit():
            alerts.raise_alert("later", AlertEvent.RUN_FAILED, "later", "")
    assert not AlertChannel.objects.get().failing  # a delivery that works clears it
    assert SECRET_PATH not in caplog.text


def test_a_webhook_that_times_out_or_refuses_is_described_in_words_without_its_url(inline, settings, caplog):
    settings.GLANCESYNC_ALERT_ATTEMPTS, settings.GLANCESYNC_ALERT_TIMEOUT_SECONDS = 1, 1
    caplog.set_level(logging.INFO)
    refused = AlertChannel.objects.create(
        name="refused", kind="webhook", webhook_url=f"http://127.0.0.1:{free_port()}{SECRET_PATH}"
    )
    with WebhookReceiver(delay=3) as slow:
        AlertChannel.objects.create(name="slow", kind="webhook", webhook_url=slow.url(SECRET_PATH))
        with django_on_commit():
            alerts.raise_alert("k", AlertEvent.RUN_FAILED, "a run failed", "")
    errors = dict(AlertDelivery.objects.values_list("channel__name", "last_error"))
    assert errors == {
        "refused": "cannot connect to the webhook (refused or unreachable)",
        "slow": "the webhook did not answer in time",
    }
    assert AlertChannel.objects.get(pk=refused.pk).failing
    assert SECRET_PATH not in caplog.text and "secret-path" not in str(list(AlertDelivery.objects.values()))


def test_an_smtp_server_that_is_down_marks_the_mail_channel_failing(inline, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.GLANCESYNC_ALERT_ATTEMPTS = "127.0.0.1", free_port(), 1
    AlertChannel.objects.create(name="mail", kind="email", recipients="ops@example.org")
    with django_on_commit():
        alerts.raise_alert("k", AlertEvent.RUN_FAILED, "a run failed", "")
    channel = AlertChannel.objects.get()
    assert channel.failing and channel.last_error.startswith("cannot reach the SMTP server")


def test_alerting_that_breaks_never_breaks_the_sync(
    demo_cloud, inline, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def broken(*args, **kwargs):
        raise RuntimeError("the alert tables are gone")

    monkeypatch.setattr(Alert.objects, "get_or_create", broken)
    break_region(demo_cloud)
    run = run_of(["Zaragoza", "Sevilla"], django_capture_on_commit_callbacks)
    assert run.state == RunState.FAILED and run.region_runs.get(region="Sevilla").state == RunState.DONE
    assert "could not be recorded" in caplog.text


def test_a_delivery_taken_by_another_worker_is_not_sent_twice(hook_channel, webhook, enqueued_deliveries):
    with django_on_commit():
        alerts.raise_alert("k", AlertEvent.RUN_FAILED, "a run failed", "")
    delivery = AlertDelivery.objects.get()
    assert alerts.deliver(delivery.pk).startswith("alert ")
    assert alerts.deliver(delivery.pk) == f"alert delivery {delivery.pk}: nothing to do"
    assert len(webhook.bodies) == 1


# -- missed schedules ----------------------------------------------------------------------------------------


def test_the_recovery_sweep_alerts_a_schedule_missed_while_no_cluster_ran(enqueued_deliveries, mail_channel):
    SyncSchedule.objects.create(name="nightly", func=SCHEDULED_RUN, schedule_type=SyncSchedule.CRON, cron="0 3 * * *")
    SyncSchedule.objects.create(name="yearly", func=SCHEDULED_RUN, schedule_type=SyncSchedule.CRON, cron="0 0 1 1 *")
    ClusterHeartbeat.objects.update_or_create(pk=1, defaults={"beat_at": timezone.now() - timedelta(days=1)})
    with django_on_commit():
        tasks.recover_interrupted()
        tasks.recover_interrupted()  # the cluster beats again: nothing new
    (alert,) = Alert.objects.all()
    assert alert.event == AlertEvent.SCHEDULE_MISSED and alert.title.startswith("GlanceSync schedule nightly did not")
    assert "It fires once, late, now that a cluster runs again." in alert.text


# -- secrets at rest -----------------------------------------------------------------------------------------


def test_the_webhook_url_is_stored_encrypted(hook_channel):
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_url FROM sync_alertchannel")
        (stored,) = cursor.fetchone()
    assert SECRET_PATH not in stored and stored.startswith("gAAAAA")
    assert AlertChannel.objects.get().webhook_url.endswith(SECRET_PATH)


def test_every_event_type_reaches_the_real_smtp_server(
    demo_cloud, inline, mail_channel, smtp_server, settings, django_capture_on_commit_callbacks
):
    tasks.refresh_status()  # the baseline
    good = (demo_cloud / "backup_Zaragoza.csv").read_text()
    break_region(demo_cloud)
    run_of(["Zaragoza"], django_capture_on_commit_callbacks)  # failed (its refresh is the first unreadable one)
    run_of(["Zaragoza", "Sevilla"], django_capture_on_commit_callbacks)  # partly failed; the second unreadable
    (demo_cloud / "backup_Zaragoza.csv").write_text(good)
    conflict_everything(demo_cloud, "Valencia")
    with django_on_commit():
        tasks.refresh_status()  # Zaragoza recovered, Valencia's new conflicts
    run = SyncRun.objects.create(trigger="console", regions=["Bilbao"], state=RunState.RUNNING)
    stale = timezone.now() - timedelta(seconds=settings.GLANCESYNC_LEASE_SECONDS + 5)
    RegionRun.objects.create(run=run, region="Bilbao", state=RunState.RUNNING, heartbeat_at=stale)
    SyncSchedule.objects.create(name="nightly", func=SCHEDULED_RUN, schedule_type=SyncSchedule.CRON, cron="0 3 * * *")
    ClusterHeartbeat.objects.update_or_create(pk=1, defaults={"beat_at": timezone.now() - timedelta(days=1)})
    with django_on_commit():
        tasks.recover_interrupted()  # the interrupted run, and the missed schedule
    events = set(Alert.objects.values_list("event", flat=True))
    assert events == set(AlertEvent.values) - {AlertEvent.TEST}
    subjects = [message["Subject"] for message in smtp_server.wait_for(len(events))]
    assert sorted(subjects) == sorted(Alert.objects.values_list("title", flat=True))
    assert all(message["To"] == "ops@example.org, noc@example.org" for message in smtp_server.messages)


def test_new_conflicts_found_after_a_run_go_out_once_for_the_whole_run(
    demo_cloud, inline, mail_channel, smtp_server, django_capture_on_commit_callbacks
):
    tasks.refresh_status(["Valencia", "Sevilla"])
    conflict_everything(demo_cloud, "Valencia")
    conflict_everything(demo_cloud, "Sevilla")
    run = run_of(["Valencia", "Sevilla"], django_capture_on_commit_callbacks, dry_run=True)
    assert run.state == RunState.DONE
    (alert,) = Alert.objects.all()
    assert alert.key == f"new-problems:run:{run.pk}" and alert.title.endswith("in 2 regions")
    assert {item["region"] for item in alert.details["items"]} == {"Valencia", "Sevilla"}
    assert len(smtp_server.wait_for(1)) == 1
