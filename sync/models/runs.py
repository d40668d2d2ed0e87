"""Background work: runs and their regions (a task each), region leases, the cluster heartbeat, the sync
schedules (django-q2 Schedule rows) and backups."""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_q.models import Schedule

from sync.engine.model import GLANCE_DOWNLOAD, IMPORT_STAGES
from sync.models.configuration import SingletonModel

# -- background runs (issue #5) ------------------------------------------------------------------------------


class RunState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


FINISHED_STATES = (RunState.DONE, RunState.FAILED, RunState.INTERRUPTED, RunState.CANCELLED)


class SyncRun(models.Model):
    """One request to sync (or dry-run) some regions; each region is a RegionRun, run as its own task."""

    class Trigger(models.TextChoices):
        CONSOLE = "console"
        CLI = "cli"
        SCHEDULE = "schedule"
        API = "api"

    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    started_by = models.CharField(max_length=200, blank=True, help_text="User name, or the schedule's name.")
    regions = models.JSONField(default=list, help_text="The regions asked for, as target:Region full names.")
    dry_run = models.BooleanField(default=False)
    max_children = models.PositiveIntegerField(default=1, help_text="Regions of this run that may sync at once.")
    state = models.CharField(max_length=12, choices=RunState.choices, default=RunState.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("view_console", "Can see the console (statuses, runs, conflicts, backups)"),
            ("operate_console", "Can start and cancel runs, resolve conflicts and make backups"),
        ]

    def __str__(self) -> str:
        kind = "dry-run" if self.dry_run else "sync"
        return f"Run #{self.pk} ({kind}, {self.state})"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


class RegionRun(models.Model):
    """One region of a SyncRun: its state, counters, progress and log, written by the task that syncs it."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="region_runs")
    region = models.CharField(max_length=255, help_text="target:Region full name (master's regions: Region).")
    position = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=12, choices=RunState.choices, default=RunState.QUEUED)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="When its task was enqueued.")
    task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the process that ran it.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    metadata_updates = models.PositiveIntegerField(default=0)
    uploads = models.PositiveIntegerField(default=0)
    replaces = models.PositiveIntegerField(default=0)
    renames = models.PositiveIntegerField(default=0)
    obsolete_updates = models.PositiveIntegerField(default=0)
    warnings = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    images_done = models.PositiveIntegerField(default=0)
    images_total = models.PositiveIntegerField(default=0)
    current_image = models.CharField(max_length=255, blank=True)
    current_transfer = models.CharField(
        max_length=20, blank=True, help_text="How the current image's bytes go: stream or glance-download."
    )
    current_stage = models.CharField(
        max_length=20, blank=True, help_text="glance-download: record created, importing, verifying, done."
    )
    transfer_started_at = models.DateTimeField(null=True, blank=True, help_text="When the current copy began.")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="Why the region stopped, if it did.")
    new_problems = models.JSONField(
        default=list, blank=True, help_text="Conflicts the refresh after the sync found new: alerted once per run."
    )

    class Meta:
        ordering = ["run", "position", "id"]
        indexes = [models.Index(fields=["region", "state"]), models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.region} in run #{self.run_id} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def importing(self) -> bool:
        """The region's Glance is copying the current image itself (glance-download): no bytes to count."""
        return not self.finished and self.current_transfer == GLANCE_DOWNLOAD and bool(self.current_image)

    @property
    def import_stages(self) -> list[tuple[str, str]]:
        """(stage, "done" | "current" | "todo") for each stage of a glance-download copy."""
        current = IMPORT_STAGES.index(self.current_stage) if self.current_stage in IMPORT_STAGES else -1
        return [
            (stage, "done" if i < current else "current" if i == current else "todo")
            for i, stage in enumerate(IMPORT_STAGES)
        ]

    @property
    def transfer_elapsed(self) -> str:
        """Time since the current copy began, as "42 s" or "3 min 04 s"."""
        if self.transfer_started_at is None:
            return ""
        seconds = max(0, int((timezone.now() - self.transfer_started_at).total_seconds()))
        return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"

    @property
    def log_tail(self) -> str:
        """The last 40 log lines, what the live page shows (the admin has the whole log)."""
        return "\n".join(self.log.splitlines()[-40:])


class RegionLock(models.Model):
    """At most one RegionRun syncs a region at a time: a lease taken by compare-and-set, renewed by a
    heartbeat, and free again once it expires (a killed worker cannot keep a region locked)."""

    region = models.CharField(max_length=255, unique=True)
    holder = models.ForeignKey(RegionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"lock of {self.region}"


class ClusterHeartbeat(SingletonModel):
    """When a task cluster last ran the recovery sweep (a schedule, every minute): the proof, for /readyz and the
    metrics, that some `qcluster` (on any machine, with any broker) schedules and runs tasks."""

    beat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "cluster heartbeat"

    def __str__(self) -> str:
        return f"cluster heartbeat at {self.beat_at}"

    @classmethod
    def beat(cls) -> datetime | None:
        """Beat now; return the previous beat (None the first time), so the sweep can tell the cluster was down."""
        previous = cls.objects.filter(pk=1).values_list("beat_at", flat=True).first()
        cls.objects.update_or_create(pk=1, defaults={"beat_at": timezone.now()})
        return previous

    @classmethod
    def age_seconds(cls) -> float | None:
        """Seconds since the last beat; None when no cluster ever beat."""
        beat_at = cls.objects.filter(pk=1).values_list("beat_at", flat=True).first()
        return None if beat_at is None else (timezone.now() - beat_at).total_seconds()


# -- schedules: django-q2 Schedule rows that start runs --------------------------------------------------------

SCHEDULED_RUN = "sync.tasks.scheduled_run"


class SyncScheduleManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(func=SCHEDULED_RUN)


class SyncSchedule(Schedule):
    """A django-q2 Schedule that starts a run; the admin edits regions, dry-run and the cron expression."""

    objects = SyncScheduleManager()

    class Meta:
        proxy = True
        verbose_name = "sync schedule"

    def options(self) -> dict:
        try:
            value = ast.literal_eval(self.kwargs or "{}")
        except (SyntaxError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}


class Backup(models.Model):
    """A backup of region listings in the original's CSV format: files in <DATA_DIR>/backups/<folder>/."""

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    regions = models.JSONField(default=list, help_text="The regions asked for; the master region is always added.")
    state = models.CharField(max_length=12, choices=RunState.choices, default=RunState.QUEUED)
    folder = models.CharField(max_length=100, unique=True)
    size = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"backup {self.folder}"

    @property
    def path(self) -> Path:
        return Path(settings.DATA_DIR) / "backups" / self.folder

    def files(self) -> list[Path]:
        """The backup's CSV files, sorted; only plain files directly in its folder."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.is_file() and p.name.endswith(".csv"))
