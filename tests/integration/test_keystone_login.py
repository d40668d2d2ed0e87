"""Logging in to the console with Keystone credentials, against the real Keystone of tests/realstack (issue #16).

Each test makes its Keystone users (and a project of its own, the master target's project) through Keystone's
API and deletes them afterwards; they log in through the console's real login form.
"""

import io
import logging
import math
import socket
import time
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from sync.models import AuditEntry, KeystoneIdentity, MasterSettings, Target
from tests.integration.test_tls import self_signed
from tests.realstack.faultproxy import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

INVALID = "Please enter a correct username and password"
UNREACHABLE = "Keystone cannot be reached, so Keystone accounts cannot log in now; local accounts can still log in."
NO_ACCESS = "your roles in the console&#x27;s project give no access to the console"


class KeystoneUsers:
    """Users, a project and domains made in the source Keystone for one test, deleted by `cleanup()`."""

    def __init__(self, realstack):
        self.conn = realstack.connect("source", "RegionOne")
        self.tag = uuid.uuid4().hex[:8]
        self.project = self.conn.identity.create_project(name=f"gs-login-{self.tag}", domain_id="default")
        self.users, self.domains = [], []
        self.revoked_at = 0.0  # when a change last made Keystone revoke tokens (see after_revocations)
        self.roles = {}
        for name in ("reader", "member", "admin"):  # Keystone's bootstrap makes them; a stack without them gets them
            self.roles[name] = self.conn.identity.find_role(name) or self.conn.identity.create_role(name=name)

    def make(self, *roles, domain=None, name=None):
        """A user with these roles on the project: (name, password, Keystone user)."""
        name = name or f"gs-{roles[0] if roles else 'norole'}-{uuid.uuid4().hex[:6]}"
        password = f"Ks-{uuid.uuid4().hex}"
        user = self.conn.identity.create_user(
            name=name, password=password, domain_id=domain.id if domain else "default"
        )
        self.users.append(user)
        for role in roles:
            self.grant(user, role)
        return name, password, user

    def grant(self, user, role):
        self.conn.identity.assign_project_role_to_user(self.project, user, self.roles[role])

    def revoke(self, user, role):
        self.conn.identity.unassign_project_role_from_user(self.project, user, self.roles[role])
        self.revoked_at = time.time()

    def set_enabled(self, user, enabled: bool):
        self.conn.identity.update_user(user, enabled=enabled)
        if not enabled:
            self.revoked_at = time.time()

    def after_revocations(self):
        """Keystone records a revocation (a disabled user, a removed role) to the second and also refuses the
        tokens issued later in that second: wait for the next second before a login that must succeed."""
        time.sleep(max(0.0, math.floor(self.revoked_at) + 1.05 - time.time()))

    def domain(self):
        domain = self.conn.identity.create_domain(name=f"gs-dom-{self.tag}")
        self.domains.append(domain)
        return domain

    def cleanup(self):
        for user in self.users:
            self.conn.identity.delete_user(user, ignore_missing=True)
        self.conn.identity.delete_project(self.project, ignore_missing=True)
        for domain in self.domains:
            self.conn.identity.update_domain(domain, enabled=False)  # Keystone deletes disabled domains only
            self.conn.identity.delete_domain(domain, ignore_missing=True)


@pytest.fixture
def keystone(realstack, settings, tmp_path):
    """The console on OpenStack, whose master target is the source Keystone with a project of this test's."""
    settings.DATA_DIR = tmp_path
    users = KeystoneUsers(realstack)
    MasterSettings.objects.update_or_create(pk=1, defaults={"cloud": "openstack", "master_region": "RegionOne"})
    Target.objects.create(
        name="master", auth_url=realstack.source_auth_url, user="admin", project_name=users.project.name
    )
    try:
        yield users
    finally:
        users.cleanup()


def log_in(client, username, password, domain="Default"):
    data = {"username": username, "password": password, "domain": domain}
    return client.post(reverse("login"), data, REMOTE_ADDR="10.1.2.3")


def logged_in_user(client):
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id) if user_id else None


