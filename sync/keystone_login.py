"""Logging in to the console with Keystone credentials (issue #16): the login form, and two authentication backends.

- `LocalAccountBackend` is Django's ModelBackend (local accounts, and every user's group permissions) that never
  logs in a Keystone-made user with a password, and logs in superusers only when GLANCESYNC_LOCAL_LOGIN is off.
- `KeystoneBackend` asks the configured Keystone (`keystone_source()`: the master target's, or the
  GLANCESYNC_KEYSTONE_* settings) with keystoneauth: an unscoped token for the user name, password and domain,
  then that token rescoped to the console's project, whose role names give the console role
  (GLANCESYNC_KEYSTONE_ROLES). The Django user is made on the first login and marked by a `KeystoneIdentity`;
  its role (groups, is_staff) is set again at every login and taken away when Keystone refuses it. Neither the
  password nor a token is stored or logged. The session ends when the Keystone token would.

Both come after django-axes' backend in settings.AUTHENTICATION_BACKENDS, so throttling and the login audit
(sync/signals.py) cover them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.dispatch import receiver
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from sync.clouds import FILES_SCHEME
from sync.models import KeystoneIdentity, MasterSettings, Target

logger = logging.getLogger(__name__)

DEFAULT_DOMAIN_ID = "default"
# The console roles, weakest first; the groups each one gives. Staff is an operator with the admin site.
CONSOLE_ROLES = ("viewer", "operator", "staff")
ROLE_GROUPS = {"viewer": ("viewer",), "operator": ("operator",), "staff": ("operator", "staff")}
GROUP_PERMISSIONS = {"viewer": ["view_console"], "operator": ["view_console", "operate_console"]}  # staff: all

UNREACHABLE = "unreachable"
NO_ROLE = "no_role"
PROBLEM_ATTRIBUTE = "keystone_login_problem"  # set on the request by KeystoneBackend for the login form


@dataclass(frozen=True)
class KeystoneSource:
    """Where Keystone logins are checked, and against which project."""

    auth_url: str
    api_version: str  # "3" or "2.0"
    project: str
    project_domain: str
    user_domain: str  # the login form's default domain
    verify: bool | str  # keystoneauth's: True, False (insecure) or a CA bundle
    timeout: int

    @property
    def v3(self) -> bool:
        return self.api_version == "3"


def _master_target() -> Target | None:
    """The master target, when the console's cloud is OpenStack (the demo's file cloud has fictional Keystones).
    None when the configuration cannot be read (a database not migrated yet): the login page still renders."""
    try:
        if MasterSettings.load().cloud.startswith(FILES_SCHEME):
            return None
        return Target.objects.filter(name="master").first()
    except DatabaseError as error:
        logger.warning("Keystone login: cannot read the master target: %s", error)
        return None


def keystone_source() -> KeystoneSource | None:
    """The Keystone that logins are checked against: each GLANCESYNC_KEYSTONE_* setting that is set, else the
    master target's field; None when Keystone login is off or no Keystone (or no project) is known."""
    if not settings.GLANCESYNC_KEYSTONE_LOGIN:
        return None
    master = _master_target()
    url = settings.GLANCESYNC_KEYSTONE_URL or (master.auth_url.strip() if master else "")
    if not url:
        return None
    project = settings.GLANCESYNC_KEYSTONE_PROJECT or (master.project_name if master else "")
    if not project:
        logger.warning("Keystone login is off: no project (set GLANCESYNC_KEYSTONE_PROJECT or the master's project)")
        return None
    # The master target's API version (its URL's suffix is rewritten to it, as the engine does); a URL given by
    # GLANCESYNC_KEYSTONE_URL says its own with its suffix.
    version = master.identity_api_version if master else "3"
    base = url.rstrip("/")
    if settings.GLANCESYNC_KEYSTONE_URL and base.endswith(("/v2.0", "/v3")):
        version = "2.0" if base.endswith("/v2.0") else "3"
    insecure = settings.GLANCESYNC_KEYSTONE_INSECURE
    if insecure is None:
        insecure = master.insecure if master else False
    cacert = settings.GLANCESYNC_KEYSTONE_CACERT or (master.cacert if master else "")
    from sync.clouds.openstack import _auth_url  # the SDK loads when a Keystone is configured, not with the app

    return KeystoneSource(
        auth_url=_auth_url(url, version),
        api_version=version,
        project=project,
        project_domain=settings.GLANCESYNC_KEYSTONE_PROJECT_DOMAIN or (master and master.project_domain) or "Default",
        user_domain=settings.GLANCESYNC_KEYSTONE_USER_DOMAIN or (master and master.user_domain) or "Default",
        verify=False if insecure else (cacert or True),
        timeout=settings.GLANCESYNC_KEYSTONE_TIMEOUT,
    )


