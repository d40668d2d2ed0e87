"""Database models of the GlanceSync console: the configuration that `glancesync.conf` held (issue #4).

- `Defaults` plays the `[DEFAULT]` section: a `Target` option left empty (blank text, NULL boolean/number)
  inherits it, and when it is empty too, the original's built-in default (`BUILTIN_OPTIONS`).
- `Target` is a section (`master` holds the master region), `Region` a region of a target (its `position` is the
  global `preferable_order`), `MasterSettings` the `[main]` section, `ChecksumDecision` one entry of the
  `dontupdate` / `rename` / `replace` lists. `AuditEntry` records who changed what (field names only).

The engine decides every sync rule; these models only validate input and build the engine's dataclasses.
"""

from __future__ import annotations

import ast
import hashlib
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Count
from django.utils import timezone
from django_q.models import Schedule

from sync.crypto import EncryptedTextField
from sync.engine.condition import ConditionError, compile_condition
from sync.engine.model import TargetPolicy

# The per-target options of spec §1.4 that a target may inherit from Defaults, with the built-in defaults.
BUILTIN_OPTIONS = {
    "forcesyncs": "",
    "metadata_condition": "",
    "metadata_set": "",
    "only_tenant_images": True,
    "support_obsolete_images": True,
    "obsolete_syncprops": "",
    "list_images_timeout": 30,
    "ignore_regions": "",
    "follow_rotations": True,
}
OPTION_FIELDS = tuple(BUILTIN_OPTIONS)
CSV_FIELDS = ("forcesyncs", "metadata_set", "obsolete_syncprops", "ignore_regions")
SECRET_FIELDS = frozenset({"password"})

ANY = "any"
HEX_CHECKSUM = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{64}|[0-9a-f]{128})$")
LOOSE_CHECKSUM = re.compile(r"^[^\s,]{1,128}$")
TARGET_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
REGION_NAME = re.compile(r"^[^\s,:]+$")


def csv_items(value: str | None) -> list[str]:
    """Stripped, non-empty, de-duplicated items in their first order."""
    items: list[str] = []
    for item in (value or "").split(","):
        item = item.strip()
        if item and item not in items:
            items.append(item)
    return items


def normalise_csv(value: str | None) -> str:
    return ", ".join(csv_items(value))


def validate_condition(value: str, label: str = "metadata_condition") -> None:
    if value and value.strip():
        try:
            compile_condition(value, label)
        except ConditionError as error:
            raise ValidationError(str(error)) from None


def checksums_must_be_hex() -> bool:
    """Real clouds need md5 / os_hash checksums; the file cloud (demo, scenario tests) accepts any token."""
    return not MasterSettings.load().cloud.startswith("files:")


def validate_checksum(value: str, action: str, strict: bool | None = None) -> None:
    if value == ANY:
        if action == ChecksumDecision.Action.DONTUPDATE:
            raise ValidationError("'any' has no meaning in dontupdate: use it with rename or replace")
        return
    if strict is None:
        strict = checksums_must_be_hex()
    if strict and not HEX_CHECKSUM.match(value):
        raise ValidationError(
            f"{value!r} is not a checksum: 32 lower-case hex characters (md5), 64 or 128 (os_hash_value), or 'any'"
        )
    if not LOOSE_CHECKSUM.match(value):
        raise ValidationError(f"{value!r} is not a checksum: no blanks or commas, at most 128 characters")


