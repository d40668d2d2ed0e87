"""Alerts (issue #14): events worth telling someone about, and their delivery to e-mail and webhook channels.

Events are raised where they happen: a run settles (`run_finished`), a refresh reads or fails to read a region
(`region_unreadable`, `region_recovered`, `new_problems`), the recovery sweep finds that the cluster was down
over a schedule's time (`missed_schedules`). Raising never fails or delays its caller: an Alert row is stored
once per event (its unique key), with one AlertDelivery per channel that wants it, and each delivery is a
django-q2 task (`deliver`). A failed attempt is retried by the recovery sweep (`retry_due`, every minute) with
exponential backoff, GLANCESYNC_ALERT_ATTEMPTS times in all; then the delivery is failed and its channel
marked failing until a delivery succeeds.

No secret reaches an alert: bodies are built from what the pages show (region errors are already scrubbed of
passwords), and a delivery error is described in words of our own, because the exceptions of HTTP clients
quote the URL, which is the webhook's secret.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import ssl
import threading
import uuid
from datetime import datetime, timedelta

import requests
from croniter import croniter
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from sync.models import (
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    DeliveryState,
    RegionRun,
    RunState,
    SyncRun,
    SyncSchedule,
)

logger = logging.getLogger(__name__)
_posting = threading.local()


class _WhileNotPosting(logging.Filter):
    """urllib3 logs each request's URL at DEBUG; a webhook's URL is a secret, so not while we post to one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_posting, "active", False)


for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_WhileNotPosting())

MAX_LISTED = 20  # new problems listed in one message; the rest are counted
MAX_STORED = 1000  # new problems kept in an alert's details (a channel of some targets lists its own from them)
SENDING_GUARD = timedelta(minutes=5)  # a delivery claimed this long ago and not finished (its worker died) is retried
PROBLEM_STATUSES = ("error_checksum", "error_ami")
MISSED_AFTER = timedelta(minutes=3)  # a gap between two recovery sweeps (every minute) this long: no cluster ran


def quietly(function):
    """An event hook never fails its caller (a sync, a refresh, the sweep): a problem is logged instead."""

    @functools.wraps(function)
    def hook(*args, **kwargs) -> None:
        try:
            function(*args, **kwargs)
        except Exception:
            logger.exception("Alert hook %s failed", function.__name__)

    return hook


def target_of(region: str) -> str:
    """The target of a full region name (`partner:Lisbon`); the master target's regions have no prefix."""
    return region.split(":", 1)[0] if ":" in region else "master"


# -- raising -------------------------------------------------------------------------------------------------


def raise_alert(
    key: str, event: str, title: str, text: str, *, targets=(), details=None, link: str = ""
) -> Alert | None:
    """Store the event once and queue its delivery to every channel that wants it; never raises."""
    try:
        return _store_and_queue(key, event, title, text, sorted(set(targets)), details or {}, link)
    except Exception:  # alerting must never break the sync or the refresh that noticed the event
        logger.exception("Alert %s could not be recorded", key)
        return None


def _store_and_queue(key, event, title, text, targets, details, link) -> Alert:
    with transaction.atomic():
        alert, created = Alert.objects.get_or_create(
            key=key[:300],
            defaults={"event": event, "title": title[:300], "text": text, "targets": targets, "details": details,
                      "link": link},
        )  # fmt: skip
        if not created:
            return alert  # the same event seen again (two processes settling one run): alerted once
        channels = AlertChannel.objects.filter(enabled=True).prefetch_related("targets")
        wanted = [c for c in channels if c.wants(event, targets, {t.name for t in c.targets.all()})]
        deliveries = AlertDelivery.objects.bulk_create(
            AlertDelivery(alert=alert, channel=channel, next_attempt_at=timezone.now() + SENDING_GUARD)
            for channel in wanted
        )
        for delivery in deliveries:
            transaction.on_commit(lambda pk=delivery.pk: _enqueue(pk))
    logger.info("Alert: %s (to %d channels)", alert.title, len(deliveries))
    return alert


def _enqueue(delivery_id: int) -> None:
    from django_q.tasks import async_task

    try:
        async_task("sync.alerts.deliver", delivery_id, task_name=f"alert delivery {delivery_id}", group="alerts")
    except Exception:  # a broker down: the recovery sweep enqueues it again once SENDING_GUARD has passed
        logger.exception("Alert delivery %s could not be enqueued", delivery_id)


