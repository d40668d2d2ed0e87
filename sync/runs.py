"""Background syncs: starting, dispatching, locking, recovering and cancelling runs (issue #5).

A SyncRun has one RegionRun per region; each RegionRun is one django-q2 task (`sync.tasks.sync_region`).
At most `max_children` tasks of a run are enqueued at once: every task that ends enqueues the next
waiting region of its run, so the broker never holds more than that many tasks of one run.

A busy region is refused, not queued behind the other run: `start_run` raises RegionBusy when a region asked
for is waiting or syncing in another run (the API answers 409 with it). The hard guarantee is RegionLock, a
lease taken by compare-and-set when the task starts and renewed by a heartbeat; it holds across processes and
machines, and expires when its holder dies, so `recover_interrupted` can mark that RegionRun interrupted.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sync import alerts
from sync.models import FINISHED_STATES, MasterSettings, RegionLock, RegionRun, RunState, SyncRun

ACTIVE_STATES = (RunState.QUEUED, RunState.RUNNING)


class RegionBusy(Exception):
    """A region asked for is already waiting or syncing in another run."""

    def __init__(self, region: str, run_id: int) -> None:
        super().__init__(f"region {region} is busy with run #{run_id}; try again when that run ends")
        self.region = region
        self.run_id = run_id


def lease() -> timedelta:
    return timedelta(seconds=settings.GLANCESYNC_LEASE_SECONDS)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# -- starting ----------------------------------------------------------------------------------------------


def start_run(
    regions: Iterable[str],
    *,
    dry_run: bool,
    trigger: str,
    started_by: str = "",
    max_children: int | None = None,
) -> SyncRun:
    """Record a run of these regions (target:Region full names) and enqueue its first tasks."""
    regions = list(dict.fromkeys(regions))
    if not regions:
        raise ValueError("a run needs at least one region")
    recover_interrupted()
    with transaction.atomic():
        busy = busy_region_runs(regions).first()
        if busy is not None:
            raise RegionBusy(busy.region, busy.run_id)
        run = SyncRun.objects.create(
            trigger=trigger,
            started_by=started_by,
            regions=regions,
            dry_run=dry_run,
            max_children=max_children or MasterSettings.load().max_children,
        )
        RegionRun.objects.bulk_create(RegionRun(run=run, region=region, position=i) for i, region in enumerate(regions))
        transaction.on_commit(lambda: dispatch(run.pk))
    return run


def busy_region_runs(regions: Iterable[str]):
    """RegionRuns of these regions that are waiting or running (and not known to be dead)."""
    return RegionRun.objects.filter(region__in=list(regions), state__in=ACTIVE_STATES).order_by("run_id")


def dispatch(run_id: int) -> list[RegionRun]:
    """Enqueue waiting regions of the run while it has fewer than max_children enqueued and unfinished."""
    run = SyncRun.objects.get(pk=run_id)
    if run.cancel_requested:
        return []
    dispatched = []
    in_flight = run.region_runs.filter(dispatched_at__isnull=False).exclude(state__in=FINISHED_STATES).count()
    waiting = run.region_runs.filter(dispatched_at__isnull=True, state=RunState.QUEUED).order_by("position")
    for region_run in waiting[: max(0, run.max_children - in_flight)]:
        # Compare-and-set: two tasks ending at once must not both enqueue the same region.
        claimed = RegionRun.objects.filter(pk=region_run.pk, dispatched_at__isnull=True).update(
            dispatched_at=timezone.now()
        )
        if claimed:
            _enqueue(region_run)
            dispatched.append(region_run)
    return dispatched


def _enqueue(region_run: RegionRun) -> None:
    from django_q.tasks import async_task  # the broker is only needed once something is enqueued

    task_id = async_task(
        "sync.tasks.sync_region",
        region_run.pk,
        task_name=f"run {region_run.run_id} {region_run.region}"[:100],
        group=f"run-{region_run.run_id}",
    )
    RegionRun.objects.filter(pk=region_run.pk).update(task_id=task_id or "")


def redispatch_lost() -> list[int]:
    """Enqueue again the region tasks enqueued longer than GLANCESYNC_REDISPATCH_SECONDS ago and not started.

    A broker can lose a task (Redis restarted without persistence); its region would stay queued, and busy
    to every other run, for ever. A second copy of a task that was only waiting for a worker is harmless:
    the first delivery starts the region, the other finds it no longer waiting."""
    now = timezone.now()
    deadline = now - timedelta(seconds=settings.GLANCESYNC_REDISPATCH_SECONDS)
    stale = RegionRun.objects.filter(state=RunState.QUEUED, dispatched_at__lt=deadline, run__cancel_requested=False)
    redone = []
    for region_run in stale:
        claimed = RegionRun.objects.filter(
            pk=region_run.pk, state=RunState.QUEUED, dispatched_at=region_run.dispatched_at
        ).update(dispatched_at=now)
        if claimed:
            _enqueue(region_run)
            redone.append(region_run.pk)
    return redone


# -- the region lock ---------------------------------------------------------------------------------------


def acquire_lock(region_run: RegionRun) -> bool:
    """Take the region's lease for this RegionRun if it is free or expired (one UPDATE: compare-and-set)."""
    RegionLock.objects.get_or_create(region=region_run.region)  # handles a concurrent creation itself
    now = timezone.now()
    free = Q(holder__isnull=True) | Q(expires_at__lt=now) | Q(holder=region_run)
    taken = RegionLock.objects.filter(free, region=region_run.region).update(
        holder=region_run, expires_at=now + lease()
    )
    return taken == 1


