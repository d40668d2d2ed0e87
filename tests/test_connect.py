"""Connect a cloud (`/connect/`, sync/connect_views.py): access, a clouds.yaml pasted or uploaded with what saving
does, YAML errors, a target by hand, a failed test saving nothing, the demo replaced whole, and the overview's
demo notice. The clouds are a small Keystone + Glance on loopback (tests/fake_keystone.py); the real ones are in
tests/integration/test_connect_realstack.py and tests/browser/test_connect.py."""

from __future__ import annotations

import io
import re
from html import unescape

import pytest
import yaml
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from sync import crypto
from sync.connect_views import DRAFT_KEY
from sync.models import (
    AuditEntry,
    ChecksumDecision,
    ImageState,
    MasterSettings,
    RefreshRequest,
    Region,
    RegionSnapshot,
    StatusRefresh,
    Target,
)
from sync.tasks import refresh_status
from tests.conftest import DEMO, role_group
from tests.fake_keystone import FakeKeystone

pytestmark = pytest.mark.django_db

PASSWORD = "connect-Pa55word-not-real"
CONNECT, REVIEW = "/connect/", "/connect/review/"


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path, monkeypatch):
    """Keys from a key file in a temporary DATA_DIR (never the repository's var/)."""
    monkeypatch.delenv(crypto.ENV_KEYS, raising=False)
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def keystone():
    with FakeKeystone(PASSWORD) as running:
        yield running


@pytest.fixture
def staff(django_user_model):
    """A staff account as scripts/run makes the demo one: operator role and the configuration's permissions."""
    user = django_user_model.objects.create_user("stella", password="unused-in-tests", is_staff=True)
    user.groups.add(role_group("operator"))
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="sync"))
    return user


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def by_hand(keystone, password=PASSWORD, **overrides) -> dict:
    data = {
        "source": "manual", "auth_url": keystone.auth_url, "identity_api_version": "3", "user": "admin",
        "password": password, "project_name": "admin", "user_domain": "Default", "project_domain": "Default",
        "cacert": "", "insecure": "",
    }  # fmt: skip
    return data | overrides


def clouds_yaml(keystone, password=PASSWORD) -> str:
    """Two clouds on the same Keystone, as tests/realstack writes them."""
    auth = {"auth_url": keystone.auth_url, "username": "admin", "password": password, "project_name": "admin"}
    clouds = {
        "source": {"auth": auth, "regions": ["RegionOne", "RegionTwo"], "identity_api_version": 3},
        "partner": {"auth": auth, "region_name": "RegionOne", "regions": ["RegionGone"]},
    }
    return yaml.safe_dump({"clouds": clouds}, sort_keys=False)


def text(response) -> str:
    html = response.content.decode()
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def configuration() -> tuple:
    return (
        sorted(Target.objects.values_list("name", "auth_url", "ignore_regions")),
        sorted(Region.objects.values_list("target__name", "name", "position")),
        list(MasterSettings.objects.values("master_region", "cloud", "demo")),
    )


def nothing_saved() -> bool:
    return not Target.objects.exists() and not Region.objects.exists() and not MasterSettings.objects.exists()


# --- access -----------------------------------------------------------------------------------------------------


def test_it_is_for_staff_only(client, django_user_model, staff):
    for url in (CONNECT, REVIEW):
        assert "/accounts/login/" in client.get(url)["Location"]
    for role in ("viewer", "operator"):
        user = django_user_model.objects.create_user(f"{role}-user")
        user.groups.add(role_group(role))
        client.force_login(user)
        for url in (CONNECT, REVIEW, "/connect/cancel/"):
            assert client.post(url).status_code == 403, (role, url)
        assert client.get(CONNECT).status_code == 403
        assert "Connect a cloud" not in client.get("/").content.decode()
    bare = django_user_model.objects.create_user("bare-staff", is_staff=True)  # staff without the permissions
    client.force_login(bare)
    assert client.get(CONNECT).status_code == 403
    client.force_login(staff)
    page = client.get(CONNECT)
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert 'href="/connect/"' in client.get("/").content.decode()  # top right, beside Admin
    assert client.get(REVIEW)["Location"] == CONNECT  # nothing tested yet


# --- a target by hand -------------------------------------------------------------------------------------------


