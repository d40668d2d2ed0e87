"""Database models of the GlanceSync console: the configuration that `glancesync.conf` held (issue #4).

- `Defaults` plays the `[DEFAULT]` section: a `Target` option left empty (blank text, NULL boolean/number)
  inherits it, and when it is empty too, the original's built-in default (`BUILTIN_OPTIONS`).
- `Target` is a section (`master` holds the master region), `Region` a region of a target (its `position` is the
  global `preferable_order`), `MasterSettings` the `[main]` section, `ChecksumDecision` one entry of the
  `dontupdate` / `rename` / `replace` lists. `AuditEntry` records who changed what (field names only).

The engine decides every sync rule; these models only validate input and build the engine's dataclasses.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from sync.crypto import EncryptedTextField
from sync.engine.condition import ConditionError, compile_condition
from sync.engine.config import GLANCE_DOWNLOAD_MASTER_ONLY
from sync.engine.model import GLANCE_DOWNLOAD, TargetPolicy

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
    "transfer": "auto",
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

    class Transfer(models.TextChoices):
        AUTO = "auto", "auto: glance-download where the region offers it, else stream"
        STREAM = "stream", "stream: every byte through GlanceSync"
        GLANCE_DOWNLOAD = "glance-download", "glance-download only (master target): the region's Glance copies it"

    transfer = models.CharField(
        max_length=20,
        blank=True,
        choices=Transfer.choices,
        help_text="How uploads reach the regions. glance-download: the region's Glance imports the image from "
        "the master region's Glance itself (Glance 2023.1+, regions of the master's Keystone), so the bytes do not "
        "pass through GlanceSync; a failed import is streamed once instead, except with 'glance-download only'.",
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
        if self.transfer == GLANCE_DOWNLOAD and getattr(self, "name", "") != "master":
            where = "the defaults" if isinstance(self, Defaults) else f"target {getattr(self, 'name', '')}"
            raise ValidationError({"transfer": f"not for {where}: {GLANCE_DOWNLOAD_MASTER_ONLY}"})


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
    demo = models.BooleanField(
        "demo configuration",
        default=False,
        help_text="The configuration is the built-in demo's (imported by `scripts/run`). The overview says so, "
        "and Connect a cloud replaces it whole, after a confirmation.",
    )

    class Meta:
        verbose_name = "master settings"
        verbose_name_plural = "master settings"

    def __str__(self) -> str:
        return "Master settings"

    @classmethod
    def load(cls):
        obj = cls.objects.filter(pk=1).first()
        return obj if obj is not None else cls(pk=1, cloud=settings.GLANCESYNC_CLOUD)

    @classmethod
    def demo_in_use(cls) -> bool:
        return cls.objects.filter(pk=1, demo=True).exists()

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
            transfer=option("transfer"),
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
        LOGIN = "login", "logged in"
        FAILED = "failed", "login failed"
        LOCKED = "locked", "locked out (too many failed logins)"

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
    def record_login(cls, action: str, username: str, address: str, user=None) -> AuditEntry:
        """A login, a failed one or a lockout: who (the name given), from where; never the password."""
        return cls.objects.create(
            user=user if getattr(user, "pk", None) else None,
            username=username[:150],
            model="login",
            object_repr=f"{username} from {address or 'an unknown address'}"[:200],
            action=action,
        )

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
