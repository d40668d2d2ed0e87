"""Admin of the configuration: targets (write-only password, effective values), regions, decisions, audit.

Saving a row the statuses depend on queues a status refresh of the regions it affects (RefreshMixin)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Max
from django.utils.html import format_html

from sync.engine.model import GlanceSyncError
from sync.forms import AlertChannelAdminForm, MasterSettingsAdminForm, SyncScheduleForm, TargetAdminForm
from sync.models import (
    CHANNEL_EVENTS,
    OPTION_FIELDS,
    AlertChannel,
    ApiToken,
    AuditEntry,
    ChecksumDecision,
    Defaults,
    KeystoneIdentity,
    MasterSettings,
    RefreshRequest,
    Region,
    RegionRun,
    SyncRun,
    SyncSchedule,
    Target,
)

# The admin is GlanceSync's: its name in the header and the window title (templates/admin/base_site.html adds a
# link back to the console, the site at site_url). Only active staff get past its login (Django's has_permission),
# and they see the models their permissions allow: the console's roles grant none.
admin.site.site_header = "GlanceSync administration"
admin.site.site_title = "GlanceSync admin"
admin.site.index_title = "Configuration and accounts"
admin.site.site_url = "/"


def target_region_names(target: Target) -> tuple[list[str], str]:
    """(bare region names with an image service, "") or ([], a message without any secret)."""
    from sync.clouds import cloud_from_url

    main = MasterSettings.load()
    try:
        session = cloud_from_url(main.cloud, main.images_dir or None).session(target.to_policy())
        return sorted(session.region_names()), ""
    except GlanceSyncError as error:
        message = str(error)
    except Exception as error:  # driver or network failure: its text may quote the request, never trust it
        message = f"{type(error).__name__}: {error}"
    if target.password:
        message = message.replace(target.password, "***")
    return [], message or "unknown error"


def _changed(form) -> list[str]:
    if hasattr(form, "changed_field_names"):
        return form.changed_field_names()
    return list(form.changed_data) if form is not None else []


class AuditMixin:
    """Writes an AuditEntry for every save and delete made in the admin (field names only, never values)."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        AuditEntry.record(request.user, obj, "change" if change else "create", _changed(form))

    def delete_model(self, request, obj):
        AuditEntry.record(request.user, obj, "delete")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            AuditEntry.record(request.user, obj, "delete")
        super().delete_queryset(request, queryset)

    def save_formset(self, request, form, formset, change):
        for inline_form in formset.forms:
            instance = inline_form.instance
            if isinstance(instance, ChecksumDecision) and not instance.pk and instance.created_by_id is None:
                instance.created_by = request.user
        formset.save()
        for obj in formset.new_objects:
            AuditEntry.record(request.user, obj, "create")
        for obj, fields in formset.changed_objects:
            AuditEntry.record(request.user, obj, "change", fields)
        for obj in formset.deleted_objects:
            AuditEntry.record(request.user, obj, "delete")


EVERY_REGION = "*"  # in the regions a save affects: all of them