@quietly
def run_finished(run_id: int) -> None:
    """The run just ended: alert if it failed, partly failed or was interrupted, and the new conflicts that the
    refreshes of its regions found, in one message."""
    found = RegionRun.objects.filter(run_id=run_id).values_list("new_problems", flat=True)
    new_problems([item for items in found for item in items], key=f"new-problems:run:{run_id}")
    run = SyncRun.objects.get(pk=run_id)
    regions = list(RegionRun.objects.filter(run_id=run_id).values_list("region", "state", "error"))
    bad = [
        (region, state, error) for region, state, error in regions if state in (RunState.FAILED, RunState.INTERRUPTED)
    ]
    if run.state == RunState.INTERRUPTED:
        event, verb = AlertEvent.RUN_INTERRUPTED, "was interrupted"
    elif run.state == RunState.FAILED and any(state == RunState.DONE for _, state, _ in regions):
        event, verb = AlertEvent.RUN_PARTLY_FAILED, "partly failed"
    elif run.state == RunState.FAILED:
        event, verb = AlertEvent.RUN_FAILED, "failed"
    else:
        return
    kind = "dry run" if run.dry_run else "run"
    title = f"GlanceSync {kind} #{run.pk} {verb}: {len(bad)} of {len(regions)} regions did not finish"
    lines = [f"Started by {run.started_by or run.trigger} ({run.trigger})."]
    lines += [f"- {region}: {state}: {_first_line(error)}" for region, state, error in bad[:MAX_LISTED]]
    lines += [f"… and {len(bad) - MAX_LISTED} more"] if len(bad) > MAX_LISTED else []
    details = {
        "run": run.pk, "state": run.state, "dry_run": run.dry_run, "trigger": run.trigger,
        "started_by": run.started_by, "regions": {region: state for region, state, _ in regions},
        "failed": [{"region": r, "state": s, "error": _first_line(e)} for r, s, e in bad],
    }  # fmt: skip
    raise_alert(
        f"run:{run.pk}", event, title, "\n".join(lines),
        targets=[target_of(region) for region, _, _ in bad], details=details,
        link=reverse("sync:run_detail", args=[run.pk]),
    )  # fmt: skip


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0][:300] if (text or "").strip() else "no error recorded"


@quietly
def region_unreadable(region: str, since: datetime, error: str) -> None:
    raise_alert(
        f"region-unreadable:{region}:{since.isoformat()}",
        AlertEvent.REGION_UNREADABLE,
        f"GlanceSync cannot read region {region}",
        f"Two status refreshes in a row could not read {region} (since {since:%Y-%m-%d %H:%M} UTC): {error}",
        targets=[target_of(region)],
        details={"region": region, "since": since.isoformat(), "error": error},
        link=reverse("sync:region_detail", args=[region]),
    )


@quietly
def region_recovered(region: str, since: datetime, failures: int) -> None:
    raise_alert(
        f"region-recovered:{region}:{since.isoformat()}",
        AlertEvent.REGION_RECOVERED,
        f"GlanceSync can read region {region} again",
        f"{region} could not be read from {since:%Y-%m-%d %H:%M} UTC ({failures} refreshes); it can be read again.",
        targets=[target_of(region)],
        details={"region": region, "since": since.isoformat(), "failed_refreshes": failures},
        link=reverse("sync:region_detail", args=[region]),
    )


@quietly
def new_problems(items: list[dict], key: str = "") -> None:
    """One message for the new conflicts and error_ami images one refresh (or one run's refreshes) found:
    [{region, image, status}]."""
    if not items:
        return
    items = sorted(items, key=lambda item: (item["region"], item["image"]))
    title, text = problems_message(items, len(items))
    raise_alert(
        key or f"new-problems:{timezone.now().isoformat()}:{uuid.uuid4().hex[:8]}",
        AlertEvent.NEW_PROBLEMS,
        title,
        text,
        targets=[target_of(item["region"]) for item in items],
        details={"total": len(items), "items": items[:MAX_STORED]},
        link=reverse("sync:conflicts"),
    )


def problems_message(items: list[dict], total: int) -> tuple[str, str]:
    conflicts = sum(item["status"] == "error_checksum" for item in items)
    regions = len({item["region"] for item in items})
    kinds = []
    if conflicts:
        kinds.append(f"{conflicts} new checksum conflict{'s' if conflicts > 1 else ''}")
    if len(items) - conflicts:
        kinds.append(f"{len(items) - conflicts} new error_ami image{'s' if len(items) - conflicts > 1 else ''}")
    title = f"GlanceSync: {' and '.join(kinds)} in {regions} region{'s' if regions > 1 else ''}"
    lines = [f"- {item['region']}: {item['image']} ({item['status']})" for item in items[:MAX_LISTED]]
    if total > MAX_LISTED:
        lines.append(f"… and {total - MAX_LISTED} more")
    return title, "\n".join(lines)


