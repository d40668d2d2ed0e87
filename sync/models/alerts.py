"""Alerts (issue #14): the channels (e-mail, webhook) staff configure, each alert raised, and its delivery to
each channel. The logic that raises and delivers them is sync/alerts.py."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from sync.crypto import EncryptedTextField
from sync.models.configuration import csv_items

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