class RefreshMixin:
    """Saving (or deleting) a row the statuses depend on queues one status refresh of the regions it affects,
    once the admin view's transaction has committed, so the task reads the new configuration. One view (a
    form with its inlines, a list of edited rows, a bulk delete) queues one refresh, and says so."""

    refresh_on_delete = True

    def refreshed_regions(self, obj) -> list[str]:
        """Region full names or `target:` whose statuses the row changes; [EVERY_REGION] for all."""
        return [EVERY_REGION]

    def _note_refresh(self, request, regions: list[str]) -> None:
        request.__dict__.setdefault("_glancesync_refresh", set()).update(regions)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._note_refresh(request, self.refreshed_regions(obj))

    def delete_model(self, request, obj):
        if self.refresh_on_delete:
            self._note_refresh(request, self.refreshed_regions(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        if self.refresh_on_delete:
            for obj in queryset:
                self._note_refresh(request, self.refreshed_regions(obj))
        super().delete_queryset(request, queryset)

    # The views below run their saves in a transaction of their own: once they return, it has committed.
    def changeform_view(self, request, *args, **kwargs):
        return self._queue_refresh(request, super().changeform_view(request, *args, **kwargs))

    def changelist_view(self, request, *args, **kwargs):
        return self._queue_refresh(request, super().changelist_view(request, *args, **kwargs))

    def delete_view(self, request, *args, **kwargs):
        return self._queue_refresh(request, super().delete_view(request, *args, **kwargs))

    def _queue_refresh(self, request, response):
        noted = request.__dict__.pop("_glancesync_refresh", set())
        if noted:
            regions = [] if EVERY_REGION in noted else sorted(noted)
            refresh, created = RefreshRequest.queue(regions, requested_by=request.user.get_username())
            said = "was queued" if created else "was already waiting for a task worker: it will read this change"
            self.message_user(request, f"A status refresh of {refresh.scope_label} {said}.", messages.INFO)
        return response


class SingletonAdmin(RefreshMixin, AuditMixin, admin.ModelAdmin):
    def has_add_permission(self, request):
        # There is one row at most; the user's permission still decides (a staff user without it never sees it).
        return super().has_add_permission(request) and not self.model.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


class RegionInline(admin.TabularInline):
    model = Region
    extra = 0
    fields = ("name", "enabled", "position")


class ChecksumDecisionInline(admin.TabularInline):
    model = ChecksumDecision
    extra = 0
    fields = ("checksum", "action", "reason", "created_by", "created_at")
    readonly_fields = ("created_by", "created_at")


def _effective_display(field):
    def display(self, obj):
        if obj is None:
            return "-"
        source = obj.inherited_from(field) if obj.pk else "built-in"
        value = obj.effective(field)
        if value == "" or value is None:
            value = "(empty)"
        return format_html("{} <small>({})</small>", value, source)

    display.short_description = f"effective {field.replace('_', ' ')}"
    display.__name__ = f"effective_{field}"
    return display


@admin.register(Target)
class TargetAdmin(RefreshMixin, AuditMixin, admin.ModelAdmin):
    form = TargetAdminForm
    inlines = (RegionInline, ChecksumDecisionInline)
    list_display = ("name", "auth_url", "identity_api_version", "user", "password_state", "project_name")
    search_fields = ("name", "auth_url", "user", "project_name")
    readonly_fields = tuple(f"effective_{field}" for field in OPTION_FIELDS)
    fieldsets = (
        (None, {"fields": ("name",)}),
        (
            "Authentication",
            {
                "fields": (
                    "auth_url",
                    "identity_api_version",
                    "user",
                    "new_password",
                    "clear_password",
                    "project_name",
                    "user_domain",
                    "project_domain",
                    "region_name",
                    "cacert",
                    "insecure",
                    "clouds_yaml_cloud",
                    "tenant_id",
                )
            },
        ),
        (
            "Options (empty = inherited from Defaults, then the built-in default)",
            {"fields": tuple(item for field in OPTION_FIELDS for item in (field, f"effective_{field}"))},
        ),
    )

    actions = ("test_connection", "discover_regions")
    refresh_on_delete = False  # a deleted target's regions are no longer synchronised: nothing to recompute

    def refreshed_regions(self, obj: Target) -> list[str]:
        # The master target reads the master region, which every status compares with. Its inlines (regions,
        # decisions) are saved with it, so this covers them.
        return [EVERY_REGION] if obj.name == "master" else [f"{obj.name}:"]

    @admin.display(description="password")
    def password_state(self, obj):
        return "set" if obj.password else "not set"

    @admin.action(description="Test connection (authenticate and list image regions)")
    def test_connection(self, request, queryset):
        for target in queryset:
            names, problem = target_region_names(target)
            if problem:
                self.message_user(request, f"{target.name}: failed: {problem}", messages.ERROR)
            else:
                shown = ", ".join(names) or "none"
                self.message_user(request, f"{target.name}: OK, image regions: {shown}", messages.SUCCESS)

    @admin.action(description="Discover regions (from the catalog, or the folder of a files: cloud)")
    def discover_regions(self, request, queryset):
        for target in queryset:
            names, problem = target_region_names(target)
            if problem:
                self.message_user(request, f"{target.name}: failed: {problem}", messages.ERROR)
                continue
            with transaction.atomic():
                known = set(target.regions.values_list("name", flat=True))
                position = (Region.objects.aggregate(top=Max("position"))["top"] or 0) + 1
                added = []
                for name in names:
                    if name not in known:
                        region = Region.objects.create(target=target, name=name, position=position)
                        AuditEntry.record(request.user, region, "create")
                        added.append(name)
                        position += 1
            text = f"added {', '.join(added)}" if added else "no new region"
            self.message_user(request, f"{target.name}: {text}", messages.SUCCESS)


for _field in OPTION_FIELDS:
    setattr(TargetAdmin, f"effective_{_field}", _effective_display(_field))


@admin.register(Defaults)
class DefaultsAdmin(SingletonAdmin):
    fields = OPTION_FIELDS


@admin.register(MasterSettings)
class MasterSettingsAdmin(SingletonAdmin):
    form = MasterSettingsAdminForm
    list_display = ("__str__", "master_region", "max_children", "default_dry_run", "cloud", "demo")


@admin.register(Region)
class RegionAdmin(RefreshMixin, AuditMixin, admin.ModelAdmin):
    list_display = ("name", "target", "enabled", "position")
    list_filter = ("target", "enabled")
    list_editable = ("enabled", "position")
    refresh_on_delete = False  # the row only ordered the region: its statuses stay what they are

    def refreshed_regions(self, obj: Region) -> list[str]:
        return [obj.fullname]  # a new region gets its first snapshot


@admin.register(ChecksumDecision)
class ChecksumDecisionAdmin(RefreshMixin, AuditMixin, admin.ModelAdmin):
    list_display = ("checksum", "action", "target", "created_by", "created_at")
    list_filter = ("action", "target")
    search_fields = ("checksum", "reason")
    readonly_fields = ("created_by", "created_at")

    def refreshed_regions(self, obj: ChecksumDecision) -> list[str]:
        return [f"{obj.target.name}:"]  # a decision applies to its target's regions only

    def save_model(self, request, obj, form, change):
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records other code writes (the audit log, Keystone identities): staff read them, nobody edits them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("when", "username", "action", "model", "object_repr", "changed_fields")
    list_filter = ("action", "model")
    search_fields = ("username", "object_repr")


@admin.register(SyncSchedule)
class SyncScheduleAdmin(AuditMixin, admin.ModelAdmin):
    """Runs on a cron schedule, stored as django-q2 Schedule rows (the cluster's scheduler fires them)."""

    form = SyncScheduleForm
    list_display = ["name", "cron", "regions_label", "dry_run_label", "next_run", "last_task"]
    readonly_fields = ["next_run"]

    @admin.display(description="regions")
    def regions_label(self, schedule: SyncSchedule) -> str:
        return ", ".join(schedule.options().get("regions") or []) or "all"

    @admin.display(description="dry run", boolean=True)
    def dry_run_label(self, schedule: SyncSchedule) -> bool:
        return bool(schedule.options().get("dry_run"))

    @admin.display(description="last task")
    def last_task(self, schedule: SyncSchedule) -> str:
        return schedule.task or "—"


class RegionRunInline(admin.StackedInline):
    model = RegionRun
    extra = 0
    can_delete = False
    fields = [
        ("region", "state", "worker"),
        ("started_at", "finished_at", "heartbeat_at"),
        ("uploads", "replaces", "renames", "metadata_updates", "obsolete_updates", "warnings", "errors"),
        ("images_done", "images_total", "bytes_done", "bytes_total", "current_image"),
        "error",
        "log",
    ]
    readonly_fields = [field for row in fields for field in (row if isinstance(row, tuple) else (row,))]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    """The run history, read-only: runs are started by the console, the API, schedules or the CLI."""

    list_display = ["__str__", "trigger", "started_by", "regions_label", "state", "created_at", "finished_at"]
    list_filter = ["state", "trigger", "dry_run"]
    readonly_fields = [f.name for f in SyncRun._meta.fields]
    inlines = [RegionRunInline]
    actions = ["cancel_runs"]

    @admin.display(description="regions")
    def regions_label(self, run: SyncRun) -> str:
        return ", ".join(run.regions)

    @admin.action(description="Cancel the selected runs", permissions=["change"])
    def cancel_runs(self, request, queryset):
        from sync.runs import cancel_run

        active = [run for run in queryset if not run.finished]
        for run in active:
            cancel_run(run)
            AuditEntry.record(request.user, run, "change", ["cancel_requested"])
        self.message_user(request, f"Cancel requested for {len(active)} run(s); finished runs are left as they are.")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(AuditMixin, admin.ModelAdmin):
    """API tokens: the token is shown once, when created; only its digest is kept. Revoke instead of sharing."""

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked"]
    list_filter = ["revoked"]
    fields = ["user", "name", "revoked", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke"]

    def save_model(self, request, obj, form, change):
        if not change:
            token = ApiToken.new_token()
            obj.prefix, obj.digest = token[:8], ApiToken.hash(token)
            super().save_model(request, obj, form, change)
            self.message_user(
                request,
                f"API token for {obj.user}: {token} — copy it now, it is not shown again "
                "(send it as 'Authorization: Bearer <token>').",
                messages.WARNING,
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked=False):
            token.revoked = True
            token.save(update_fields=["revoked"])
            AuditEntry.record(request.user, token, "change", ["revoked"])
        self.message_user(request, "Revoked.")


@admin.register(AlertChannel)
class AlertChannelAdmin(AuditMixin, admin.ModelAdmin):
    """Where alerts go (e-mail or webhook), which events and targets; failing ones say so."""

    form = AlertChannelAdminForm
    list_display = ["name", "kind", "enabled", "state", "last_sent_at", "event_count", "target_names"]
    list_filter = ["kind", "enabled"]
    readonly_fields = ["failing_since", "last_error", "last_sent_at"]
    actions = ["send_test_alert"]

    @admin.display(description="state")
    def state(self, channel: AlertChannel) -> str:
        if channel.failing:
            return f"FAILING since {channel.failing_since:%Y-%m-%d %H:%M} UTC: {channel.last_error}"
        return "ok" if channel.enabled else "disabled"

    @admin.display(description="events")
    def event_count(self, channel: AlertChannel) -> str:
        return f"{len(channel.events)} of {len(CHANNEL_EVENTS)}"

    @admin.display(description="targets")
    def target_names(self, channel: AlertChannel) -> str:
        return ", ".join(target.name for target in channel.targets.all()) or "all"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("targets")

    @admin.action(description="Send a test alert (now, to the selected channels)")
    def send_test_alert(self, request, queryset):
        from sync import alerts  # here: every manage.py command loads the admin, and alerts imports requests

        for channel in queryset:
            problem = alerts.send_test(channel, request.user)
            if problem:
                self.message_user(request, f"{channel.name}: the test alert failed: {problem}", messages.ERROR)
            else:
                self.message_user(request, f"{channel.name}: test alert sent", messages.SUCCESS)


@admin.register(KeystoneIdentity)
class KeystoneIdentityAdmin(ReadOnlyAdmin):
    """The users that Keystone logins made, read-only: Keystone decides their roles at every login. Deleting the
    user (Users, superusers) lets a Keystone user of that name start again."""

    list_display = ("user", "name", "domain", "console_role", "roles", "checked_at", "created_at")
    list_filter = ("console_role", "domain")
    search_fields = ("user__username", "name", "keystone_user_id")
