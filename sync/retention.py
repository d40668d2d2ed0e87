"""History retention: the daily `prune_history` task deletes what a console left unattended would keep for ever.

Every sync run keeps its region runs and their logs, every refresh a StatusRefresh row, every event an Alert: an
hourly schedule over 100 regions is some 900,000 region runs a year. Those rows, and django-q's failed tasks, go
once older than GLANCESYNC_HISTORY_DAYS, except what a page, `/metrics` or `/readyz` still reads: each region's
last successful sync (its run, whole), the last status refresh, and alerts whose delivery has not ended. Audit
entries and backups are never pruned here: the audit is a security record, and a backup is an operator's to
delete."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import reduce
from operator import or_

from django.conf import settings
from django.db.models import Max, Q
from django.utils import timezone
from django_q.models import Failure

from sync.models import (
    FINISHED_STATES,
    Alert,
    DeliveryState,
    RefreshRequest,
    RegionRun,
    RunState,
    StatusRefresh,
    SyncRun,
)

logger = logging.getLogger(__name__)

BATCH = 500  # rows deleted per statement: a first prune of a year's backlog never holds a long lock
_REGIONS_PER_QUERY = 200  # OR-ed (region, finished_at) terms per query, well under SQLite's expression depth
_UNDELIVERED = (DeliveryState.QUEUED, DeliveryState.SENDING, DeliveryState.RETRYING)


def prune_history(days: int | None = None) -> str:
    """Delete history older than `days` (default GLANCESYNC_HISTORY_DAYS; 0 keeps everything): a summary."""
    days = settings.GLANCESYNC_HISTORY_DAYS if days is None else days
    if days <= 0:
        return "history kept (GLANCESYNC_HISTORY_DAYS is 0)"
    cutoff = timezone.now() - timedelta(days=days)
    deleted = {
        "sync runs": _delete_in_batches(_old_runs(cutoff)),
        "status refreshes": _delete_in_batches(_old_refreshes(cutoff)),
        "refresh requests": _delete_in_batches(_old_requests(cutoff)),
        "alerts": _delete_in_batches(_old_alerts(cutoff)),
        # django-q keeps its last 250 successes by itself (save_limit), but every failed task for ever
        "failed tasks": _delete_in_batches(Failure.objects.filter(stopped__lt=cutoff)),
    }
    summary = f"history older than {days} days pruned: " + ", ".join(f"{n} {what}" for what, n in deleted.items())
    logger.info(summary)
    return summary


def _old_runs(cutoff: datetime):
    return SyncRun.objects.filter(state__in=FINISHED_STATES, finished_at__lt=cutoff).exclude(
        pk__in=_runs_of_last_successes()
    )


def _runs_of_last_successes() -> set[int]:
    """The runs holding each region's last successful sync: `/metrics` and the alert rules read its time."""
    successes = RegionRun.objects.filter(state=RunState.DONE, run__dry_run=False, finished_at__isnull=False)
    last = list(successes.values_list("region").annotate(last=Max("finished_at")).order_by())
    runs: set[int] = set()
    for start in range(0, len(last), _REGIONS_PER_QUERY):
        chunk = last[start : start + _REGIONS_PER_QUERY]
        matches = reduce(or_, (Q(region=region, finished_at=finished_at) for region, finished_at in chunk))
        runs.update(successes.filter(matches).values_list("run_id", flat=True))
    return runs


def _old_refreshes(cutoff: datetime):
    newest = StatusRefresh.objects.values_list("pk", flat=True).first()  # /readyz and the pages' "refreshed at"
    return StatusRefresh.objects.filter(finished_at__lt=cutoff).exclude(pk=newest)


def _old_requests(cutoff: datetime):
    return RefreshRequest.objects.filter(requested_at__lt=cutoff).exclude(pk__in=RefreshRequest.objects.active())


def _old_alerts(cutoff: datetime):
    return Alert.objects.filter(created_at__lt=cutoff).exclude(deliveries__state__in=_UNDELIVERED)


def _delete_in_batches(queryset) -> int:
    """Delete the queryset's rows (and what cascades from them) a batch at a time: how many of its rows went."""
    total = 0
    while batch := list(queryset.values_list("pk", flat=True)[:BATCH]):
        queryset.model.objects.filter(pk__in=batch).delete()
        total += len(batch)
    return total