def roles_of(user):
    user.refresh_from_db()
    return sorted(user.groups.values_list("name", flat=True)), user.is_staff


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_reader_member_and_admin_get_viewer_operator_and_staff(client, keystone):
    expected = {
        "reader": ("viewer", ["viewer"], False),
        "member": ("operator", ["operator"], False),
        "admin": ("staff", ["operator", "staff"], True),
    }
    for role, (console_role, groups, staff) in expected.items():
        name, password, ks_user = keystone.make(role)
        response = log_in(client, name, password)
        assert response.status_code == 302 and response.url == reverse("sync:overview"), role
        user = logged_in_user(client)
        assert user.username == name and roles_of(user) == (groups, staff)
        assert not user.has_usable_password() and not user.is_superuser
        identity = user.keystone_identity
        assert (identity.keystone_user_id, identity.domain, identity.console_role) == (
            ks_user.id,
            "Default",
            console_role,
        )
        assert identity.project == keystone.project.name and role in identity.roles
        assert client.get(reverse("sync:overview")).status_code == 200
        assert user.has_perm("sync.operate_console") is (role != "reader")
        assert client.get(reverse("admin:index")).status_code == (200 if staff else 302)
        if staff:  # the staff group carries the configuration's permissions
            assert client.get(reverse("admin:sync_target_changelist")).status_code == 200
        # The session ends with the Keystone token (Keystone's lifetime: hours, not Django's two weeks).
        assert timezone.now() < client.session.get_expiry_date() <= timezone.now() + timedelta(hours=24)
        assert AuditEntry.objects.filter(action="login", username=name, user=user).exists()
        client.logout()


def test_a_session_lasts_at_most_the_configured_seconds(client, keystone, settings):
    settings.GLANCESYNC_KEYSTONE_SESSION_SECONDS = 60
    name, password, _ = keystone.make("member")
    assert log_in(client, name, password).status_code == 302
    assert 50 <= client.session.get_expiry_age() <= 60


def test_a_wrong_password_and_a_user_without_a_role_are_refused(client, keystone):
    name, password, _ = keystone.make("member")
    response = log_in(client, name, password + "x")
    assert response.status_code == 200 and INVALID in response.content.decode()
    assert logged_in_user(client) is None

    nobody, nobody_password, _ = keystone.make()
    page = log_in(client, nobody, nobody_password).content.decode()
    assert NO_ACCESS in page and INVALID not in page
    assert logged_in_user(client) is None and not get_user_model().objects.filter(username=nobody).exists()
    assert AuditEntry.objects.filter(action="failed", username=nobody).exists()


def test_a_user_disabled_in_keystone_is_refused_and_loses_its_role(client, keystone):
    name, password, ks_user = keystone.make("admin")
    other_browser = client.__class__()
    assert log_in(other_browser, name, password).status_code == 302
    user = logged_in_user(other_browser)
    assert roles_of(user) == (["operator", "staff"], True)

    keystone.set_enabled(ks_user, False)
    response = log_in(client, name, password)
    assert response.status_code == 200 and INVALID in response.content.decode()
    assert roles_of(user) == ([], False)
    assert user.keystone_identity.console_role == ""
    # The session opened before keeps no power: the role was the permissions.
    assert other_browser.get(reverse("sync:overview")).status_code == 403
    assert other_browser.get(reverse("admin:index")).status_code == 302

    keystone.set_enabled(ks_user, True)  # enabled again: the next login gives the role back
    keystone.after_revocations()
    assert log_in(client, name, password).status_code == 302 and roles_of(user) == (["operator", "staff"], True)


def test_roles_follow_the_keystone_assignments_at_every_login(client, keystone):
    name, password, ks_user = keystone.make("admin")
    assert log_in(client, name, password).status_code == 302
    user = logged_in_user(client)
    client.logout()

    keystone.revoke(ks_user, "admin")
    keystone.grant(ks_user, "reader")
    keystone.after_revocations()
    assert log_in(client, name, password).status_code == 302 and logged_in_user(client) == user
    assert roles_of(user) == (["viewer"], False)
    client.logout()

    keystone.revoke(ks_user, "reader")  # no role left in the project: refused, and no role kept
    assert NO_ACCESS in log_in(client, name, password).content.decode()
    assert roles_of(user) == ([], False) and logged_in_user(client) is None