class SingletonModel(models.Model):
    """A table with one row (pk 1), created on first `load()`."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError(f"{self._meta.verbose_name} cannot be deleted")

    @classmethod
    def load(cls):
        obj = cls.objects.filter(pk=1).first()
        return obj if obj is not None else cls(pk=1)


class TargetOptions(models.Model):
    """Per-target options of spec §1.4; blank text / NULL means "not set here"."""

    forcesyncs = models.TextField(blank=True, help_text="Master image UUIDs always synchronised (comma-separated).")
    metadata_condition = models.TextField(
        blank=True, help_text="Selection expression (safe evaluator: image, metadata_set, a few builtins)."
    )
    metadata_set = models.TextField(
        blank=True, help_text="Properties compared and copied (comma-separated; none = all properties)."
    )
    only_tenant_images = models.BooleanField(null=True, blank=True)
    support_obsolete_images = models.BooleanField(null=True, blank=True)
    obsolete_syncprops = models.TextField(blank=True, help_text="Properties copied to obsolete images.")
    list_images_timeout = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Seconds."
    )
    ignore_regions = models.TextField(blank=True, help_text="Region names left out when the target is expanded.")
    follow_rotations = models.BooleanField(
        null=True,
        blank=True,
        help_text="A region copy whose master image was renamed (a rotation) is renamed too, found by its "
        "checksum, instead of becoming a checksum conflict. Off: the original's behaviour.",
    )

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.normalise()
        super().save(*args, **kwargs)

    def normalise(self) -> None:
        for name in CSV_FIELDS:
            setattr(self, name, normalise_csv(getattr(self, name)))
        self.metadata_condition = (self.metadata_condition or "").strip()

    def clean(self):
        super().clean()
        self.normalise()
        try:
            validate_condition(self.metadata_condition, getattr(self, "name", "DEFAULT"))
        except ValidationError as error:
            raise ValidationError({"metadata_condition": error.messages}) from None


def is_set(value) -> bool:
    return value is not None and value != ""


class Defaults(SingletonModel, TargetOptions):
    """The `[DEFAULT]` section: options every target inherits when it leaves them empty."""

    class Meta:
        verbose_name = "defaults"
        verbose_name_plural = "defaults"

    def __str__(self) -> str:
        return "Defaults"


class MasterSettings(SingletonModel):
    """The `[main]` section and the run settings."""

    master_region = models.CharField(max_length=255, blank=True, help_text="Region of target master with the images.")
    max_children = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    default_dry_run = models.BooleanField(default=False)
    cloud = models.CharField(
        max_length=1000, default="openstack", help_text="'openstack', or 'files:DIR' (a folder of backup CSVs)."
    )
    images_dir = models.CharField(max_length=1000, blank=True, help_text="Optional folder of master image files.")

    class Meta:
        verbose_name = "master settings"
        verbose_name_plural = "master settings"

    def __str__(self) -> str:
        return "Master settings"

    @classmethod
    def load(cls):
        obj = cls.objects.filter(pk=1).first()
        return obj if obj is not None else cls(pk=1, cloud=settings.GLANCESYNC_CLOUD)

    def clean(self):
        super().clean()
        self.master_region = self.master_region.strip()
        self.cloud = self.cloud.strip()
        if self.cloud != "openstack" and not (self.cloud.startswith("files:") and len(self.cloud) > 6):
            raise ValidationError({"cloud": "use 'openstack' or 'files:DIR'"})


class Target(TargetOptions):
    """A target: regions behind one Keystone and credential, and the rules applied to them."""

    class IdentityVersion(models.TextChoices):
        V3 = "3", "v3"
        V2 = "2.0", "v2.0 (old clouds)"

    name = models.CharField(max_length=100, unique=True, help_text="'master' is the target of the master region.")
    auth_url = models.CharField("Keystone auth URL", max_length=1000, blank=True)
    identity_api_version = models.CharField(max_length=3, choices=IdentityVersion.choices, default=IdentityVersion.V3)
    user = models.CharField(max_length=255, blank=True)
    password = EncryptedTextField(blank=True)
    project_name = models.CharField("project (tenant) name", max_length=255, blank=True)
    user_domain = models.CharField(max_length=255, blank=True, help_text="Empty: Default.")
    project_domain = models.CharField(max_length=255, blank=True, help_text="Empty: Default.")
    region_name = models.CharField(max_length=255, blank=True)
    cacert = models.CharField("CA bundle", max_length=1000, blank=True)
    insecure = models.BooleanField(default=False, help_text="Skip TLS verification (test clouds only).")
    clouds_yaml_cloud = models.CharField(
        "clouds.yaml entry", max_length=255, blank=True, help_text="Authenticate with this clouds.yaml cloud."
    )
    tenant_id = models.CharField(max_length=255, blank=True, help_text="Project id (file cloud: owner of uploads).")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        self.name = (self.name or "").strip()
        if self.name and (not TARGET_NAME.match(self.name) or self.name in ("main", "DEFAULT", "DEFAULTS")):
            raise ValidationError(
                {"name": "letters, digits, '_', '.', '-' only; 'main', 'DEFAULT' and 'DEFAULTS' are reserved"}
            )
        super().clean()

    # --- inheritance -------------------------------------------------------------------------------------

    def effective(self, field: str, defaults: Defaults | None = None):
        """The value after inheritance: this target, then Defaults, then the built-in default."""
        if field not in BUILTIN_OPTIONS:
            return getattr(self, field)
        value = getattr(self, field)
        if is_set(value):
            return value
        defaults = defaults if defaults is not None else Defaults.load()
        value = getattr(defaults, field)
        return value if is_set(value) else BUILTIN_OPTIONS[field]

    def inherited_from(self, field: str, defaults: Defaults | None = None) -> str:
        """'target', 'defaults' or 'built-in': where the effective value comes from."""
        if is_set(getattr(self, field)):
            return "target"
        defaults = defaults if defaults is not None else Defaults.load()
        return "defaults" if is_set(getattr(defaults, field)) else "built-in"

    def to_policy(self, defaults: Defaults | None = None) -> TargetPolicy:
        defaults = defaults if defaults is not None else Defaults.load()

        def option(name):
            return self.effective(name, defaults)

        lists: dict[str, set[str]] = {action: set() for action in ChecksumDecision.Action.values}
        for decision in self.decisions.all() if self.pk else ():
            lists[decision.action].add(decision.checksum)
        return TargetPolicy(
            name=self.name,
            user=self.user or None,
            password=self.password or None,
            keystone_url=self.auth_url or None,
            tenant=self.project_name or None,
            tenant_id=self.tenant_id or None,
            use_keystone_v3=self.identity_api_version == self.IdentityVersion.V3,
            user_domain=self.user_domain or "Default",
            project_domain=self.project_domain or "Default",
            cloud_name=self.clouds_yaml_cloud or None,
            cacert=self.cacert or None,
            insecure=self.insecure,
            forcesyncs=frozenset(csv_items(option("forcesyncs"))),
            replace=frozenset(lists["replace"]),
            rename=frozenset(lists["rename"]),
            dontupdate=frozenset(lists["dontupdate"]),
            ignore_regions=frozenset(csv_items(option("ignore_regions"))),
            metadata_condition=option("metadata_condition") or None,
            metadata_set=frozenset(csv_items(option("metadata_set"))),
            only_tenant_images=option("only_tenant_images"),
            support_obsolete_images=option("support_obsolete_images"),
            obsolete_syncprops=frozenset(csv_items(option("obsolete_syncprops"))),
            list_images_timeout=option("list_images_timeout"),
            follow_rotations=option("follow_rotations"),
        )


class Region(models.Model):
    """A region of a target. `position` orders enabled regions across all targets (the preferable_order)."""

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="regions")
    name = models.CharField(max_length=255)
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0, help_text="Preferable order: lower comes first.")

    class Meta:
        ordering = ["position", "target__name", "name"]
        constraints = [models.UniqueConstraint(fields=["target", "name"], name="unique_region_per_target")]

    def __str__(self) -> str:
        return self.fullname

    @property
    def fullname(self) -> str:
        """The engine's region name: bare for the master target, `target:Region` otherwise."""
        return self.name if self.target.name == "master" else f"{self.target.name}:{self.name}"

    def clean(self):
        super().clean()
        self.name = (self.name or "").strip()
        if self.name and not REGION_NAME.match(self.name):
            raise ValidationError({"name": "a region name has no blanks, commas or colons"})


