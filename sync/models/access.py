"""Access: per-user API tokens (stored as digests), and the users that Keystone logins made."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


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


class KeystoneIdentity(models.Model):
    """Marks a Django user as made by a Keystone login (sync/keystone_login.py), and who it is in Keystone.

    The user's roles are set from `console_role` at every login; it holds no password and no token."""

    class Role(models.TextChoices):
        NONE = "", "none"
        VIEWER = "viewer"
        OPERATOR = "operator"
        STAFF = "staff", "staff (operator and the admin site)"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="keystone_identity")
    keystone_user_id = models.CharField(max_length=255, unique=True, help_text="The user's id in Keystone.")
    name = models.CharField(max_length=255, help_text="The user's name in Keystone.")
    domain = models.CharField(max_length=255, blank=True, help_text="The user's domain (empty on Keystone v2.0).")
    auth_url = models.CharField("Keystone auth URL", max_length=1000)
    project = models.CharField(max_length=255, help_text="The project whose role assignments give the role.")
    roles = models.JSONField(default=list, blank=True, help_text="The Keystone roles at the last login.")
    console_role = models.CharField(max_length=8, choices=Role.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField(help_text="The last login attempt that Keystone answered.")

    class Meta:
        ordering = ["user__username"]
        verbose_name = "Keystone identity"
        verbose_name_plural = "Keystone identities"

    def __str__(self) -> str:
        return f"{self.name} ({self.domain})" if self.domain else self.name
