"""Keystone login without a Keystone: the role mapping, the settings, where logins are checked, the login page.

The logins themselves are tested against the real Keystone in tests/integration/test_keystone_login.py."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from glancesync_site.environment import env_role_mapping, parse_role_mapping
from sync.keystone_login import KeystoneSource, console_role, django_username, keystone_source
from sync.models import KeystoneIdentity, MasterSettings, Target
from tests.test_settings import _settings_in_subprocess

ROLES = ("viewer", "operator", "staff")
DEFAULT = "reader=viewer,member=operator,admin=staff"


def test_the_default_mapping():
    assert parse_role_mapping("X", DEFAULT, ROLES) == {"reader": "viewer", "member": "operator", "admin": "staff"}


def test_a_mapping_is_read_loosely_and_case_insensitively():
    mapping = parse_role_mapping("X", " Reader = Viewer ,, _member_=operator,member=OPERATOR,", ROLES)
    assert mapping == {"reader": "viewer", "_member_": "operator", "member": "operator"}
    assert env_role_mapping("X", DEFAULT, ROLES, environ={"X": "  "}) == parse_role_mapping("X", DEFAULT, ROLES)
    assert env_role_mapping("X", DEFAULT, ROLES, environ={"X": "ops=staff"}) == {"ops": "staff"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("reader", r"X: 'reader' is not keystone_role=console_role \(e.g. reader=viewer\)"),
        ("reader=", "is not keystone_role=console_role"),
        ("=viewer", "is not keystone_role=console_role"),
        ("admin=superuser", r"X: 'admin=superuser': 'superuser' is not a console role \(use viewer, operator, staff\)"),
        ("admin=staff,Admin=viewer", "X: the Keystone role 'Admin' is mapped to two console roles"),
        (",", "maps no Keystone role"),
    ],
)
def test_a_bad_mapping_is_a_clear_error(value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_role_mapping("X", value, ROLES)


def test_the_strongest_mapped_role_wins():
    mapping = parse_role_mapping("X", DEFAULT, ROLES)
    assert console_role(["reader"], mapping) == "viewer"
    assert console_role(["Reader", "MEMBER", "heat_stack_owner"], mapping) == "operator"
    assert console_role(["admin", "member", "reader"], mapping) == "staff"
    assert console_role(["service", "load-balancer_member"], mapping) is None
    assert console_role([], mapping) is None


def test_users_of_other_domains_are_name_at_domain():
    assert django_username("alice", "default", "Default") == "alice"
    assert django_username("alice", None, None) == "alice"  # Keystone v2.0
    assert django_username("alice", "8f3e", "partners") == "alice@partners"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GLANCESYNC_KEYSTONE_ROLES", "admin=root"),
        ("GLANCESYNC_KEYSTONE_LOGIN", "perhaps"),
        ("GLANCESYNC_LOCAL_LOGIN", "sometimes"),
        ("GLANCESYNC_KEYSTONE_INSECURE", "a-bit"),
        ("GLANCESYNC_KEYSTONE_SESSION_SECONDS", "-1"),
        ("GLANCESYNC_KEYSTONE_TIMEOUT", "0"),
    ],
)
def test_bad_keystone_settings_are_clear_errors(tmp_path, name, value):
    result = _settings_in_subprocess(tmp_path, "print(settings.DEBUG)", **{name: value})
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr and name in result.stderr


def test_the_keystone_settings_and_their_defaults(tmp_path):
    code = (
        "print(repr((settings.GLANCESYNC_KEYSTONE_LOGIN, settings.GLANCESYNC_LOCAL_LOGIN, "
        "settings.GLANCESYNC_KEYSTONE_ROLES, settings.GLANCESYNC_KEYSTONE_INSECURE, "
        "settings.GLANCESYNC_KEYSTONE_SESSION_SECONDS, settings.AUTHENTICATION_BACKENDS)))"
    )
    result = _settings_in_subprocess(tmp_path, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(
        (
            True,
            True,
            {"reader": "viewer", "member": "operator", "admin": "staff"},
            None,
            0,
            [
                "axes.backends.AxesStandaloneBackend",
                "sync.keystone_login.LocalAccountBackend",
                "sync.keystone_login.KeystoneBackend",
            ],
        )
    )
    result = _settings_in_subprocess(
        tmp_path,
        code,
        GLANCESYNC_KEYSTONE_ROLES="ops=staff",
        GLANCESYNC_LOCAL_LOGIN="off",
        GLANCESYNC_KEYSTONE_INSECURE="1",
    )
    assert "{'ops': 'staff'}" in result.stdout and "(True, False, " in result.stdout and ", True, 0, " in result.stdout


# --- where logins are checked ---------------------------------------------------------------------------------


@pytest.fixture
def master(db):
    MasterSettings.objects.update_or_create(pk=1, defaults={"cloud": "openstack", "master_region": "RegionOne"})
    return Target.objects.create(
        name="master",
        auth_url="https://keystone.example.org:5000/v3/",
        project_name="images",
        user_domain="corp",
        project_domain="ops",
        cacert="/etc/ssl/corp.pem",
    )


def test_by_default_the_master_targets_keystone(master):
    assert keystone_source() == KeystoneSource(
        auth_url="https://keystone.example.org:5000/v3",
        api_version="3",
        project="images",
        project_domain="ops",
        user_domain="corp",
        verify="/etc/ssl/corp.pem",
        timeout=10,
    )
    master.insecure, master.identity_api_version, master.auth_url = True, "2.0", "http://old.example.org:5000"
    master.save()
    source = keystone_source()
    assert (source.auth_url, source.api_version, source.verify) == ("http://old.example.org:5000/v2.0", "2.0", False)


def test_each_setting_replaces_one_field_of_the_master_target(master, settings):
    settings.GLANCESYNC_KEYSTONE_URL = "https://id.example.org/identity/v3"
    settings.GLANCESYNC_KEYSTONE_PROJECT = "console"
    settings.GLANCESYNC_KEYSTONE_PROJECT_DOMAIN = "Default"
    settings.GLANCESYNC_KEYSTONE_CACERT = "/etc/ssl/id.pem"
    source = keystone_source()
    assert (source.auth_url, source.project, source.project_domain) == (
        "https://id.example.org/identity/v3",
        "console",
        "Default",
    )
    assert (source.user_domain, source.verify) == ("corp", "/etc/ssl/id.pem")
    settings.GLANCESYNC_KEYSTONE_USER_DOMAIN = "Default"
    settings.GLANCESYNC_KEYSTONE_INSECURE = True
    assert (keystone_source().user_domain, keystone_source().verify) == ("Default", False)


def test_settings_alone_need_no_master_target(db, settings):
    settings.GLANCESYNC_KEYSTONE_URL = "https://id.example.org:5000"
    assert keystone_source() is None  # no project: no role to read
    settings.GLANCESYNC_KEYSTONE_PROJECT = "console"
    assert keystone_source() == KeystoneSource(
        "https://id.example.org:5000/v3", "3", "console", "Default", "Default", True, 10
    )


def test_the_api_version_is_the_master_targets_or_the_urls(master, settings):
    master.identity_api_version = "2.0"
    master.save()
    assert keystone_source().auth_url == "https://keystone.example.org:5000/v2.0"  # rewritten, as the engine does
    settings.GLANCESYNC_KEYSTONE_URL = "https://id.example.org:5000"
    assert keystone_source().api_version == "2.0"
    settings.GLANCESYNC_KEYSTONE_URL = "https://id.example.org:5000/v3"
    assert keystone_source().api_version == "3"


def test_no_keystone_login_when_off_or_on_the_file_cloud(master, settings):
    settings.GLANCESYNC_KEYSTONE_LOGIN = False
    assert keystone_source() is None
    settings.GLANCESYNC_KEYSTONE_LOGIN = True
    MasterSettings.objects.filter(pk=1).update(cloud="files:/tmp/demo-cloud")  # the demo's Keystones are fictional
    assert keystone_source() is None


# --- the login page -------------------------------------------------------------------------------------------


def test_the_login_page_asks_for_the_domain_only_with_a_keystone_v3(client, master):
    page = client.get(reverse("login")).content.decode()
    assert 'name="domain"' in page and 'value="corp"' in page
    assert "Log in with your Keystone account or with a local account." in page
    master.identity_api_version = "2.0"
    master.save()
    page = client.get(reverse("login")).content.decode()
    assert 'name="domain"' not in page and "Keystone account" in page
    Target.objects.all().delete()
    page = client.get(reverse("login")).content.decode()
    assert 'name="domain"' not in page and "Keystone" not in page


def test_local_accounts_log_in_without_asking_keystone(client, master, django_user_model, settings):
    settings.GLANCESYNC_KEYSTONE_URL = "http://127.0.0.1:9/v3"  # never asked: the local password is right
    otto = django_user_model.objects.create_user("otto", password="local-Passw0rd-1")
    data = {"username": "otto", "password": "local-Passw0rd-1", "domain": "corp"}
    assert client.post(reverse("login"), data).status_code == 302
    assert client.session["_auth_user_id"] == str(otto.pk)


def test_a_keystone_made_user_has_no_local_login(client, db, django_user_model):
    user = django_user_model.objects.create_user("kim", password="a-Passw0rd-set-later")
    KeystoneIdentity.objects.create(
        user=user,
        keystone_user_id="k1",
        name="kim",
        domain="Default",
        auth_url="x",
        project="p",
        checked_at="2026-01-01T00:00Z",
    )
    response = client.post(reverse("login"), {"username": "kim", "password": "a-Passw0rd-set-later"})
    assert response.status_code == 200 and "_auth_user_id" not in client.session


def test_local_login_off_keeps_superusers_while_a_keystone_is_configured(client, master, settings, django_user_model):
    settings.GLANCESYNC_LOCAL_LOGIN = False
    django_user_model.objects.create_user("otto", password="local-Passw0rd-1")
    django_user_model.objects.create_superuser("root", password="break-Glass-Passw0rd")
    settings.GLANCESYNC_KEYSTONE_URL = "http://127.0.0.1:9/v3"  # down: only superusers, and the page says so
    page = client.post(reverse("login"), {"username": "otto", "password": "local-Passw0rd-1"}).content.decode()
    assert "Keystone cannot be reached, so Keystone accounts cannot log in now; superusers can." in page
    assert client.post(reverse("login"), {"username": "root", "password": "break-Glass-Passw0rd"}).status_code == 302
    client.logout()
    Target.objects.all().delete()  # no Keystone to log in with: local accounts log in again
    settings.GLANCESYNC_KEYSTONE_URL = ""
    assert client.post(reverse("login"), {"username": "otto", "password": "local-Passw0rd-1"}).status_code == 302


def test_keystone_sessions_end_when_keystone_login_is_turned_off(client, db, django_user_model, settings):
    from tests.conftest import role_group

    user = django_user_model.objects.create_user("kim")
    user.groups.add(role_group("viewer"))
    KeystoneIdentity.objects.create(
        user=user, keystone_user_id="k1", name="kim", auth_url="x", project="p", checked_at="2026-01-01T00:00Z"
    )
    client.force_login(user, backend="sync.keystone_login.KeystoneBackend")
    assert client.get(reverse("sync:overview")).status_code == 200
    settings.GLANCESYNC_KEYSTONE_LOGIN = False
    assert client.get(reverse("sync:overview")).status_code == 302  # to the login page