class ChecksumDecision(models.Model):
    """What to do with a region image whose checksum differs from the master's: one entry of the legacy lists."""

    class Action(models.TextChoices):
        DONTUPDATE = "dontupdate", "don't update (leave it)"
        RENAME = "rename", "rename to <name>.old and upload"
        REPLACE = "replace", "replace (upload, then delete the old one)"

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="decisions")
    checksum = models.CharField(max_length=128, help_text="Region-side checksum, or 'any' (rename/replace only).")
    action = models.CharField(max_length=10, choices=Action.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["target__name", "action", "checksum"]
        constraints = [models.UniqueConstraint(fields=["target", "checksum"], name="unique_checksum_per_target")]

    def __str__(self) -> str:
        return f"{self.action} {self.checksum}"

    def clean(self):
        super().clean()
        self.checksum = (self.checksum or "").strip()
        if self.checksum != ANY:
            self.checksum = self.checksum.lower() if HEX_CHECKSUM.match(self.checksum.lower()) else self.checksum
        if self.checksum and self.action:
            try:
                validate_checksum(self.checksum, self.action)
            except ValidationError as error:
                raise ValidationError({"checksum": error.messages}) from None


class AuditEntry(models.Model):
    """Who created, changed or deleted which configuration object; changed field names only, never values."""

    class Action(models.TextChoices):
        CREATE = "create"
        CHANGE = "change"
        DELETE = "delete"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    when = models.DateTimeField(auto_now_add=True)
    model = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=200)
    action = models.CharField(max_length=6, choices=Action.choices)
    changed_fields = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-when", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.when:%Y-%m-%d %H:%M} {self.username or '?'} {self.action} {self.model} {self.object_repr}"

    @classmethod
    def record(cls, user, obj, action: str, changed_fields=(), username: str = "") -> AuditEntry:
        """Write an entry; the names of secret fields are kept (that they changed), their values never are."""
        if user is not None and getattr(user, "pk", None):
            username = user.get_username()
        return cls.objects.create(
            user=user if getattr(user, "pk", None) else None,
            username=username,
            model=obj._meta.model_name,
            object_id=str(obj.pk or ""),
            object_repr=str(obj)[:200],
            action=action,
            changed_fields=sorted(set(changed_fields)),
        )


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
    status_counts = models.JSONField(
        default=dict,
        blank=True,
        help_text="{status: images} of the region's ImageState rows, kept with them so /metrics never counts "
        "millions of rows per scrape.",
    )

    OTHER_IMAGES_KEPT = 500  # a page and a row of bounded size, even for a region full of foreign images

    objects = RegionSnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["region"]

    def __str__(self) -> str:
        return f"snapshot of {self.region}"

    @classmethod
    def recount(cls, regions: list[str]) -> None:
        """Store the status counts of these regions again from their ImageState rows (after rows changed status
        in place); call it in the transaction that changed them."""
        counts: dict[str, dict[str, int]] = {region: {} for region in regions}
        rows = ImageState.objects.filter(region__in=regions).values_list("region", "status").annotate(n=Count("id"))
        for region, status, n in rows.order_by("region", "status"):
            counts[region][status] = n
        for region, by_status in counts.items():
            cls.objects.filter(region=region).update(status_counts=by_status)


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
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["region", "position"]
        constraints = [models.UniqueConstraint(fields=["region", "image_name"], name="one_state_per_region_image")]
        indexes = [models.Index(fields=["status"])]

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


