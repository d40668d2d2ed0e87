"""The status snapshot the pages read: per region (RegionSnapshot) and per (region, master image) pair
(ImageState), each status refresh (StatusRefresh), and the refreshes asked for and not yet done (RefreshRequest)."""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, Q, Sum
from django.utils import timezone


class RegionSnapshotQuerySet(models.QuerySet):
    def summaries(self) -> RegionSnapshotQuerySet:
        """For pages that list regions: without the other images, which only the region's own page shows."""
        return self.defer("other_images")


class RegionSnapshot(models.Model):
    """When the statuses of a region were last computed, and why not if that failed."""

    region = models.CharField(max_length=255, unique=True)
    target = models.CharField(max_length=100)
    computed_at = models.DateTimeField()
    error = models.TextField(blank=True)
    warnings = models.JSONField(default=list, blank=True, help_text="The engine's warnings for this region.")
    other_images = models.JSONField(
        default=list,
        blank=True,
        help_text="The region's images that are not copies of synchronised master images (the first "
        "OTHER_IMAGES_KEPT, by name): name, status, public, size, why.",
    )
    other_images_total = models.PositiveIntegerField(default=0)
    unreadable_since = models.DateTimeField(
        null=True, blank=True, help_text="The first of the refreshes in a row that could not read the region."
    )
    read_failures = models.PositiveIntegerField(default=0, help_text="Refreshes in a row that could not read it.")
    transfer = models.CharField(
        max_length=20,
        blank=True,
        help_text="How a sync would copy images there at the last refresh that planned uploads: stream, "
        "glance-download, or none (the target allows only glance-download, which the region does not offer).",
    )
    status_counts = models.JSONField(
        default=dict,
        blank=True,
        help_text="{status: images} of the region's ImageState rows, kept with them so /metrics never counts "
        "millions of rows per scrape.",
    )
    plan_totals = models.JSONField(
        default=dict,
        blank=True,
        help_text="{kind: [images, bytes]} of what a sync would do (see PLAN_KINDS), kept with the rows so the "
        "preview of a whole fleet reads one row per region.",
    )

    inputs = models.CharField(
        max_length=32, blank=True, editable=False,
        help_text="A hash of what the region's rows were computed from (sync.snapshot.region_inputs): a refresh "
        "that finds the same inputs stores nothing but the time. Empty: compute it at the next refresh.",
    )  # fmt: skip

    OTHER_IMAGES_KEPT = 500  # a page and a row of bounded size, even for a region full of foreign images

    objects = RegionSnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["region"]

    def __str__(self) -> str:
        return f"snapshot of {self.region}"

    @classmethod
    def remove_all_but(cls, regions: list[str]) -> list[str]:
        """Delete the snapshot (and ImageState rows) of every region not in `regions`, the regions of the
        configuration as a full refresh found them: a region removed from a target, a target removed, an old
        master region. Otherwise the pages, metrics and alerts would keep them, frozen, for ever.
        Returns the regions removed."""
        with transaction.atomic():
            gone = list(cls.objects.exclude(region__in=regions).values_list("region", flat=True))
            if gone:
                ImageState.objects.filter(region__in=gone).delete()
                cls.objects.filter(region__in=gone).delete()
        return sorted(gone)

    @classmethod
    def recount(cls, regions: list[str]) -> None:
        """Store the status counts and plan totals of these regions again from their ImageState rows (after rows
        changed status in place); call it in the transaction that changed them. The rows are then no longer
        what their inputs give: the next refresh computes these regions whatever their inputs."""
        groups: dict[str, list[tuple[str, bool, int, int]]] = {region: [] for region in regions}
        blocked = ExpressionWrapper(Q(status="pending_replace", reason=PROTECTED_COPY), BooleanField())
        rows = ImageState.objects.filter(region__in=regions).annotate(blocked=blocked)
        for row in rows.values("region", "status", "blocked").annotate(n=Count("id"), size=Sum("size")).order_by():
            groups[row["region"]].append((row["status"], row["blocked"], row["n"], row["size"] or 0))
        for region, found in groups.items():
            counts = Counter()
            for status, _, n, _ in found:
                counts[status] += n
            cls.objects.filter(region=region).update(
                status_counts=dict(sorted(counts.items())), plan_totals=plan_totals(found), inputs=""
            )


# Protected copies are never deleted: a replacement of one is refused, so a sync reports it and skips it.
PROTECTED_COPY = "the region's copy is protected: Replace is refused; Rename or Don't update work"
# What a sync does with an image, by status: upload it, update its metadata, or report a problem and skip it.
PLAN_KINDS = {
    "upload": ("pending_upload", "pending_replace", "pending_rename"),
    "metadata": ("pending_metadata", "pending_ami"),
    "problem": ("error_checksum", "error_ami"),
}


def plan_kind(status: str, blocked: bool = False) -> str | None:
    """The PLAN_KINDS kind of a status (None: nothing to do); `blocked`: a refused replacement (PROTECTED_COPY)."""
    if blocked:
        return "problem"
    return next((kind for kind, statuses in PLAN_KINDS.items() if status in statuses), None)


