"""Forms of the configuration admin: the target form with a write-only password, the master settings with the
master region chosen among the known regions, the alert channel form with a write-only webhook URL, schedules
and API tokens."""

from __future__ import annotations

import re
from datetime import datetime

from croniter import croniter
from django import forms
from django.utils import timezone
from django_q.models import Schedule

from sync.models import (
    SCHEDULED_RUN,
    AlertChannel,
    AlertEvent,
    ApiToken,
    MasterSettings,
    Region,
    SyncSchedule,
    Target,
)

PASSWORD_FORM_FIELDS = ("new_password", "clear_password")
# Every editable Target field but the stored password, which the form never renders.
TARGET_FORM_FIELDS = tuple(
    field.name
    for field in Target._meta.get_fields()
    if getattr(field, "editable", False) and field.concrete and not field.auto_created and field.name != "password"
)


class TargetAdminForm(forms.ModelForm):
    """The stored password is never sent to the browser: the form only says whether one is set.

    Leaving "new password" empty keeps the stored one; "clear password" removes it.
    """

    new_password = forms.CharField(
        label="Change password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_password = forms.BooleanField(label="Clear the stored password", required=False)

    class Meta:
        model = Target
        fields = TARGET_FORM_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        state = "set" if self.instance.pk and self.instance.password else "not set"
        self.fields[
            "new_password"
        ].help_text = f"Stored password: <strong>{state}</strong>. Leave empty to keep it; it is never shown back."

    def clean(self):
        data = super().clean()
        if data.get("new_password") and data.get("clear_password"):
            self.add_error("clear_password", "Either set a new password or clear it, not both.")
        return data

    def save(self, commit=True):
        if self.cleaned_data.get("clear_password"):
            self.instance.password = ""
        elif self.cleaned_data.get("new_password"):
            self.instance.password = self.cleaned_data["new_password"]
        return super().save(commit)

    def changed_field_names(self) -> list[str]:
        """Changed fields for the audit log ("password" stands for both password boxes)."""
        names = [name for name in self.changed_data if name not in PASSWORD_FORM_FIELDS]
        if self.cleaned_data.get("new_password") or self.cleaned_data.get("clear_password"):
            names.append("password")
        return names


class MasterSettingsAdminForm(forms.ModelForm):
    """The master region is chosen among the regions the database knows for the target master, not typed: a
    typo would only show at the next refresh. The current value stays offered when it is not one of them (a
    demo's master region, a region not discovered yet)."""

    master_region = forms.ChoiceField(
        required=False,
        help_text="A region of the target master: the Regions of that target (the Target admin's "
        "<em>Discover regions</em> action adds those of its catalog).",
    )

    class Meta:
        model = MasterSettings
        fields = ["master_region", "max_children", "default_dry_run", "cloud", "images_dir", "demo"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        known = Region.objects.filter(target__name="master").order_by("position", "name")
        choices = [(name, name) for name in known.values_list("name", flat=True)]
        current = self.instance.master_region
        if current and current not in dict(choices):
            choices.append((current, f"{current} (not a known region of target master)"))
        self.fields["master_region"].choices = [("", "---------"), *choices]


class SyncScheduleForm(forms.ModelForm):
    """ "Sync these regions (or all), dry-run or not, on this cron expression" as a django-q2 Schedule row."""

    regions = forms.CharField(
        required=False,
        help_text="Full region names separated by commas (Bilbao, partner:Lisbon); empty: every region of "
        "every target.",
    )
    dry_run = forms.BooleanField(required=False, help_text="Only report what would be done.")
    cron = forms.CharField(help_text="Cron expression in UTC, e.g. '0 2 * * *' for every night at 02:00.")

    class Meta:
        model = SyncSchedule
        fields = ["name", "cron", "regions", "dry_run"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = True
        options = self.instance.options() if self.instance.pk else {}
        self.initial.setdefault("regions", ", ".join(options.get("regions") or []))
        self.initial.setdefault("dry_run", bool(options.get("dry_run")))

    def clean_cron(self) -> str:
        cron = self.cleaned_data["cron"].strip()
        if not croniter.is_valid(cron):
            raise forms.ValidationError(
                f"'{cron}' is not a cron expression (five fields: minute hour day month weekday)"
            )
        return cron

    def clean_regions(self) -> list[str]:
        regions = [r.strip() for r in self.cleaned_data["regions"].split(",") if r.strip()]
        bad = [r for r in regions if not re.fullmatch(r"[^\s:,'\"]+(:[^\s:,'\"]+)?", r)]
        if bad:
            raise forms.ValidationError(f"not a region name: {', '.join(bad)}")
        return regions

    def save(self, commit=True):
        schedule = super().save(commit=False)
        schedule.func = SCHEDULED_RUN
        schedule.schedule_type = Schedule.CRON
        schedule.repeats = -1
        options = {"regions": self.cleaned_data["regions"], "dry_run": self.cleaned_data["dry_run"]}
        schedule.kwargs = repr(options | {"schedule": schedule.name})
        schedule.next_run = croniter(schedule.cron, timezone.now()).get_next(datetime)
        if commit:
            schedule.save()
        return schedule


class ApiTokenForm(forms.ModelForm):
    """A new API token of the logged-in user: only its name is asked."""

    class Meta:
        model = ApiToken
        fields = ["name"]


class AlertChannelAdminForm(forms.ModelForm):
    """The webhook URL is a secret (its path holds the key): written here, never sent back to the browser."""

    new_webhook_url = forms.CharField(
        label="Webhook URL",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    events = forms.MultipleChoiceField(
        choices=[(e.value, e.label) for e in AlertEvent if e != AlertEvent.TEST],
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "enabled", "recipients", "new_webhook_url", "events", "targets"]
        widgets = {"targets": forms.CheckboxSelectMultiple, "recipients": forms.TextInput(attrs={"size": 80})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        state = "set" if self.instance.pk and self.instance.webhook_url else "not set"
        self.fields[
            "new_webhook_url"
        ].help_text = (
            f"Webhook channels. Stored URL: <strong>{state}</strong>. Leave empty to keep it; it is never shown back."
        )
        self.fields["targets"].help_text = "Only events of these targets. None ticked: every target."

    def clean(self):
        data = super().clean()
        if data.get("new_webhook_url"):
            self.instance.webhook_url = data["new_webhook_url"].strip()
        return data

    def add_error(self, field, error):
        # The model validates `webhook_url`, which this form edits through its write-only box.
        if isinstance(error, forms.ValidationError) and "webhook_url" in getattr(error, "error_dict", {}):
            error.error_dict["new_webhook_url"] = error.error_dict.pop("webhook_url")
        super().add_error(field, error)

    def changed_field_names(self) -> list[str]:
        names = [name for name in self.changed_data if name != "new_webhook_url"]
        return names + (["webhook_url"] if self.cleaned_data.get("new_webhook_url") else [])