class ApiToken(models.Model):
    """A per-user API token for `Authorization: Bearer ...`; only its SHA-256 digest is stored.

    The token is 32 random bytes (urlsafe base64), so a plain SHA-256 is enough: there is nothing to guess."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'CI pipeline'.")
    prefix = models.CharField(max_length=8, editable=False, help_text="The first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False)

    class Meta:
        ordering = ["user__username", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @staticmethod
    def new_token() -> str:
        return "gs_" + secrets.token_urlsafe(32)

    @classmethod
    def issue(cls, user, name: str) -> tuple[ApiToken, str]:
        """A new token for `user`: the row, and the token itself (shown once, never stored)."""
        token = cls.new_token()
        return cls.objects.create(user=user, name=name, prefix=token[:8], digest=cls.hash(token)), token

    @classmethod
    def user_for(cls, token: str):
        """The active user owning this valid, unrevoked token, or None."""
        found = cls.objects.filter(digest=cls.hash(token), revoked=False).select_related("user").first()
        if found is None or not found.user.is_active:
            return None
        if found.last_used_at is None or timezone.now() - found.last_used_at > timedelta(minutes=1):
            cls.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
        return found.user


# -- alerts (issue #14) ---------------------------------------------------------------------------------------


class AlertEvent(models.TextChoices):
    RUN_FAILED = "run_failed", "a run failed"
    RUN_PARTLY_FAILED = "run_partly_failed", "a run partly failed (some regions failed)"
    RUN_INTERRUPTED = "run_interrupted", "a run was interrupted (its worker stopped)"
    REGION_UNREADABLE = "region_unreadable", "a region cannot be read (two refreshes in a row)"
    REGION_RECOVERED = "region_recovered", "a region that could not be read can be read again"
    NEW_PROBLEMS = "new_problems", "new checksum conflicts or error_ami images"
    SCHEDULE_MISSED = "schedule_missed", "a schedule did not fire on time (no task cluster ran)"
    TEST = "test", "a test alert"


CHANNEL_EVENTS = [event for event in AlertEvent.values if event != AlertEvent.TEST]


def default_channel_events() -> list[str]:
    return list(CHANNEL_EVENTS)


class AlertChannel(models.Model):
    """Where alerts go: e-mail to some recipients (the SMTP server comes from settings) or a JSON webhook.

    The webhook URL is a secret (Slack's and Mattermost's carry their key in the path): encrypted at rest,
    never shown after saving, never quoted in an error."""

    class Kind(models.TextChoices):
        EMAIL = "email", "e-mail"
        WEBHOOK = "webhook", "webhook (Slack, Mattermost, Rocket.Chat or any JSON receiver)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    recipients = models.TextField(blank=True, help_text="E-mail: comma-separated addresses.")
    webhook_url = EncryptedTextField(blank=True)
    events = models.JSONField(default=default_channel_events, help_text="The events this channel receives.")
    targets = models.ManyToManyField(
        "Target", blank=True, related_name="alert_channels", help_text="Only events of these targets; none: all."
    )
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="Set when an alert could not be delivered after every retry."
    )
    last_error = models.CharField(max_length=300, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def recipient_list(self) -> list[str]:
        return csv_items(self.recipients)

    def clean(self) -> None:
        from django.core.validators import URLValidator, validate_email

        if self.kind == self.Kind.EMAIL:
            if not self.recipient_list():
                raise ValidationError({"recipients": "An e-mail channel needs at least one recipient."})
            for address in self.recipient_list():
                try:
                    validate_email(address)
                except ValidationError:
                    raise ValidationError({"recipients": f"{address!r} is not an e-mail address."}) from None
        elif self.kind == self.Kind.WEBHOOK:
            if not self.webhook_url:
                raise ValidationError({"webhook_url": "A webhook channel needs its URL."})
            try:
                URLValidator(schemes=["http", "https"])(self.webhook_url)
            except ValidationError:  # the message must not quote the URL
                raise ValidationError({"webhook_url": "Not an http:// or https:// URL."}) from None
        unknown = set(self.events or []) - set(CHANNEL_EVENTS)
        if unknown:
            raise ValidationError({"events": f"Unknown events: {', '.join(sorted(unknown))}."})

    def wants(self, event: str, targets: list[str], target_names: set[str]) -> bool:
        """Does this channel take the event? `target_names` is its own target filter (empty: every target).

        An event of no target (a missed schedule, a test) goes to every channel that chose it."""
        if not self.enabled or (event != AlertEvent.TEST and event not in self.events):
            return False
        return not target_names or not targets or bool(target_names & set(targets))


class Alert(models.Model):
    """One event worth telling someone about, delivered once to each channel that wants it."""

    key = models.CharField(max_length=300, unique=True, help_text="Identifies the event: never alerted twice.")
    event = models.CharField(max_length=20, choices=AlertEvent.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    title = models.CharField(max_length=300)
    text = models.TextField(blank=True)
    targets = models.JSONField(default=list, blank=True, help_text="The targets it concerns (empty: none).")
    details = models.JSONField(default=dict, blank=True, help_text="Structured fields, for webhook receivers.")
    link = models.CharField(max_length=500, blank=True, help_text="The console page it is about (a path).")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title


class DeliveryState(models.TextChoices):
    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"


class AlertDelivery(models.Model):
    """One alert to one channel: a django-q2 task, retried with backoff, then failed for good."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=10, choices=DeliveryState.choices, default=DeliveryState.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Retrying: when the recovery sweep tries again (sending: when it gives up)."
    )
    last_error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["alert", "channel__name"]
        constraints = [models.UniqueConstraint(fields=["alert", "channel"], name="one_delivery_per_alert_channel")]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]
        verbose_name_plural = "alert deliveries"

    def __str__(self) -> str:
        return f"{self.alert} to {self.channel} ({self.state})"
