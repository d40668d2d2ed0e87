"""django-q2 task functions: a region's sync, a status refresh, a scheduled run, the recovery sweep.

Tasks take ids and plain values (never secrets) and return a one-line summary that django-q2 stores as the
task's result; what the pages show lives in RegionRun, ImageState and RegionSnapshot rows.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from sync import alerts, runs
from sync.connect import ConsoleError, build_engine, safe_message
from sync.engine.glancesync import GlanceSync, RegionResult
from sync.engine.model import GlanceSyncError
from sync.engine.regions import build_region_list
from sync.engine.reporter import Cancelled, Reporter
from sync.models import (
    Backup,
    ClusterHeartbeat,
    RefreshRequest,
    RegionRun,
    RegionSnapshot,
    RunState,
    StatusRefresh,
    SyncRun,
)
from sync.refresh_lock import RefreshBusy, refresh_lock
from sync.snapshot import all_regions, refresh_region, refresh_regions

logger = logging.getLogger(__name__)


class RunReporter(Reporter):
    """Keeps a RegionRun's log, progress and current image up to date (at most a few writes per second) and
    stops the sync (raises Cancelled) when its run is cancelled or its lease on the region was lost."""

    FLUSH_INTERVAL = 0.5  # seconds between progress writes
    CANCEL_CHECK_INTERVAL = 1.0

    def __init__(self, region_run: RegionRun) -> None:
        super().__init__()
        self.region_run_id = region_run.pk
        self.run_id = region_run.run_id
        self.lines: list[str] = []
        self.warnings = 0
        self.changes: dict[str, object] = {}
        self.images_done = 0
        self.bytes_finished = 0  # bytes of the uploads already done
        self.bytes_current = 0  # bytes of the upload in flight
        self.stage_now = ""  # the glance-download stage of the copy in flight
        self.lease_lost = threading.Event()
        self._last_flush = 0.0
        self._last_cancel_check = 0.0

    def log(self, level: int, message: str) -> None:
        super().log(level, message)
        self.lines.append(f"{timezone.now():%H:%M:%S} {logging.getLevelName(level)} {message}")
        if level >= logging.WARNING:
            self.warnings += 1
        self.changes.update(log="\n".join(self.lines), warnings=self.warnings)
        self.flush()

    def planned(self, images: int, size: int) -> None:
        self.changes.update(images_total=images, bytes_total=size)
        self.flush(force=True)

    def image_started(self, image_name: str) -> None:
        self.check_cancel(force=True)
        self.changes.update(current_image=image_name[:255])
        self.flush()

    def image_done(self, image_name: str) -> None:
        self.images_done += 1
        self.bytes_finished += self.bytes_current
        self.bytes_current = 0
        self.changes.update(
            images_done=self.images_done,
            bytes_done=self.bytes_finished,
            current_image="",
            current_transfer="",
            current_stage="",
            transfer_started_at=None,
        )
        self.flush()

    def transfer_started(self, image_name: str, way: str) -> None:
        self.stage_now = ""
        self.changes.update(current_transfer=way, current_stage="", transfer_started_at=timezone.now())
        self.flush(force=True)

    def stage(self, image_name: str, stage: str) -> None:
        """A glance-download copy's stage: written when it changes (the page computes the elapsed time)."""
        if stage != self.stage_now:
            self.stage_now = stage
            self.changes.update(current_stage=stage)
            self.flush(force=True)
        self.check_cancel()

    def progress(self, image_name: str, done: int, total: int) -> None:
        self.bytes_current = done
        self.changes.update(bytes_done=self.bytes_finished + done)
        self.flush()
        self.check_cancel()

    def check_cancel(self, force: bool = False) -> None:
        if self.lease_lost.is_set():
            raise Cancelled("the region's lease was lost: this worker was too slow to renew it")
        now = time.monotonic()
        if not force and now - self._last_cancel_check < self.CANCEL_CHECK_INTERVAL:
            return
        self._last_cancel_check = now
        if SyncRun.objects.filter(pk=self.run_id, cancel_requested=True).exists():
            raise Cancelled("cancelled by request")

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.changes and (force or now - self._last_flush >= self.FLUSH_INTERVAL):
            RegionRun.objects.filter(pk=self.region_run_id).update(**self.changes)
            self.changes = {}
            self._last_flush = now


