"""Logins in the audit log: successful, failed, and the lockouts of django-axes (issue #16)."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from sync.models import AuditEntry


def _address(request) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs) -> None:
    if request is None or request.method != "POST":  # not a login form (the test client's force_login)
        return
    AuditEntry.record_login(AuditEntry.Action.LOGIN, user.get_username(), _address(request), user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    # `credentials` is already cleansed of the password by Django; only the name is kept.
    AuditEntry.record_login(AuditEntry.Action.FAILED, str(credentials.get("username", "")), _address(request))


@receiver(user_locked_out)
def _locked_out(sender, request, username, ip_address, **kwargs) -> None:
    AuditEntry.record_login(AuditEntry.Action.LOCKED, username or "", ip_address or _address(request))