def test_it_connects_a_target_entered_by_hand(staff_client, keystone, django_capture_on_commit_callbacks):
    response = staff_client.post(CONNECT, by_hand(keystone))
    assert response.status_code == 302 and response["Location"] == REVIEW
    assert nothing_saved()  # a test saves nothing
    review = staff_client.get(REVIEW)
    page = text(review)
    assert "Keystone login: logged in to" in page and "Glance of RegionTwo: " in page
    assert '<select name="master_region"' in review.content.decode()  # chosen among the catalog's regions
    assert re.search(r'<option value="master:RegionOne"[^>]*>RegionOne</option>', review.content.decode())
    for change in ("create target master", "create region RegionOne", "create region RegionTwo",
                   "create master settings", "Then a status refresh of every region is queued."):  # fmt: skip
        assert change in page, change
    assert PASSWORD not in review.content.decode()
    assert nothing_saved()  # what saving does was only tried

    data = {"master_region": "master:RegionTwo", "regions_master": ["RegionOne", "RegionTwo"], "action": "save"}
    with django_capture_on_commit_callbacks() as queued:
        response = staff_client.post(REVIEW, data)
    assert response.status_code == 302 and response["Location"] == "/"
    target = Target.objects.get()
    assert (target.name, target.auth_url, target.user, target.project_name) == (
        "master",
        keystone.auth_url,
        "admin",
        "admin",
    )
    assert target.password == PASSWORD and target.ignore_regions == ""
    assert [r.name for r in Region.objects.order_by("position")] == ["RegionOne", "RegionTwo"]
    main = MasterSettings.objects.get()
    assert (main.master_region, main.cloud, main.demo) == ("RegionTwo", "openstack", False)
    refresh = RefreshRequest.objects.get()
    assert (refresh.regions, refresh.requested_by, len(queued)) == ([], "stella", 1)  # the task, once committed
    audit = set(AuditEntry.objects.values_list("username", "action", "model", "object_repr"))
    assert audit == {
        ("stella", "create", "target", "master"), ("stella", "create", "region", "RegionOne"),
        ("stella", "create", "region", "RegionTwo"), ("stella", "create", "mastersettings", "Master settings"),
    }  # fmt: skip
    assert DRAFT_KEY not in staff_client.session  # the tested password is gone from the session
    overview = text(staff_client.get("/"))
    assert "Connected: master region RegionTwo." in overview
    assert "Refreshing every region… asked by stella at" in overview


