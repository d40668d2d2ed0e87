"""The admin is GlanceSync's: its names, a link back to the console, and the console's roles respected (only staff
get past its login, and staff see only the models their permissions allow)."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from sync.models import MasterSettings, Target
from tests.conftest import user_with_role

pytestmark = pytest.mark.django_db

CONSOLE_LINK = '<a id="console-link" href="/">← GlanceSync console</a>'
DATA_PAGES = [
    "admin:index", "admin:sync_target_changelist", "admin:sync_mastersettings_add", "admin:sync_syncrun_changelist",
    "admin:auth_user_changelist",
]  # fmt: skip


def test_it_names_the_admin_after_glancesync(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "<title>Configuration and accounts | GlanceSync admin</title>" in page
    assert '<div id="site-name"><a href="/admin/">GlanceSync administration</a></div>' in page
    assert "<h1>Configuration and accounts</h1>" in page
    assert "Django administration" not in page and "Django site admin" not in page
    changelist = admin_client.get(reverse("admin:sync_target_changelist")).content.decode()
    assert "| GlanceSync admin</title>" in changelist and "GlanceSync administration" in changelist


@pytest.mark.parametrize("url", ["admin:index", "admin:sync_target_changelist", "admin:password_change"])
def test_it_links_back_to_the_console_from_every_admin_page(admin_client, url):
    assert CONSOLE_LINK in admin_client.get(reverse(url)).content.decode()


def test_its_login_page_is_branded_and_links_to_the_console(client):
    page = client.get(reverse("admin:login")).content.decode()
    assert "GlanceSync administration" in page and "Django administration" not in page
    assert CONSOLE_LINK in page


@pytest.mark.parametrize("role", ["viewer", "operator"])
@pytest.mark.parametrize("url", DATA_PAGES)
def test_a_non_staff_viewer_or_operator_gets_the_admin_login_page(client, django_user_model, role, url):
    Target.objects.create(name="partner-of-record", password="x")
    client.force_login(user_with_role(django_user_model, "vera", role))
    response = client.get(reverse(url))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login") + "?next=")
    login = client.get(response["Location"])
    page = login.content.decode()
    assert login.status_code == 200 and login.resolver_match.url_name == "login"
    assert "You are authenticated as vera, but are not authorized to access this page." in page
    assert "partner-of-record" not in page and "Target" not in page  # no data, not even a model's name
    assert CONSOLE_LINK in page  # the way back


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_a_non_staff_viewer_or_operator_cannot_change_anything_through_the_admin(client, django_user_model, role):
    client.force_login(user_with_role(django_user_model, "vera", role))
    response = client.post(reverse("admin:sync_mastersettings_add"), {"master_region": "Madrid", "max_children": 1})
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert not MasterSettings.objects.exists()


@pytest.mark.parametrize("role", [None, "operator"])
def test_a_staff_user_without_model_permissions_sees_no_model(client, django_user_model, role):
    """Django's default, kept: the console's roles (here an operator) give no model permission in the admin. The
    one-row models (master settings, defaults) are not offered for adding either, though none exists yet."""
    user = user_with_role(django_user_model, "stan", role) if role else django_user_model.objects.create_user("stan")
    user.is_staff = True
    user.save()
    client.force_login(user)
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200 and index.context["app_list"] == []
    assert "permission to view or edit anything" in index.content.decode()
    for url in DATA_PAGES[1:]:
        assert client.get(reverse(url)).status_code == 403, url
    assert client.post(reverse("admin:sync_mastersettings_add"), {"master_region": "Madrid"}).status_code == 403
    assert not MasterSettings.objects.exists()


def test_a_staff_user_sees_only_the_models_of_his_permissions(client, django_user_model):
    user = django_user_model.objects.create_user("stan", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_target"))
    client.force_login(user)
    apps = client.get(reverse("admin:index")).context["app_list"]
    assert [(app["app_label"], [model["object_name"] for model in app["models"]]) for app in apps] == [
        ("sync", ["Target"])
    ]
    assert client.get(reverse("admin:sync_target_changelist")).status_code == 200
    assert client.get(reverse("admin:sync_region_changelist")).status_code == 403


def test_the_console_links_to_the_admin_for_staff_only(client, django_user_model):
    viewer = user_with_role(django_user_model, "vera", "viewer")
    client.force_login(viewer)
    assert 'href="/admin/"' not in client.get(reverse("sync:overview")).content.decode()
    viewer.is_staff = True
    viewer.save()
    assert '<a class="nav-link" href="/admin/">Admin</a>' in client.get(reverse("sync:overview")).content.decode()