# --- the roles -------------------------------------------------------------------------------------------------


def console_role(role_names, mapping: dict[str, str] | None = None) -> str | None:
    """The strongest console role that the Keystone role names give (names compared case-insensitively)."""
    mapping = settings.GLANCESYNC_KEYSTONE_ROLES if mapping is None else mapping
    given = {mapping[name.casefold()] for name in role_names if name.casefold() in mapping}
    return max(given, key=CONSOLE_ROLES.index) if given else None


def role_group(name: str) -> Group:
    """A role's group; made if missing (staff: every permission of GlanceSync's own models, as the demo account)."""
    group, created = Group.objects.get_or_create(name=name)
    if created:
        if name in GROUP_PERMISSIONS:
            permissions = Permission.objects.filter(
                content_type__app_label="sync", codename__in=GROUP_PERMISSIONS[name]
            )
        else:
            permissions = Permission.objects.filter(content_type__app_label="sync")
        group.permissions.add(*permissions)
    return group


def apply_role(user, role: str | None) -> None:
    """Give a Keystone user exactly this console role: its groups, is_staff for staff, never superuser. Groups that
    are not console roles are left alone; `None` takes every role away."""
    wanted = [role_group(name) for name in ROLE_GROUPS.get(role or "", ())]
    managed = user.groups.filter(name__in=CONSOLE_ROLES).exclude(pk__in=[group.pk for group in wanted])
    user.groups.remove(*managed)
    user.groups.add(*wanted)
    is_staff = role == "staff"
    if user.is_staff != is_staff or user.is_superuser:
        user.is_staff, user.is_superuser = is_staff, False
        user.save(update_fields=["is_staff", "is_superuser"])


def strip_roles(identities, reason: str) -> None:
    """Keystone refused these users: they keep their Django user (and its history) but lose the console role."""
    for identity in identities:
        apply_role(identity.user, None)
        identity.console_role = KeystoneIdentity.Role.NONE
        identity.checked_at = timezone.now()
        identity.save(update_fields=["console_role", "checked_at"])
        logger.info("Keystone login: %s loses its console role (%s)", identity.user.get_username(), reason)


def django_username(name: str, domain_id: str | None, domain_name: str | None) -> str:
    """A Keystone user's Django user name: its name in the Default domain (and on v2.0), `name@domain` elsewhere,
    so that users of two domains never share one."""
    if not domain_id or domain_id == DEFAULT_DOMAIN_ID:
        return name
    return f"{name}@{domain_name or domain_id}"


# --- asking Keystone -------------------------------------------------------------------------------------------


class KeystoneUnreachable(Exception):
    """Keystone did not answer (or answered with a server error): nobody can tell whether the password is right."""


class KeystoneRefused(Exception):
    """Keystone refused the login. `user_id` is set when the password was right but the project scope was refused
    (no role there)."""

    def __init__(self, user_id: str | None = None) -> None:
        super().__init__("refused")
        self.user_id = user_id


@dataclass(frozen=True)
class KeystoneAnswer:
    user_id: str
    name: str
    domain_id: str | None
    domain_name: str | None
    role_names: tuple[str, ...]
    expires: datetime


@sensitive_variables("password")
def ask_keystone(source: KeystoneSource, username: str, password: str, domain: str | None) -> KeystoneAnswer:
    """The user's identity and roles in the source's project. The password goes in one request (an unscoped token:
    one failed attempt counts once against a Keystone lockout policy); the scope is asked with that token."""
    # keystoneauth (and the OpenStack SDK) load at the first login, not with the app: manage.py commands start faster
    from keystoneauth1 import exceptions as ks_exceptions
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v2, v3

    session = ks_session.Session(verify=source.verify, timeout=source.timeout)
    try:
        if source.v3:
            unscoped = v3.Password(
                auth_url=source.auth_url, username=username, password=password, user_domain_name=domain, unscoped=True
            ).get_access(session)
        else:
            unscoped = v2.Password(auth_url=source.auth_url, username=username, password=password).get_access(session)
    except ks_exceptions.HTTPClientError as error:  # 401 and other 4xx: Keystone says no, and not why
        raise KeystoneRefused() from error
    except ks_exceptions.ClientException as error:
        raise KeystoneUnreachable(_cause(error)) from error
    try:
        if source.v3:
            scope = v3.Token(
                auth_url=source.auth_url,
                token=unscoped.auth_token,
                project_name=source.project,
                project_domain_name=source.project_domain,
            )
        else:
            scope = v2.Token(auth_url=source.auth_url, token=unscoped.auth_token, tenant_name=source.project)
        scoped = scope.get_access(session)
    except ks_exceptions.HTTPClientError as error:  # no role in the project (or no such project)
        raise KeystoneRefused(user_id=unscoped.user_id) from error
    except ks_exceptions.ClientException as error:
        raise KeystoneUnreachable(_cause(error)) from error
    return KeystoneAnswer(
        user_id=scoped.user_id,
        name=scoped.username,
        domain_id=getattr(scoped, "user_domain_id", None) if source.v3 else None,
        domain_name=getattr(scoped, "user_domain_name", None) if source.v3 else None,
        role_names=tuple(scoped.role_names or ()),
        expires=scoped.expires,
    )