def test_a_wrong_password_shows_the_error_and_saves_nothing(staff_client, keystone):
    response = staff_client.post(CONNECT, by_hand(keystone, password="wrong-Pa55word", user_domain="Users"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Keystone login: Keystone refused the login (HTTP 401): wrong user name, password or project" in text(
        response
    )
    assert "Nothing was saved." in text(response)
    assert "wrong-Pa55word" not in html  # the password box is never filled again
    assert 'value="Users"' in html and f'value="{keystone.auth_url}"' in html  # the rest is kept
    assert nothing_saved() and DRAFT_KEY not in staff_client.session and not AuditEntry.objects.exists()
    assert staff_client.get(REVIEW)["Location"] == CONNECT


def test_it_refuses_an_incomplete_form_and_keeps_what_was_typed(staff_client, keystone):
    response = staff_client.post(CONNECT, by_hand(keystone, project_name="", auth_url="not a url"))
    assert response.status_code == 400
    page = text(response)
    assert "Enter a valid URL." in page and "This field is required." in page
    assert keystone.logins == 0 and nothing_saved()


def test_the_draft_is_kept_encrypted_in_the_session_and_expires(staff_client, keystone, monkeypatch):
    staff_client.post(CONNECT, by_hand(keystone))
    stored = staff_client.session[DRAFT_KEY]
    assert PASSWORD not in stored and PASSWORD in crypto.decrypt(stored)
    import sync.connect_views

    monkeypatch.setattr(sync.connect_views, "DRAFT_SECONDS", -1)
    response = staff_client.get(REVIEW, follow=True)
    assert "Test a connection first" in text(response) and DRAFT_KEY not in staff_client.session


def test_start_over_drops_the_tested_connection(staff_client, keystone):
    staff_client.post(CONNECT, by_hand(keystone))
    response = staff_client.post("/connect/cancel/", follow=True)
    assert "nothing was saved" in text(response) and DRAFT_KEY not in staff_client.session


def test_unticked_regions_are_ignored_and_the_master_region_always_kept(staff_client, keystone):
    staff_client.post(CONNECT, by_hand(keystone))
    preview = staff_client.post(REVIEW, {"master_region": "master:RegionOne", "action": "preview"})
    assert "create region RegionTwo" not in text(preview) and "create region RegionOne" in text(preview)
    partial = staff_client.post(REVIEW, {"master_region": "master:RegionOne"}, HTTP_HX_REQUEST="true").content
    assert b'id="connect-changes"' in partial and b"<html" not in partial  # what htmx swaps in on a change
    staff_client.post(REVIEW, {"master_region": "master:RegionOne", "action": "save"})  # nothing ticked
    assert Target.objects.get().ignore_regions == "RegionTwo"
    assert list(Region.objects.values_list("name", flat=True)) == ["RegionOne"]


# --- a clouds.yaml ----------------------------------------------------------------------------------------------


def test_it_imports_a_pasted_clouds_yaml_after_showing_what_it_does(staff_client, keystone):
    response = staff_client.post(CONNECT, {"source": "yaml", "text": clouds_yaml(keystone)})
    assert response["Location"] == REVIEW and nothing_saved()
    review = staff_client.get(REVIEW)
    html, page = review.content.decode(), text(review)
    assert "Connection test of source" in page and "Connection test of partner" in page
    assert re.search(r'<optgroup label="source">\s*<option value="source:RegionOne"', html)  # a group per cloud
    assert "Regions of partner to synchronise" in page
    # The dry run of the import: the default master region is the first cloud's first region.
    for line in ("create target master", "create region RegionOne", "create target partner",
                 "create region partner:RegionOne", "create region partner:RegionTwo",
                 "note: cloud source is imported as the target master",
                 "cloud partner: region RegionGone is not in its catalog (no Glance there): left out"):  # fmt: skip
        assert line.removeprefix("note: ") in page, line
    # Choosing the partner's region as master changes what saving does (htmx asks again on a change).
    choices = {"master_region": "partner:RegionTwo", "regions_source": ["RegionOne"], "regions_partner": ["RegionOne"]}
    partial = text(staff_client.post(REVIEW, {**choices, "action": "preview"}, HTTP_HX_REQUEST="true"))
    assert "create target source" in partial and "create region RegionTwo" in partial
    assert "create region source:RegionTwo" not in partial and nothing_saved()
    assert staff_client.post(REVIEW, {**choices, "action": "save"}).status_code == 302
    assert configuration() == (
        [("master", keystone.auth_url, ""), ("source", keystone.auth_url, "RegionTwo")],
        [("master", "RegionOne", 0), ("master", "RegionTwo", 1), ("source", "RegionOne", 2)],
        [{"master_region": "RegionTwo", "cloud": "openstack", "demo": False}],
    )
    assert Target.objects.get(name="source").password == PASSWORD


def test_it_reads_an_uploaded_clouds_yaml(staff_client, keystone):
    upload = SimpleUploadedFile("clouds.yaml", clouds_yaml(keystone).encode(), content_type="application/yaml")
    assert staff_client.post(CONNECT, {"source": "yaml", "upload": upload})["Location"] == REVIEW


BAD_YAML = "clouds:\n  source:\n    auth:\n      password: Pa55: word-in-error\n"


def test_a_yaml_error_names_the_line_and_keeps_the_text(staff_client):
    response = staff_client.post(CONNECT, {"source": "yaml", "text": BAD_YAML})
    assert response.status_code == 400
    message = re.search(r"clouds\.yaml: not valid YAML: [^<]*", response.content.decode()).group(0)
    assert message.startswith("clouds.yaml: not valid YAML: mapping values are not allowed here (line 4, column")
    assert "word-in-error" not in message
    assert re.search(r"<textarea[^>]*>\s*clouds:.*Pa55: word-in-error\s*</textarea>", response.content.decode(), re.S)
    upload = SimpleUploadedFile("my-clouds.yaml", BAD_YAML.encode())
    response = staff_client.post(CONNECT, {"source": "yaml", "upload": upload})
    assert "my-clouds.yaml: not valid YAML" in text(response) and nothing_saved()


@pytest.mark.parametrize(
    "text_, message",
    [
        ("- a list\n", "clouds.yaml: no 'clouds' mapping (not an openstacksdk clouds.yaml)"),
        ("", "Paste a clouds.yaml, or choose the file."),
        (
            "clouds:\n  bad:\n    auth: {password: hidden-Pa55, project_name: p}\n",
            "clouds.yaml: cloud bad: no auth.auth_url",
        ),
    ],
    ids=["not-clouds", "empty", "bad-entry"],
)
def test_it_refuses_what_import_clouds_yaml_refuses(staff_client, text_, message):
    response = staff_client.post(CONNECT, {"source": "yaml", "text": text_})
    assert response.status_code == 400 and message in text(response) and nothing_saved()
    assert "hidden-Pa55" not in re.sub(r"<textarea.*?</textarea>", "", response.content.decode(), flags=re.S)


def test_a_failing_cloud_of_a_clouds_yaml_saves_nothing(staff_client, keystone):
    response = staff_client.post(CONNECT, {"source": "yaml", "text": clouds_yaml(keystone, password="nope-nope")})
    assert "Connection test of source" in text(response) and "HTTP 401" in text(response)
    assert nothing_saved() and DRAFT_KEY not in staff_client.session


# --- the demo ---------------------------------------------------------------------------------------------------


@pytest.fixture
def demo(demo_cloud):
    """The demo configuration as scripts/run imports it (glancesync_demo --console), with its statuses."""
    call_command("import_glancesync_conf", str(DEMO / "glancesync.conf"), stdout=io.StringIO())
    MasterSettings.objects.filter(pk=1).update(cloud=f"files:{demo_cloud}", demo=True)
    refresh_status()
    assert ChecksumDecision.objects.exists() and ImageState.objects.exists() and StatusRefresh.objects.exists()


def rows() -> dict[str, int]:
    models = (Target, Region, ChecksumDecision, RegionSnapshot, ImageState, StatusRefresh)
    return {model.__name__: model.objects.count() for model in models}


def test_connecting_replaces_the_demo_whole_after_a_confirmation(staff_client, keystone, demo):
    before = rows()
    assert min(before.values()) > 0
    staff_client.post(CONNECT, by_hand(keystone))
    review = staff_client.get(REVIEW)
    assert "Replace the demo configuration" in text(review)
    for line in (
        "delete the demo's targets: master, partner",
        "delete the demo's regions: Valencia, Sevilla",
        "delete the demo's checksum decisions: dontupdate e4acfbc7",
        "delete the demo's statuses: 8 region",
        "create target master",
        "update master settings (cloud, demo, master_region, max_children)",
    ):
        assert line in text(review), line
    assert rows() == before  # shown, not done
    choices = {"master_region": "master:RegionOne", "regions_master": ["RegionOne", "RegionTwo"]}
    refused = staff_client.post(REVIEW, {**choices, "action": "save"})
    assert refused.status_code == 400 and "Tick it to replace the demo configuration" in text(refused)
    assert rows() == before
    assert staff_client.post(REVIEW, {**choices, "action": "save", "replace_demo": "on"}).status_code == 302
    assert rows() == {
        "Target": 1, "Region": 2, "ChecksumDecision": 0, "RegionSnapshot": 0, "ImageState": 0, "StatusRefresh": 0,
    }  # fmt: skip
    assert Target.objects.get().auth_url == keystone.auth_url
    main = MasterSettings.objects.get()
    assert (main.master_region, main.cloud, main.demo, main.max_children) == ("RegionOne", "openstack", False, 1)
    assert AuditEntry.objects.filter(action="delete", model="target", object_repr="partner").exists()
    assert "demo cloud" not in text(staff_client.get("/"))


def test_the_overview_says_when_the_demo_is_in_use(client, staff_client, viewer, demo):
    page = staff_client.get("/").content.decode()
    assert "This is the <strong>demo cloud</strong>" in page and 'href="/connect/">Connect a cloud</a> to' in page
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert "demo cloud" in page and "A staff user can connect your OpenStack" in page and "/connect/" not in page
    MasterSettings.objects.update(demo=False)
    assert "demo cloud" not in client.get("/").content.decode()