@quietly
def missed_schedules(previous_beat: datetime | None, now: datetime) -> None:
    """The recovery sweep's view: no cluster beat between `previous_beat` and `now`, so the sync schedules
    due in between did not fire on time (django-q2 fires each once, late, as catch_up is off)."""
    if previous_beat is None or now - previous_beat < MISSED_AFTER:
        return
    for schedule in SyncSchedule.objects.filter(schedule_type=SyncSchedule.CRON).exclude(cron=None):
        due = croniter(schedule.cron, previous_beat).get_next(datetime)
        if due > now - timedelta(minutes=1):
            continue
        raise_alert(
            f"schedule-missed:{schedule.pk}:{previous_beat.isoformat()}",
            AlertEvent.SCHEDULE_MISSED,
            f"GlanceSync schedule {schedule.name} did not fire at {due:%Y-%m-%d %H:%M} UTC",
            f"No task cluster ran from {previous_beat:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC, so the schedule "
            f"{schedule.name} ({schedule.cron}) did not fire at {due:%H:%M} UTC. It fires once, late, now that a "
            "cluster runs again.",
            details={"schedule": schedule.name, "cron": schedule.cron, "due": due.isoformat(),
                     "cluster_down_from": previous_beat.isoformat(), "cluster_back_at": now.isoformat()},
            link=reverse("sync:schedules"),
        )  # fmt: skip


# -- delivering ----------------------------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """A delivery did not go through; the message is ours, never the client's (which may quote the URL)."""


def deliver(delivery_id: int) -> str:
    """The django-q2 task: one attempt to deliver an alert to a channel (a no-op if another took it)."""
    now = timezone.now()
    due = Q(state=DeliveryState.QUEUED) | Q(
        state__in=(DeliveryState.RETRYING, DeliveryState.SENDING), next_attempt_at__lte=now
    )
    claimed = (
        AlertDelivery.objects.filter(due, pk=delivery_id)
        .update(state=DeliveryState.SENDING, attempts=F("attempts") + 1, next_attempt_at=now + SENDING_GUARD)
    )  # fmt: skip
    if not claimed:
        return f"alert delivery {delivery_id}: nothing to do"
    delivery = AlertDelivery.objects.select_related("alert", "channel").get(pk=delivery_id)
    return attempt(delivery, retry=True)


def attempt(delivery: AlertDelivery, retry: bool) -> str:
    """Send now; record the outcome on the delivery and its channel."""
    channel = delivery.channel
    try:
        send(delivery.alert, channel)
    except DeliveryFailed as failure:
        return _failed(delivery, str(failure), retry)
    now = timezone.now()
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        state=DeliveryState.SENT, sent_at=now, next_attempt_at=None, last_error=""
    )
    AlertChannel.objects.filter(pk=channel.pk).update(failing_since=None, last_error="", last_sent_at=now)
    return f"alert {delivery.alert_id} sent to channel {channel.name}"


def _failed(delivery: AlertDelivery, reason: str, retry: bool) -> str:
    delivery.refresh_from_db(fields=["attempts"])
    now = timezone.now()
    if retry and delivery.attempts < settings.GLANCESYNC_ALERT_ATTEMPTS:
        wait = timedelta(seconds=settings.GLANCESYNC_ALERT_RETRY_SECONDS * 4 ** (delivery.attempts - 1))
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            state=DeliveryState.RETRYING, next_attempt_at=now + wait, last_error=reason
        )
        said = f"retry in {wait.total_seconds():.0f} s"
    else:
        AlertDelivery.objects.filter(pk=delivery.pk).update(
            state=DeliveryState.FAILED, next_attempt_at=None, last_error=reason
        )
        AlertChannel.objects.filter(pk=delivery.channel_id).update(
            failing_since=Coalesce(F("failing_since"), now), last_error=reason
        )
        said = f"given up after {delivery.attempts} attempts"
    message = f"alert {delivery.alert_id} to channel {delivery.channel.name}: {reason}; {said}"
    logger.warning("Alert delivery failed: %s", message)
    return message


def retry_due() -> list[int]:
    """Enqueue the deliveries whose retry time has come, or whose attempt was lost (the recovery sweep)."""
    due = list(
        AlertDelivery.objects.filter(
            state__in=(DeliveryState.QUEUED, DeliveryState.RETRYING, DeliveryState.SENDING),
            next_attempt_at__lte=timezone.now(),
        ).values_list("pk", flat=True)[:200]
    )
    for pk in due:
        _enqueue(pk)
    return due