def _cause(error: Exception) -> str:
    """keystoneauth's messages name the URL and the status, never the credentials."""
    from keystoneauth1 import exceptions as ks_exceptions

    if isinstance(error, ks_exceptions.HttpError):
        return f"HTTP {error.http_status}"
    return f"{type(error).__name__}: {error}"


# --- the backends ----------------------------------------------------------------------------------------------


def local_login_allowed(user) -> bool:
    """Local passwords log in everybody, or (GLANCESYNC_LOCAL_LOGIN off, while Keystone login is on and a Keystone
    is configured) superusers only: the break-glass accounts for when Keystone or its configuration is broken."""
    if settings.GLANCESYNC_LOCAL_LOGIN or user.is_superuser:
        return True
    return keystone_source() is None


def is_keystone_user(user) -> bool:
    return hasattr(user, "keystone_identity")  # no query when the user was read with select_related


class LocalAccountBackend(ModelBackend):
    """Local accounts (Django's password check, and the permissions of every user's groups). A Keystone-made user
    never logs in with a password here, and a login naming another domain than the form's default is Keystone's."""

    @sensitive_variables("password")
    def authenticate(self, request, username=None, password=None, domain=None, **kwargs):
        if domain:
            source = keystone_source()
            if source is not None and domain.strip().casefold() != source.user_domain.casefold():
                return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and not is_keystone_user(user) and local_login_allowed(user)

    def get_user(self, user_id):
        """ModelBackend's, in the same one query (the Keystone mark joined in): it runs on every request."""
        user_model = get_user_model()
        user = user_model._default_manager.select_related("keystone_identity").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None


class KeystoneBackend(BaseBackend):
    """Keystone credentials; see the module's description. Sets `request.keystone_login_problem` (UNREACHABLE or
    NO_ROLE) for the login form when that is why it refused."""

    @sensitive_variables("password")
    def authenticate(self, request, username=None, password=None, domain=None, **kwargs):
        if not username or not password:
            return None
        source = keystone_source()
        if source is None:
            return None
        domain = ((domain or "").strip() or source.user_domain) if source.v3 else None
        try:
            answer = ask_keystone(source, username, password, domain)
        except KeystoneUnreachable as error:
            logger.warning("Keystone login: Keystone at %s cannot be reached: %s", source.auth_url, error)
            _problem(request, UNREACHABLE)
            return None
        except KeystoneRefused as refused:
            if refused.user_id is not None:  # the right password, but no role in the project
                _problem(request, NO_ROLE)
                strip_roles(_identities(user_id=refused.user_id), f"no role in project {source.project}")
            else:
                # A wrong password and a disabled (or deleted) account get the same 401: the role goes either way,
                # and comes back at the user's next successful login.
                strip_roles(_identities(name=username, domain=domain or ""), "Keystone refused its login")
            return None
        role = console_role(answer.role_names)
        if role is None:
            _problem(request, NO_ROLE)
            logger.info("Keystone login: %s has no console role (Keystone roles: %s)", username, answer.role_names)
            strip_roles(_identities(user_id=answer.user_id), f"no console role in project {source.project}")
            return None
        user = self._user_for(answer, source)
        if user is None or not user.is_active:  # a clash with another account, or deactivated in the console
            return None
        apply_role(user, role)
        user.keystone_session_expiry = _session_expiry(answer.expires)
        return user

    def _user_for(self, answer: KeystoneAnswer, source: KeystoneSource):
        """The Django user of this Keystone user, made on its first login; None when the name is another
        account's (a local one, or one that an earlier Keystone user of that name made)."""
        user_model = get_user_model()
        wanted = django_username(answer.name, answer.domain_id, answer.domain_name)
        fields = {
            "name": answer.name,
            "domain": answer.domain_name or "",
            "auth_url": source.auth_url,
            "project": source.project,
            "roles": sorted(answer.role_names),
            "console_role": console_role(answer.role_names) or "",
            "checked_at": timezone.now(),
        }
        identity = KeystoneIdentity.objects.filter(keystone_user_id=answer.user_id).select_related("user").first()
        if identity is None:
            if len(wanted) > user_model._meta.get_field(user_model.USERNAME_FIELD).max_length:
                logger.warning("Keystone login: the user name %r is too long for the console", wanted)
                return None
            if user_model._default_manager.filter(**{user_model.USERNAME_FIELD: wanted}).exists():
                logger.warning(
                    "Keystone login: %r is refused: a console account of that name exists that is not this Keystone "
                    "user's (a local account, or another Keystone user's); delete it to let this one log in",
                    wanted,
                )
                return None
            try:
                with transaction.atomic():
                    user = user_model._default_manager.create_user(wanted)  # no password: it can never use one
                    identity = KeystoneIdentity.objects.create(user=user, keystone_user_id=answer.user_id, **fields)
            except IntegrityError:  # the same user's first login in another request, at the same moment
                identity = KeystoneIdentity.objects.filter(keystone_user_id=answer.user_id).first()
                if identity is None:
                    return None
            logger.info("Keystone login: made the console user %s", wanted)
            return identity.user
        for name, value in fields.items():
            setattr(identity, name, value)
        identity.save()
        user = identity.user
        renamed = user.get_username() != wanted
        if renamed and not user_model._default_manager.filter(**{user_model.USERNAME_FIELD: wanted}).exists():
            setattr(user, user_model.USERNAME_FIELD, wanted)  # renamed in Keystone: follow it while the name is free
            user.save(update_fields=[user_model.USERNAME_FIELD])
        return user

    def get_user(self, user_id):
        if not settings.GLANCESYNC_KEYSTONE_LOGIN:
            return None  # Keystone login turned off: its sessions end
        user = get_user_model()._default_manager.filter(pk=user_id, keystone_identity__isnull=False).first()
        return user if user is not None and user.is_active else None