class Heartbeat:
    """A thread renewing the region's lease every quarter lease while the sync runs."""

    def __init__(self, region_run_id: int, reporter: RunReporter) -> None:
        self.region_run_id = region_run_id
        self.reporter = reporter
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{region_run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        try:
            while not self.stopped.wait(settings.GLANCESYNC_LEASE_SECONDS / 4):
                if not runs.renew_lock(self.region_run_id):
                    self.reporter.lease_lost.set()
        finally:
            connection.close()  # this thread's own connection


# -- tasks ---------------------------------------------------------------------------------------------------


def sync_region(region_run_id: int) -> str:
    """Sync one region of a run; a no-op when the RegionRun is no longer waiting (cancelled, re-delivered)."""
    runs.recover_interrupted()
    now = timezone.now()
    started = RegionRun.objects.filter(pk=region_run_id, state=RunState.QUEUED).update(
        state=RunState.RUNNING, started_at=now, heartbeat_at=now, worker=runs.worker_name()
    )
    if not started:
        return f"region run {region_run_id} was not waiting any more: nothing done"
    region_run = RegionRun.objects.select_related("run").get(pk=region_run_id)
    runs.settle_run(region_run.run_id)
    if region_run.run.cancel_requested:
        runs.finish_region(region_run_id, RunState.CANCELLED, error="cancelled before it started")
        return f"{region_run.region}: cancelled"
    if not runs.acquire_lock(region_run):
        holder = runs.lock_holder(region_run.region)
        who = f"run #{holder.run_id}" if holder else "another run"
        runs.finish_region(region_run_id, RunState.FAILED, error=f"region busy: {who} is syncing it")
        return f"{region_run.region}: busy"
    try:
        return _sync_locked(region_run)
    except BaseException as error:  # never leave the RegionRun running: finish it, then let django-q2 know
        runs.finish_region(region_run_id, RunState.FAILED, error=f"internal error: {type(error).__name__}")
        raise


def _sync_locked(region_run: RegionRun) -> str:
    reporter = RunReporter(region_run)
    with Heartbeat(region_run.pk, reporter):
        try:
            engine = build_engine(reporter)
        except ConsoleError as error:
            reporter.error(str(error))
            reporter.flush(force=True)
            runs.finish_region(region_run.pk, RunState.FAILED, errors=1, error=str(error))
            return f"{region_run.region}: failed: {error}"
        result = engine.sync_region(region_run.region, dry_run=region_run.run.dry_run, reporter=reporter)
        found = []  # new conflicts: alerted with the other regions' when the run ends
        refresh_region(engine, region_run.region, found)  # the dashboard's snapshot follows every run
        reporter.flush(force=True)
    state = RunState.CANCELLED if result.cancelled else RunState.FAILED if result.error else RunState.DONE
    counters = _counters(result, reporter)
    runs.finish_region(region_run.pk, state, current_image="", new_problems=found[: alerts.MAX_STORED], **counters)
    return f"{region_run.region}: {state}" + (f": {result.error}" if result.error else "")


def _counters(result: RegionResult, reporter: RunReporter) -> dict[str, object]:
    counters = result.counters
    return {
        "metadata_updates": counters["metadata"],
        "uploads": counters["uploads"],
        "replaces": counters["replaces"],
        "renames": counters["renames"],
        "obsolete_updates": counters["obsolete"],
        "errors": counters["errors"] + (1 if result.error and not result.cancelled else 0),
        "warnings": reporter.warnings,
        "error": result.error or "",
    }


SCHEDULED_REFRESH_WAIT_SECONDS = 60  # how long the schedule's refresh waits for another one to end, then skips


def refresh_status(regions: list[str] | None = None, request_id: int | None = None) -> str:
    """Recompute the ImageState snapshot of these regions (`target:` for a target's; default: every region of
    every target). With `request_id` (a RefreshRequest: the console's "Refresh now", an admin save) the task
    claims it first and closes it at the end, whatever happens, so the pages stop saying "Refreshing".

    One refresh at a time (`sync.refresh_lock`). While another runs, a requested refresh waits for it (it was
    asked for after that one had started reading), as long as a request may take to be done; the schedule's
    waits SCHEDULED_REFRESH_WAIT_SECONDS (a short one, of a region or a target), then skips this firing, logged
    and said in its result: the one running is as recent, and the next firing comes 15 minutes later."""
    if request_id is not None and not RefreshRequest.start(request_id):
        return f"refresh request {request_id} was not waiting any more: nothing done"
    summary = "failed: internal error"
    wait = SCHEDULED_REFRESH_WAIT_SECONDS if request_id is None else settings.GLANCESYNC_REFRESH_TIMEOUT_SECONDS
    try:
        with refresh_lock(wait):
            summary = _refresh(regions)
        return summary
    except RefreshBusy as busy:
        summary = f"skipped: {busy}"
        logger.warning("Status refresh of %s skipped: %s", ", ".join(regions or ["every region"]), busy)
        return summary
    finally:
        if request_id is not None:
            RefreshRequest.finish(request_id, summary)


def _refresh(asked: list[str] | None) -> str:
    try:
        engine = build_engine()
    except ConsoleError as error:  # nothing readable: the pages say why
        return _not_refreshed(str(error))
    try:
        regions = _expand(engine, asked) if asked else all_regions(engine)
    except GlanceSyncError as error:  # a target removed since the refresh was asked for, a catalog error
        return _not_refreshed(safe_message(error, engine.config))
    failed = refresh_regions(engine, regions)
    if not asked:
        _remove_unconfigured(regions)
    StatusRefresh.objects.create(
        master_region=engine.config.master_region, regions=len(regions), failed_regions=len(failed)
    )
    summary = f"statuses of {len(regions) - len(failed)} of {len(regions)} regions refreshed"
    return summary + "".join(f"; {region}: {error}" for region, error in failed.items())


def _remove_unconfigured(regions: list[str]) -> None:
    """After a refresh of every region: the snapshot keeps only the regions it refreshed (see remove_all_but)."""
    gone = RegionSnapshot.remove_all_but(regions)
    if gone:
        logger.info("Status snapshot: removed %d regions no longer configured: %s", len(gone), ", ".join(gone))


def _not_refreshed(message: str) -> str:
    StatusRefresh.objects.create(error=message)
    return f"statuses not refreshed: {message}"


def _expand(engine: GlanceSync, regions: list[str]) -> list[str]:
    """Full region names, each `target:` replaced by the target's regions as the cloud lists them now."""
    names = []
    for spec in regions:
        names += build_region_list([spec], engine.config, engine.region_names) if spec.endswith(":") else [spec]
    return list(dict.fromkeys(names))


def sync_regions_of_all_targets(engine: GlanceSync) -> list[str]:
    """What a run of "all regions" syncs: every target's regions, as `manage.py glancesync master: t:...`."""
    return build_region_list([f"{t}:" for t in engine.config.targets], engine.config, engine.region_names)


def scheduled_run(regions: list[str] | None = None, dry_run: bool = False, schedule: str = "") -> str:
    """A schedule's firing: start a run (trigger=schedule); a busy region skips this firing, said in the result."""
    try:
        if not regions:
            regions = sync_regions_of_all_targets(build_engine())
        run = runs.start_run(regions, dry_run=dry_run, trigger=SyncRun.Trigger.SCHEDULE, started_by=schedule)
    except runs.RegionBusy as busy:
        logger.warning("Schedule %s skipped: %s", schedule, busy)
        return f"skipped: {busy}"
    except ConsoleError as error:
        logger.error("Schedule %s cannot start: %s", schedule, error)
        return f"not started: {error}"
    return f"started run #{run.pk} of {len(regions)} regions"


def recover_interrupted() -> str:
    """The recovery sweep (a schedule runs it every minute): regions whose worker died become interrupted,
    and region tasks a broker lost are enqueued again."""
    previous_beat = ClusterHeartbeat.beat()
    alerts.missed_schedules(previous_beat, timezone.now())
    recovered, redispatched = runs.recover_interrupted(), runs.redispatch_lost()
    retried = alerts.retry_due()
    said = [f"{len(recovered)} interrupted region runs recovered"] if recovered else []
    said += [f"{len(redispatched)} region tasks enqueued again"] if redispatched else []
    said += [f"{len(retried)} alert deliveries enqueued"] if retried else []
    return "; ".join(said) or "nothing to recover"


def make_backup(backup_id: int) -> str:
    """Write the listing of each region of the backup (and the master region) as the original's CSV files."""
    if not Backup.objects.filter(pk=backup_id, state=RunState.QUEUED).update(state=RunState.RUNNING):
        return f"backup {backup_id} was not waiting any more: nothing done"
    backup = Backup.objects.get(pk=backup_id)
    try:
        engine = build_engine()
    except ConsoleError as error:
        Backup.objects.filter(pk=backup_id).update(state=RunState.FAILED, error=str(error))
        return f"backup {backup.folder} failed: {error}"
    backup.path.mkdir(parents=True, exist_ok=True)
    regions = list(dict.fromkeys([engine.config.master_region, *backup.regions]))
    problems = []
    for region in regions:
        try:
            engine.backup_region(region, str(backup.path))
        except Exception as error:  # one unreadable region: the others are still backed up
            problems.append(f"{region}: {safe_message(error, engine.config)}")
    size = sum(path.stat().st_size for path in backup.files())
    state = RunState.FAILED if problems else RunState.DONE
    Backup.objects.filter(pk=backup_id).update(state=state, size=size, error="\n".join(problems))
    return f"backup {backup.folder}: {len(regions) - len(problems)} of {len(regions)} regions written"