def test_a_user_of_another_domain_is_name_at_domain(client, keystone):
    domain = keystone.domain()
    name, password, _ = keystone.make("member", domain=domain)
    assert INVALID in log_in(client, name, password).content.decode()  # not a user of the Default domain
    response = log_in(client, name, password, domain=domain.name)
    assert response.status_code == 302
    user = logged_in_user(client)
    assert user.username == f"{name}@{domain.name}" and roles_of(user) == (["operator"], False)


def test_a_keystone_user_never_takes_over_a_local_account_of_its_name(client, keystone, django_user_model):
    name, password, _ = keystone.make("admin")
    local = django_user_model.objects.create_user(name, password="local-Passw0rd-1")
    page = log_in(client, name, password).content.decode()
    assert INVALID in page and logged_in_user(client) is None
    local.refresh_from_db()
    assert not local.is_staff and not KeystoneIdentity.objects.exists()
    assert log_in(client, name, "local-Passw0rd-1").status_code == 302 and logged_in_user(client) == local


def test_a_keystone_made_user_never_logs_in_with_a_local_password(client, keystone):
    name, password, _ = keystone.make("member")
    assert log_in(client, name, password).status_code == 302
    user = logged_in_user(client)
    client.logout()
    user.set_password("set-in-the-Admin-1")  # an admin gave it a password: still Keystone's
    user.save()
    assert INVALID in log_in(client, name, "set-in-the-Admin-1").content.decode()


def test_local_accounts_work_when_keystone_is_down(client, keystone, settings, django_user_model):
    settings.GLANCESYNC_KEYSTONE_URL = f"http://127.0.0.1:{closed_port()}/v3"
    local = django_user_model.objects.create_user("local-otto", password="local-Passw0rd-1")
    name, password, _ = keystone.make("member")

    page = log_in(client, name, password).content.decode()
    assert INVALID in page and UNREACHABLE in page and logged_in_user(client) is None
    assert log_in(client, "local-otto", "local-Passw0rd-1").status_code == 302 and logged_in_user(client) == local


def test_local_login_off_keeps_only_superusers_and_keystone(client, keystone, settings, django_user_model):
    settings.GLANCESYNC_LOCAL_LOGIN = False
    django_user_model.objects.create_user("local-otto", password="local-Passw0rd-1")
    root = django_user_model.objects.create_superuser("root", password="break-Glass-Passw0rd")
    assert INVALID in log_in(client, "local-otto", "local-Passw0rd-1").content.decode()
    assert log_in(client, "root", "break-Glass-Passw0rd").status_code == 302 and logged_in_user(client) == root
    client.logout()
    name, password, _ = keystone.make("reader")
    assert log_in(client, name, password).status_code == 302


def test_the_master_targets_ca_bundle_is_used(client, keystone, realstack, tmp_path):
    cert_path, context = self_signed(tmp_path)
    name, password, _ = keystone.make("member")
    with FaultProxy(realstack.ports["source-keystone"], tls=context) as proxy:
        Target.objects.filter(name="master").update(auth_url=f"{proxy.url}/v3")
        assert UNREACHABLE in log_in(client, name, password).content.decode()  # a certificate it cannot check
        Target.objects.filter(name="master").update(cacert=str(cert_path))
        assert log_in(client, name, password).status_code == 302


def test_no_password_is_stored_logged_or_shown(client, keystone, caplog, settings):
    name, password, _ = keystone.make("admin")
    caplog.clear()  # making the user sent its password to Keystone: the test's own request log, not the console's
    caplog.set_level(logging.DEBUG)  # keystoneauth's and urllib3's request logs too
    wrong = f"Wrong-{uuid.uuid4().hex}"
    pages = [log_in(client, name, wrong).content.decode()]
    assert log_in(client, name, password).status_code == 302
    pages += [client.get(path).content.decode() for path in (reverse("sync:overview"), reverse("admin:index"))]
    client.logout()
    settings.GLANCESYNC_KEYSTONE_URL = f"http://127.0.0.1:{closed_port()}/v3"
    pages.append(log_in(client, name, password).content.decode())

    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    for secret in (password, wrong):
        assert secret not in dump.getvalue()
        assert secret not in caplog.text
        assert not any(secret in page for page in pages)
    assert "Keystone at http://127.0.0.1:" in caplog.text  # the log says which Keystone could not be reached