def _identities(user_id: str | None = None, name: str | None = None, domain: str = ""):
    identities = KeystoneIdentity.objects.select_related("user")
    if user_id is not None:
        return identities.filter(keystone_user_id=user_id)
    return identities.filter(name__iexact=name, domain__iexact=domain)


def _problem(request, problem: str) -> None:
    if request is not None:
        setattr(request, PROBLEM_ATTRIBUTE, problem)


def _session_expiry(token_expires: datetime) -> datetime:
    """When the session ends: with the token, or GLANCESYNC_KEYSTONE_SESSION_SECONDS from now if sooner."""
    seconds = settings.GLANCESYNC_KEYSTONE_SESSION_SECONDS
    if seconds:
        return min(token_expires, timezone.now() + timedelta(seconds=seconds))
    return token_expires


@receiver(user_logged_in)
def _limit_keystone_session(sender, request, user, **kwargs) -> None:
    """After login() made the session (it may flush an old one), so the end date stays with it."""
    expiry = getattr(user, "keystone_session_expiry", None)
    if expiry is not None and request is not None and hasattr(request, "session"):
        request.session.set_expiry(expiry)


# --- the form --------------------------------------------------------------------------------------------------


class LoginForm(AuthenticationForm):
    """Django's login form, with the user's Keystone domain when a Keystone v3 is configured, and messages that
    say when Keystone could not be asked or gave no role."""

    domain = forms.CharField(
        max_length=255, required=False, help_text="Keystone users: the domain of your Keystone account."
    )

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.keystone = keystone_source()
        if self.keystone is None or not self.keystone.v3:
            del self.fields["domain"]
        else:
            self.fields["domain"].initial = self.keystone.user_domain

    @sensitive_variables("password")
    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            credentials = {"username": username, "password": password}
            if "domain" in self.fields:
                credentials["domain"] = self.cleaned_data.get("domain") or self.keystone.user_domain
            self.user_cache = authenticate(self.request, **credentials)
            if self.user_cache is None:
                raise self._refusal()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data

    def _refusal(self) -> ValidationError:
        problem = getattr(self.request, PROBLEM_ATTRIBUTE, None)
        if problem == NO_ROLE:
            return ValidationError(
                "Keystone knows you, but your roles in the console's project give no access to the console.",
                code="keystone_no_role",
            )
        errors = [self.get_invalid_login_error()]
        if problem == UNREACHABLE:
            others = "local accounts can still log in" if settings.GLANCESYNC_LOCAL_LOGIN else "superusers can"
            errors.append(
                ValidationError(
                    f"Keystone cannot be reached, so Keystone accounts cannot log in now; {others}.",
                    code="keystone_unreachable",
                )
            )
        return ValidationError(errors)

    @property
    def keystone_note(self) -> str:
        """What the login page says about who can log in here."""
        if self.keystone is None:
            return ""
        local = "a local account" if settings.GLANCESYNC_LOCAL_LOGIN else "a local superuser account"
        return f"Log in with your Keystone account or with {local}."