def send_test(channel: AlertChannel, user) -> str:
    """The admin's "send a test alert": one attempt, now, to this channel only; "" or why it failed."""
    alert = Alert.objects.create(
        key=f"test:{channel.pk}:{timezone.now().isoformat()}:{uuid.uuid4().hex[:8]}",
        event=AlertEvent.TEST,
        title=f"GlanceSync test alert to channel {channel.name}",
        text=f"{user} sent this test from the admin. If you read it, the channel works.",
        link=reverse("sync:alerts"),
    )
    delivery = AlertDelivery.objects.create(alert=alert, channel=channel, state=DeliveryState.SENDING, attempts=1)
    attempt(delivery, retry=False)
    delivery.refresh_from_db()
    return "" if delivery.state == DeliveryState.SENT else delivery.last_error


# -- messages ------------------------------------------------------------------------------------------------


def render(alert: Alert, channel: AlertChannel) -> tuple[str, str]:
    """The title and text this channel gets: a channel of some targets hears only of their new problems."""
    targets = {target.name for target in channel.targets.all()}
    if alert.event == AlertEvent.NEW_PROBLEMS and targets:
        items = [item for item in alert.details.get("items", []) if target_of(item["region"]) in targets]
        if len(items) != len(alert.details.get("items", [])):
            return problems_message(items, len(items))
    return alert.title, alert.text


def console_url(alert: Alert) -> str:
    return f"{settings.GLANCESYNC_CONSOLE_URL}{alert.link}" if settings.GLANCESYNC_CONSOLE_URL and alert.link else ""


def send(alert: Alert, channel: AlertChannel) -> None:
    title, text = render(alert, channel)
    url = console_url(alert)
    if channel.kind == AlertChannel.Kind.EMAIL:
        _send_email(channel, title, text, url)
    else:
        _post_webhook(channel, alert, title, text, url)


def _send_email(channel: AlertChannel, title: str, text: str, url: str) -> None:
    body = f"{text}\n\n{url}\n" if url else f"{text}\n"
    body += f"\n-- \nGlanceSync, alert channel {channel.name}\n"
    try:
        connection = get_connection(timeout=settings.GLANCESYNC_ALERT_TIMEOUT_SECONDS)
        EmailMessage(title, body, to=channel.recipient_list(), connection=connection).send()
    except smtplib.SMTPAuthenticationError:
        raise DeliveryFailed("the SMTP server refused the login (GLANCESYNC_SMTP_USER / _PASSWORD)") from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryFailed("the SMTP server refused every recipient") from None
    except smtplib.SMTPException as error:
        raise DeliveryFailed(f"SMTP error ({type(error).__name__})") from None
    except ssl.SSLError:
        raise DeliveryFailed("TLS error talking to the SMTP server") from None
    except TimeoutError:
        raise DeliveryFailed("the SMTP server did not answer in time") from None
    except OSError as error:
        raise DeliveryFailed(f"cannot reach the SMTP server ({error.strerror or type(error).__name__})") from None


def webhook_payload(alert: Alert, title: str, text: str, url: str) -> dict:
    """`text` is what Slack, Mattermost and Rocket.Chat incoming webhooks show; `glancesync` is for programs."""
    shown = f"{title}\n{text}" + (f"\n{url}" if url else "")
    return {
        "text": shown,
        "glancesync": {
            "event": alert.event, "title": title, "text": text, "created_at": alert.created_at.isoformat(),
            "targets": alert.targets, "url": url, "details": alert.details,
        },
    }  # fmt: skip


def _post_webhook(channel: AlertChannel, alert: Alert, title: str, text: str, url: str) -> None:
    payload = webhook_payload(alert, title, text, url)
    _posting.active = True
    try:
        response = requests.post(
            channel.webhook_url, json=payload, timeout=settings.GLANCESYNC_ALERT_TIMEOUT_SECONDS, allow_redirects=False
        )
    except requests.exceptions.SSLError:
        raise DeliveryFailed("TLS error talking to the webhook") from None
    except requests.exceptions.Timeout:
        raise DeliveryFailed("the webhook did not answer in time") from None
    except requests.exceptions.ConnectionError:
        raise DeliveryFailed("cannot connect to the webhook (refused or unreachable)") from None
    except requests.exceptions.RequestException as error:
        raise DeliveryFailed(f"webhook request failed ({type(error).__name__})") from None
    finally:
        _posting.active = False
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"the webhook answered HTTP {response.status_code}")