def plan_totals(groups) -> dict[str, list[int]]:
    """{kind: [images, bytes]} from (status, blocked, images, bytes) groups of a region's rows."""
    totals: dict[str, list[int]] = {}
    for status, blocked, count, size in groups:
        kind = plan_kind(status, blocked)
        if kind:
            images, total = totals.get(kind, (0, 0))
            totals[kind] = [images + count, total + size]
    return dict(sorted(totals.items()))


class ImageState(models.Model):
    """The latest known status of one master image in one region; the dashboard renders from these rows."""

    region = models.CharField(max_length=255)
    image_name = models.CharField(max_length=255)
    status = models.CharField(max_length=24)
    master_id = models.CharField(max_length=255, blank=True)
    master_checksum = models.CharField(max_length=255, blank=True)
    region_image_id = models.CharField(max_length=255, blank=True)
    region_checksum = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField(default=0, help_text="The master image's size.")
    region_size = models.BigIntegerField(null=True, blank=True, help_text="The region copy's size, if any.")
    region_image_name = models.CharField(
        max_length=255, blank=True, help_text="The copy's name: another than the image's when a rotation renames it."
    )
    visibility = models.CharField(
        max_length=10, blank=True, help_text="The master image's visibility (empty: computed before it was stored)."
    )
    hidden = models.BooleanField(default=False, help_text="The master image is hidden (os_hidden).")
    tags = models.JSONField(default=list, blank=True, help_text="The master image's tags.")
    region_visibility = models.CharField(max_length=10, blank=True)
    region_hidden = models.BooleanField(default=False)
    region_tags = models.JSONField(default=list, blank=True)
    position = models.PositiveIntegerField(default=0, help_text="The engine's (size, name) order.")
    changes = models.JSONField(
        default=list, blank=True, help_text="For pending_metadata: [[field, before, after], ...] a sync would apply."
    )
    reason = models.CharField(max_length=500, blank=True, help_text="For error_ami: what the region lacks.")
    # When the row last changed: a refresh that finds a pair as it was leaves its row alone, so this is the time
    # since which the pair has been so; RegionSnapshot.computed_at says when the region was last computed.
    computed_at = models.DateTimeField()
    digest = models.CharField(
        max_length=16, blank=True, editable=False,
        help_text="A hash of the other fields but status and position: a refresh compares it to find the rows that "
        "changed, instead of reading every field of every row.",
    )  # fmt: skip

    class Meta:
        ordering = ["region", "position"]
        constraints = [models.UniqueConstraint(fields=["region", "image_name"], name="one_state_per_region_image")]
        indexes = [
            # The region page's order: a page of 100 of 20,000 rows without sorting them (filtered by status too).
            models.Index(fields=["region", "position"], name="state_region_position"),
            # The matrix's pages of distinct names, read in name order: of every row, or of those of a status.
            models.Index(fields=["image_name"], name="state_name"),
            models.Index(fields=["status", "image_name"], name="state_status_name"),
            # The conflicts page's checksums in error, in order, and the rows of a page of them.
            models.Index(fields=["status", "region_checksum"], name="state_status_checksum"),
        ]

    def __str__(self) -> str:
        return f"{self.image_name} in {self.region}: {self.status}"

    @property
    def renamed_copy(self) -> bool:
        """The region's copy has another name: the master renamed the image (a rotation) and the copy follows."""
        return bool(self.region_image_id) and self.region_image_name != self.image_name

    def planned_change(self) -> str:
        """What a sync would change on the copy, in words, from `changes` ("rename the copy a → b, hide it")."""
        words = []
        for field, before, after in self.changes:
            if field == "name":
                words.append(f"rename the copy {before} → {after}")
            elif field == "hidden":
                words.append("hide it" if after == "yes" else "show it (not hidden)")
            elif field == "visibility":
                words.append(f"make it {after}")
            elif field == "tags":
                added = sorted(set(self.tags) - set(self.region_tags))
                words.append(f"add the tag{'s' if len(added) > 1 else ''} {', '.join(added)}")
        properties = sum(field not in ("name", "hidden", "visibility", "tags") for field, _, _ in self.changes)
        if properties:
            words.append(f"update {properties} propert{'ies' if properties > 1 else 'y'}")
        return ", ".join(words)


class StatusRefresh(models.Model):
    """One status refresh: when, how many regions, and why it failed as a whole (configuration, master)."""

    finished_at = models.DateTimeField(auto_now_add=True)
    master_region = models.CharField(max_length=255, blank=True)
    regions = models.PositiveIntegerField(default=0)
    failed_regions = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-finished_at", "-id"]

    def __str__(self) -> str:
        return f"status refresh of {self.finished_at:%Y-%m-%d %H:%M}"


def _target_of(spec: str) -> str:
    """The target of a region spec: `t:` (a target's regions), `t:Region`, or a bare master region."""
    return spec.split(":", 1)[0] if ":" in spec else "master"