def renew_lock(region_run_id: int) -> bool:
    """Heartbeat: extend the lease; False when it was lost (expired and taken by another run)."""
    now = timezone.now()
    RegionRun.objects.filter(pk=region_run_id).update(heartbeat_at=now)
    return RegionLock.objects.filter(holder_id=region_run_id).update(expires_at=now + lease()) == 1


def release_lock(region_run_id: int) -> None:
    RegionLock.objects.filter(holder_id=region_run_id).update(holder=None, expires_at=None)


def lock_holder(region: str) -> RegionRun | None:
    lock = RegionLock.objects.filter(region=region, expires_at__gte=timezone.now()).select_related("holder").first()
    return lock.holder if lock is not None else None


# -- finishing, recovering, cancelling ---------------------------------------------------------------------


def finish_region(region_run_id: int, state: str, **fields) -> None:
    """Store a region's end, free its region, settle the run's state and enqueue the run's next region."""
    RegionRun.objects.filter(pk=region_run_id).update(state=state, finished_at=timezone.now(), **fields)
    release_lock(region_run_id)
    run_id = RegionRun.objects.values_list("run_id", flat=True).get(pk=region_run_id)
    settle_run(run_id)
    dispatch(run_id)


def settle_run(run_id: int) -> None:
    """Derive the run's state from its regions: running until all end, then the worst outcome."""
    states = set(RegionRun.objects.filter(run_id=run_id).values_list("state", flat=True))
    now = timezone.now()
    if states & set(ACTIVE_STATES):
        if RunState.RUNNING in states:
            SyncRun.objects.filter(pk=run_id, state=RunState.QUEUED).update(state=RunState.RUNNING, started_at=now)
        return
    for state in (RunState.INTERRUPTED, RunState.CANCELLED, RunState.FAILED, RunState.DONE):
        if state in states:
            ended = (
                SyncRun.objects.filter(pk=run_id)
                .exclude(state__in=FINISHED_STATES)
                .update(state=state, finished_at=now)
            )
            if ended:  # only the process whose update ended the run: one alert per run
                alerts.run_finished(run_id)
            return


def recover_interrupted() -> list[int]:
    """Mark running regions whose heartbeat stopped (their worker died) interrupted; return their ids."""
    deadline = timezone.now() - lease()
    stale = list(
        RegionRun.objects.filter(state=RunState.RUNNING, heartbeat_at__lt=deadline).values_list("pk", "heartbeat_at")
    )
    recovered = []
    for pk, heartbeat in stale:
        message = (
            f"the worker stopped without finishing (no heartbeat since {heartbeat:%Y-%m-%d %H:%M:%S} UTC); "
            "the next run of this region removes any image it left half-created"
        )
        marked = RegionRun.objects.filter(pk=pk, state=RunState.RUNNING, heartbeat_at=heartbeat).update(
            state=RunState.INTERRUPTED, finished_at=timezone.now(), error=message, current_image=""
        )
        if marked:
            recovered.append(pk)
            release_lock(pk)
            run_id = RegionRun.objects.values_list("run_id", flat=True).get(pk=pk)
            settle_run(run_id)
            dispatch(run_id)
    return recovered


def cancel_run(run: SyncRun) -> None:
    """Drop the regions not started yet; running ones stop at their next image or upload chunk."""
    with transaction.atomic():
        SyncRun.objects.filter(pk=run.pk).update(cancel_requested=True)
        RegionRun.objects.filter(run=run, state=RunState.QUEUED).update(
            state=RunState.CANCELLED, finished_at=timezone.now(), error="cancelled before it started"
        )
    settle_run(run.pk)
    run.refresh_from_db()