class RefreshRequestQuerySet(models.QuerySet):
    def active(self) -> RefreshRequestQuerySet:
        """Requests whose task has not ended, asked for less than GLANCESYNC_REFRESH_TIMEOUT_SECONDS ago: an
        older one counts as lost (a broker lost its task, or its worker died), so no page says "Refreshing"
        for ever."""
        return self.filter(finished_at__isnull=True, requested_at__gte=timezone.now() - RefreshRequest.timeout())


class RefreshRequest(models.Model):
    """A status refresh asked for by an operator or an admin save, from its queuing until its task ends.

    The pages say "Refreshing…" from these rows, not from the broker or a process's memory, so it holds with
    several web processes, clusters and brokers. A refresh asked for while one of the same regions is still
    waiting for a worker is that one (the constraint makes this hold across processes too). Once its task has
    started it may already have read a region, so a new request is queued then."""

    regions = models.JSONField(
        default=list, blank=True, help_text="Region full names, or `target:` for every region of a target; empty: all."
    )
    scope = models.CharField(max_length=64, editable=False, help_text="'all', or a digest of the sorted regions.")
    requested_by = models.CharField(max_length=150, blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    result = models.TextField(blank=True, help_text="The task's summary, or why it was given up.")

    objects = RefreshRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope"],
                condition=models.Q(started_at__isnull=True, finished_at__isnull=True),
                name="one_waiting_refresh_per_scope",
            )
        ]
        indexes = [models.Index(fields=["finished_at", "requested_at"])]

    def __str__(self) -> str:
        return f"status refresh of {self.scope_label}"

    @staticmethod
    def timeout() -> timedelta:
        return timedelta(seconds=settings.GLANCESYNC_REFRESH_TIMEOUT_SECONDS)

    @staticmethod
    def scope_of(regions: list[str]) -> str:
        return hashlib.sha256("\n".join(sorted(regions)).encode()).hexdigest() if regions else "all"

    @property
    def scope_label(self) -> str:
        """What it refreshes, as the pages and the admin's messages say it: every region, Bilbao, the regions
        of partner, ..."""
        if not self.regions:
            return "every region"
        return ", ".join(f"the regions of {r[:-1]}" if r.endswith(":") else r for r in self.regions)

    def covers(self, spec: str) -> bool:
        """This refresh recomputes that region (or every region of that `target:`)."""
        if not self.regions or spec in self.regions:
            return True
        return not spec.endswith(":") and f"{_target_of(spec)}:" in self.regions

    def includes(self, regions: list[str]) -> bool:
        """This refresh recomputes at least these regions ([]: every region)."""
        return all(self.covers(spec) for spec in regions) if regions else not self.regions

    @classmethod
    def queue(cls, regions: list[str], requested_by: str = "") -> tuple[RefreshRequest, bool]:
        """Ask for a refresh of these regions ([]: all) and enqueue its task once the transaction commits;
        (the request, True), or (the waiting request that already covers them, False)."""
        regions = sorted(set(regions))
        scope, now = cls.scope_of(regions), timezone.now()
        # A lost request of this scope would hold the constraint for ever: it is given up, and replaced.
        cls.objects.filter(
            scope=scope, started_at__isnull=True, finished_at__isnull=True, requested_at__lt=now - cls.timeout()
        ).update(finished_at=now, result="given up: its task never started")
        for waiting in cls.objects.active().filter(started_at__isnull=True):
            if waiting.includes(regions):
                return waiting, False
        try:
            with transaction.atomic():
                request = cls.objects.create(regions=regions, scope=scope, requested_by=requested_by[:150])
        except IntegrityError:  # another process asked for the same regions at the same moment: that one it is
            return cls.objects.get(scope=scope, started_at__isnull=True, finished_at__isnull=True), False
        transaction.on_commit(request.enqueue)  # the task must not start before the request (and any save) is committed
        return request, True

    def enqueue(self) -> None:
        from django_q.tasks import async_task  # the broker is only needed once something is enqueued

        task_id = async_task(
            "sync.tasks.refresh_status", self.regions or None, request_id=self.pk, task_name=f"refresh {self.pk}"
        )
        RefreshRequest.objects.filter(pk=self.pk).update(task_id=task_id or "")

    @classmethod
    def start(cls, pk: int) -> bool:
        """The task claims its request (compare-and-set); False when it was given up or already started."""
        return bool(
            cls.objects.filter(pk=pk, started_at__isnull=True, finished_at__isnull=True).update(
                started_at=timezone.now()
            )
        )

    @classmethod
    def finish(cls, pk: int, result: str) -> None:
        cls.objects.filter(pk=pk).update(finished_at=timezone.now(), result=result)


class RefreshLock(models.Model):
    """At most one status refresh (`sync.tasks.refresh_status`) at a time in this database, whatever process or
    task cluster runs it: a lease taken by compare-and-set, renewed by a heartbeat and free again once it expires
    (a killed worker cannot keep it), as RegionLock is for a region's sync. One row, created on first use."""

    holder = models.CharField(max_length=200, blank=True, help_text="host, pid and a token of the refresh; empty: free")
    taken_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"refresh lock held by {self.holder}" if self.holder else "refresh lock (free)"
